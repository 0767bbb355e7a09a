// Text forms the shipped clients print.
#ifndef POLEDGER_CLIENTS_FORMAT_H_
#define POLEDGER_CLIENTS_FORMAT_H_

#include <string>

#include "absl/status/status.h"
#include "core/money.h"
#include "grpcpp/support/status_code_enum.h"
#include "poledger/v1/types.pb.h"

namespace poledger {

// "1234.50 USD" (at least two fraction digits, exact to the micro).
inline std::string FormatMoney(const v1::Money& m) {
  return core::FormatMicros(m.units() * core::kMicrosPerUnit + m.nanos() / 1000,
                            m.currency_code());
}

// "PERMISSION_DENIED" for grpc::StatusCode::PERMISSION_DENIED (gRPC's
// status codes are absl's, number for number).
inline std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace poledger

#endif  // POLEDGER_CLIENTS_FORMAT_H_
