// Exact money: integer micros (millionths of a currency unit) in int64, and
// checked arithmetic on them. An overflow is an error, never a wrap.
//
// Thread safety: pure functions.
#ifndef POLEDGER_CORE_MONEY_H_
#define POLEDGER_CORE_MONEY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace poledger {
namespace core {

inline constexpr int64_t kMicrosPerUnit = 1000000;

// a + b, a - b, a * b; FAILED_PRECONDITION (reason MONEY_OVERFLOW) naming
// `what` if the result does not fit in int64.
absl::StatusOr<int64_t> AddMicros(int64_t a, int64_t b, absl::string_view what);
absl::StatusOr<int64_t> SubMicros(int64_t a, int64_t b, absl::string_view what);
absl::StatusOr<int64_t> MulMicros(int64_t micros, int64_t quantity,
                                  absl::string_view what);

// Returns round(base * rate_ppm / 1e6), half away from zero, or an overflow
// error.
absl::StatusOr<int64_t> ApplyRatePpm(int64_t base_micros, int64_t rate_ppm,
                                     absl::string_view what);

// Converts google.type.Money-shaped units and nanos to micros.
// INVALID_ARGUMENT (naming `field`) if the signs differ, |nanos| >= 1e9,
// nanos is not a whole number of micros, or the amount does not fit.
absl::StatusOr<int64_t> MicrosFromUnitsNanos(int64_t units, int32_t nanos,
                                             absl::string_view field);

// Splits micros into units and nanos with the same sign.
void MicrosToUnitsNanos(int64_t micros, int64_t* units, int32_t* nanos);

// Formats micros as a decimal with at least two fraction digits and a
// currency code, e.g. "1234.50 USD", "-0.000001 EUR".
std::string FormatMicros(int64_t micros, absl::string_view currency_code);

// True if `code` looks like an ISO 4217 code: three upper-case letters.
bool IsCurrencyCode(absl::string_view code);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_MONEY_H_
