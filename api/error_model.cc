#include "api/error_model.h"

#include <cctype>
#include <string>

#include "absl/strings/numbers.h"
#include "core/errors.h"
#include "google/rpc/error_details.pb.h"

namespace poledger {
namespace api {

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  // Valid UTF-8 and bounded, whatever a message quotes: clients' metadata
  // limits and decoders must never trip over an error.
  const std::string message = core::SafeMessage(status.message());
  google::rpc::Status details;
  details.set_code(static_cast<int>(status.code()));
  details.set_message(message);
  google::rpc::ErrorInfo info;
  std::string reason = core::ReasonOf(status);
  if (reason.empty()) {
    // Errors from below the domain (store, I/O) get their code's name.
    reason = absl::StatusCodeToString(status.code());
    for (char& c : reason) c = c == ' ' ? '_' : static_cast<char>(toupper(c));
  }
  info.set_reason(reason);
  info.set_domain(kErrorDomain);
  core::ForEachMetadata(
      status, [&](absl::string_view key, absl::string_view value) {
        (*info.mutable_metadata())[std::string(key)] = core::SafeMessage(value);
      });
  details.add_details()->PackFrom(info);
  auto delay = info.metadata().find(std::string(core::kRetryDelayMsKey));
  int64_t delay_ms = 0;
  if (delay != info.metadata().end() &&
      absl::SimpleAtoi(delay->second, &delay_ms) && delay_ms > 0) {
    google::rpc::RetryInfo retry;
    retry.mutable_retry_delay()->set_seconds(delay_ms / 1000);
    retry.mutable_retry_delay()->set_nanos(
        static_cast<int32_t>(delay_ms % 1000) * 1000000);
    details.add_details()->PackFrom(retry);
  }
  const std::string field = core::FieldOf(status);
  if (!field.empty()) {
    google::rpc::BadRequest bad;
    google::rpc::BadRequest::FieldViolation* v = bad.add_field_violations();
    v->set_field(field);
    const size_t colon = message.find(": ");
    v->set_description(colon == std::string::npos ? message
                                                  : message.substr(colon + 2));
    details.add_details()->PackFrom(bad);
  }
  return details;
}

}  // namespace api
}  // namespace poledger
