// absl::Status -> grpc::Status: api::ToRpcStatus's code and message, with
// the google.rpc.Status itself in the grpc-status-details-bin trailer.
//
// Thread safety: pure function.
#ifndef POLEDGER_SERVER_STATUS_MAPPING_H_
#define POLEDGER_SERVER_STATUS_MAPPING_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace poledger {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace poledger

#endif  // POLEDGER_SERVER_STATUS_MAPPING_H_
