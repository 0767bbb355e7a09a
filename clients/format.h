// Text forms the shipped clients print.
#ifndef POLEDGER_CLIENTS_FORMAT_H_
#define POLEDGER_CLIENTS_FORMAT_H_

#include <string>

#include "core/money.h"
#include "grpcpp/support/status_code_enum.h"
#include "poledger/v1/types.pb.h"

namespace poledger {

// "1234.50 USD" (at least two fraction digits, exact to the micro).
inline std::string FormatMoney(const v1::Money& m) {
  return core::FormatMicros(m.units() * core::kMicrosPerUnit + m.nanos() / 1000,
                            m.currency_code());
}

// "PERMISSION_DENIED" for grpc::StatusCode::PERMISSION_DENIED.
inline const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

}  // namespace poledger

#endif  // POLEDGER_CLIENTS_FORMAT_H_
