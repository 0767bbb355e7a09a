#include "core/calendar.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "core/errors.h"

namespace poledger {
namespace core {

absl::StatusOr<YearMonth> YearMonth::Parse(absl::string_view text,
                                           absl::string_view field) {
  auto digits = [&](size_t from, size_t n) {
    int value = 0;
    for (size_t i = from; i < from + n; ++i) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) return -1;
      value = value * 10 + (text[i] - '0');
    }
    return value;
  };
  if (text.size() != 7 || text[4] != '-') {
    return InvalidField(field, absl::StrFormat("\"%s\" is not a month in the "
                                               "form YYYY-MM",
                                               text));
  }
  const int year = digits(0, 4);
  const int month = digits(5, 2);
  if (year < 1970 || month < 1 || month > 12) {
    return InvalidField(
        field, absl::StrFormat("\"%s\" is not a valid month (YYYY-MM, year "
                               ">= 1970, month 01-12)",
                               text));
  }
  return YearMonth(absl::CivilMonth(year, month));
}

YearMonth YearMonth::Containing(absl::Time t) {
  return YearMonth(absl::CivilMonth(absl::ToCivilSecond(t, absl::UTCTimeZone())));
}

std::string YearMonth::ToString() const {
  return absl::StrFormat("%04d-%02d", month_.year(), month_.month());
}

absl::Time YearMonth::Start() const {
  return absl::FromCivil(month_, absl::UTCTimeZone());
}

absl::Time YearMonth::End() const {
  return absl::FromCivil(month_ + 1, absl::UTCTimeZone());
}

absl::CivilDay YearMonth::LastDay() const {
  return absl::CivilDay(month_ + 1) - 1;
}

absl::CivilDay AddMonthsClamped(absl::CivilDay day, int months) {
  const absl::CivilMonth target = absl::CivilMonth(day) + months;
  const absl::CivilDay last = absl::CivilDay(target + 1) - 1;
  const absl::CivilDay same(target.year(), target.month(), day.day());
  // CivilDay normalises an overflowing day into the next month.
  return absl::CivilMonth(same) != target ? last : same;
}

absl::Time StartOf(absl::CivilDay day) {
  return absl::FromCivil(day, absl::UTCTimeZone());
}

std::string FormatDay(absl::CivilDay day) {
  return absl::StrFormat("%04d-%02d-%02d", day.year(), day.month(), day.day());
}

}  // namespace core
}  // namespace poledger
