#include "server/call_log.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/log.h"

namespace poledger {
namespace {

using ::grpc::experimental::InterceptionHookPoints;

class SlowCallLog final : public grpc::experimental::Interceptor {
 public:
  SlowCallLog(std::string method, absl::Duration slow)
      : method_(std::move(method)), slow_(slow), start_(absl::Now()) {}

  ~SlowCallLog() override {
    const absl::Duration took = absl::Now() - start_;
    if (took <= slow_) return;
    log::Warning("slow_call",
                 absl::StrCat("slow call: ", method_, " took ",
                              absl::FormatDuration(took)),
                 {{"method", method_},
                  {"code", static_cast<int>(code_)},
                  {"duration_ms", absl::ToDoubleMilliseconds(took)}});
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      code_ = methods->GetSendStatus().error_code();
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  const absl::Duration slow_;
  const absl::Time start_;
  grpc::StatusCode code_ = grpc::StatusCode::CANCELLED;
};

class Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(absl::Duration slow) : slow_(slow) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // Streams are long by nature: only unary calls are judged.
    if (info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY) {
      return nullptr;
    }
    std::string method = info->method() != nullptr ? info->method() : "";
    if (!method.empty() && method.front() == '/') method.erase(0, 1);
    return new SlowCallLog(std::move(method), slow_);
  }

 private:
  const absl::Duration slow_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewSlowCallLogFactory(absl::Duration slow) {
  return std::make_unique<Factory>(slow);
}

}  // namespace poledger
