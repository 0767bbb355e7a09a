#include "core/money.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace poledger {
namespace core {
namespace {

absl::Status Overflow(absl::string_view what) {
  return DomainError(absl::StatusCode::kFailedPrecondition,
                     reason::kMoneyOverflow,
                     absl::StrCat(what, ": amount overflows the supported "
                                        "range of +/-9.2e12 units"));
}

}  // namespace

absl::StatusOr<int64_t> AddMicros(int64_t a, int64_t b,
                                  absl::string_view what) {
  int64_t out;
  if (__builtin_add_overflow(a, b, &out)) return Overflow(what);
  return out;
}

absl::StatusOr<int64_t> SubMicros(int64_t a, int64_t b,
                                  absl::string_view what) {
  int64_t out;
  if (__builtin_sub_overflow(a, b, &out)) return Overflow(what);
  return out;
}

absl::StatusOr<int64_t> MulMicros(int64_t micros, int64_t quantity,
                                  absl::string_view what) {
  int64_t out;
  if (__builtin_mul_overflow(micros, quantity, &out)) return Overflow(what);
  return out;
}

absl::StatusOr<int64_t> ApplyRatePpm(int64_t base_micros, int64_t rate_ppm,
                                     absl::string_view what) {
  const __int128 product = static_cast<__int128>(base_micros) * rate_ppm;
  const __int128 half = 500000;
  const __int128 rounded =
      product >= 0 ? (product + half) / 1000000 : (product - half) / 1000000;
  if (rounded > INT64_MAX || rounded < INT64_MIN) return Overflow(what);
  return static_cast<int64_t>(rounded);
}

absl::StatusOr<int64_t> MicrosFromUnitsNanos(int64_t units, int32_t nanos,
                                             absl::string_view field) {
  if (nanos <= -1000000000 || nanos >= 1000000000) {
    return InvalidField(field, "nanos must be within (-1e9, 1e9)");
  }
  if ((units > 0 && nanos < 0) || (units < 0 && nanos > 0)) {
    return InvalidField(field, "units and nanos must have the same sign");
  }
  if (nanos % 1000 != 0) {
    return InvalidField(field,
                        "amounts are kept to the micro: nanos must be a "
                        "multiple of 1000");
  }
  int64_t micros;
  if (__builtin_mul_overflow(units, kMicrosPerUnit, &micros) ||
      __builtin_add_overflow(micros, nanos / 1000, &micros)) {
    return InvalidField(field, "amount exceeds the supported range of "
                               "+/-9.2e12 units",
                        reason::kMoneyOverflow);
  }
  return micros;
}

void MicrosToUnitsNanos(int64_t micros, int64_t* units, int32_t* nanos) {
  *units = micros / kMicrosPerUnit;
  *nanos = static_cast<int32_t>((micros % kMicrosPerUnit) * 1000);
}

std::string FormatMicros(int64_t micros, absl::string_view currency_code) {
  const bool negative = micros < 0;
  // Work in unsigned so INT64_MIN has a magnitude.
  const uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(micros)
                                      : static_cast<uint64_t>(micros);
  std::string fraction = absl::StrCat(magnitude % kMicrosPerUnit + 1000000);
  fraction = fraction.substr(1);  // Six digits.
  while (fraction.size() > 2 && fraction.back() == '0') fraction.pop_back();
  return absl::StrCat(negative ? "-" : "", magnitude / kMicrosPerUnit, ".",
                      fraction, currency_code.empty() ? "" : " ",
                      currency_code);
}

bool IsCurrencyCode(absl::string_view code) {
  if (code.size() != 3) return false;
  for (char c : code) {
    if (!absl::ascii_isupper(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace core
}  // namespace poledger
