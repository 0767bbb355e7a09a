// Months and dates in UTC, as poledger's rules use them.
//
// A YearMonth is a validated "YYYY-MM" (years 1970..9999). A purchase order's
// expiration date is the last day of its expiration month; it expires at
// the first instant after that day.
//
// Thread safety: pure functions and value types.
#ifndef POLEDGER_CORE_CALENDAR_H_
#define POLEDGER_CORE_CALENDAR_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace poledger {
namespace core {

class YearMonth {
 public:
  YearMonth() = default;
  static YearMonth FromCivil(absl::CivilMonth m) { return YearMonth(m); }

  // Parses "YYYY-MM"; INVALID_ARGUMENT naming `field` otherwise.
  static absl::StatusOr<YearMonth> Parse(absl::string_view text,
                                         absl::string_view field);
  // The month that contains `t` (UTC).
  static YearMonth Containing(absl::Time t);

  std::string ToString() const;
  absl::CivilMonth civil() const { return month_; }
  YearMonth Plus(int months) const { return YearMonth(month_ + months); }

  // 00:00:00 UTC on the 1st.
  absl::Time Start() const;
  // 00:00:00 UTC on the 1st of the next month: the first instant after it.
  absl::Time End() const;
  // The last day of the month.
  absl::CivilDay LastDay() const;

  friend bool operator==(YearMonth a, YearMonth b) {
    return a.month_ == b.month_;
  }
  friend bool operator!=(YearMonth a, YearMonth b) { return !(a == b); }
  friend bool operator<(YearMonth a, YearMonth b) {
    return a.month_ < b.month_;
  }
  friend bool operator<=(YearMonth a, YearMonth b) { return !(b < a); }
  friend bool operator>(YearMonth a, YearMonth b) { return b < a; }
  friend bool operator>=(YearMonth a, YearMonth b) { return !(a < b); }

 private:
  explicit YearMonth(absl::CivilMonth m) : month_(m) {}
  absl::CivilMonth month_{1970, 1};
};

// The same day of the month `months` earlier (negative) or later, or the
// last day of that month if it is shorter.
absl::CivilDay AddMonthsClamped(absl::CivilDay day, int months);

// 00:00:00 UTC of `day`.
absl::Time StartOf(absl::CivilDay day);

// "YYYY-MM-DD".
std::string FormatDay(absl::CivilDay day);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_CALENDAR_H_
