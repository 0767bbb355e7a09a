#include "server/parse_failure_interceptor.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "server/status_mapping.h"

namespace poledger {
namespace {

using ::grpc::experimental::InterceptionHookPoints;

// gRPC's answers when it could not parse a request: the callback API's
// handler reports UNIMPLEMENTED, the synchronous one protobuf's (empty)
// initialization error as INTERNAL. poledger's own code never answers
// either with an empty message.
bool IsParseFailure(const grpc::Status& status) {
  return status.error_message().empty() &&
         (status.error_code() == grpc::StatusCode::UNIMPLEMENTED ||
          status.error_code() == grpc::StatusCode::INTERNAL);
}

class ParseFailureInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ParseFailureInterceptor(std::string method)
      : method_(std::move(method)) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      if (IsParseFailure(status)) {
        methods->ModifySendStatus(ToGrpcStatus(core::DomainError(
            absl::StatusCode::kInvalidArgument, core::reason::kMalformedRequest,
            absl::StrCat("the request could not be parsed as the request "
                         "message of ",
                         method_,
                         " (not protobuf wire format, a string field that is "
                         "not valid UTF-8, or nesting too deep)"))));
      }
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
};

class Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (!absl::StartsWith(info->method(), "/poledger.v1.")) return nullptr;
    return new ParseFailureInterceptor(info->method());
  }
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewParseFailureInterceptorFactory() {
  return std::make_unique<Factory>();
}

}  // namespace poledger
