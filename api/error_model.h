// The one mapping from absl::Status to the API's error model: a
// google.rpc.Status with the same code and message, an ErrorInfo with the
// stable reason (domain "poledger.dev") and, when a field is named, a
// BadRequest naming it. The server sends it as gRPC's status and its
// grpc-status-details-bin trailer.
//
// Thread safety: pure function.
#ifndef POLEDGER_API_ERROR_MODEL_H_
#define POLEDGER_API_ERROR_MODEL_H_

#include "absl/status/status.h"
#include "google/rpc/status.pb.h"

namespace poledger {
namespace api {

inline constexpr char kErrorDomain[] = "poledger.dev";

// `status` must not be OK. The message is made safe to send (valid UTF-8,
// at most 1 KiB); errors without a domain reason get their code's name
// (e.g. DATA_LOSS) as reason.
google::rpc::Status ToRpcStatus(const absl::Status& status);

}  // namespace api
}  // namespace poledger

#endif  // POLEDGER_API_ERROR_MODEL_H_
