// A server interceptor that answers a request whose bytes do not parse as
// its message with INVALID_ARGUMENT, reason MALFORMED_REQUEST, and a
// message saying so. Without it gRPC answers such calls with UNIMPLEMENTED
// (callback API) or INTERNAL (synchronous API) and an empty message, which
// tells the caller nothing and blames the server.
//
// Only poledger.v1 methods are touched; health and reflection keep gRPC's
// own answers.
//
// Thread safety: gRPC creates one interceptor per call.
#ifndef POLEDGER_SERVER_PARSE_FAILURE_INTERCEPTOR_H_
#define POLEDGER_SERVER_PARSE_FAILURE_INTERCEPTOR_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"

namespace poledger {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewParseFailureInterceptorFactory();

}  // namespace poledger

#endif  // POLEDGER_SERVER_PARSE_FAILURE_INTERCEPTOR_H_
