// Logs calls slower than a threshold (method, code, duration), as a server
// interceptor. See server/log.h.
#ifndef POLEDGER_SERVER_CALL_LOG_H_
#define POLEDGER_SERVER_CALL_LOG_H_

#include <memory>

#include "absl/time/time.h"
#include "grpcpp/support/server_interceptor.h"

namespace poledger {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewSlowCallLogFactory(absl::Duration slow);

}  // namespace poledger

#endif  // POLEDGER_SERVER_CALL_LOG_H_
