#include "core/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace poledger {
namespace core {

absl::Status InvalidField(absl::string_view field, absl::string_view why,
                          absl::string_view reason_code) {
  absl::Status status =
      absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
  status.SetPayload(kReasonPayload, absl::Cord(reason_code));
  status.SetPayload(kFieldPayload, absl::Cord(field));
  return status;
}

absl::Status DomainError(absl::StatusCode code, absl::string_view reason_code,
                         absl::string_view message) {
  absl::Status status(code, message);
  status.SetPayload(kReasonPayload, absl::Cord(reason_code));
  return status;
}

std::string ReasonOf(const absl::Status& status) {
  auto payload = status.GetPayload(kReasonPayload);
  return payload.has_value() ? std::string(*payload) : std::string();
}

std::string FieldOf(const absl::Status& status) {
  auto payload = status.GetPayload(kFieldPayload);
  return payload.has_value() ? std::string(*payload) : std::string();
}

}  // namespace core
}  // namespace poledger
