// The one place where absl::Status becomes grpc::Status: same code and
// message, plus google.rpc.Status details in the grpc-status-details-bin
// trailer: an ErrorInfo with the stable reason (domain "poledger.dev") and,
// for INVALID_ARGUMENT, a BadRequest naming the field.
//
// Thread safety: pure function.
#ifndef POLEDGER_SERVER_STATUS_MAPPING_H_
#define POLEDGER_SERVER_STATUS_MAPPING_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace poledger {

inline constexpr char kErrorDomain[] = "poledger.dev";

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace poledger

#endif  // POLEDGER_SERVER_STATUS_MAPPING_H_
