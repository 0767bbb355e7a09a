#include "api/field_paths.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/errors.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/field_mask.pb.h"

namespace poledger {
namespace api {
namespace {

// Fields the API names otherwise than the stored messages: money is Money in
// the API and integer micros in the log, a tax is one Tax message in the API
// and a oneof in the log. The one list of such names.
struct Rename {
  absl::string_view api;
  absl::string_view domain;
};
constexpr Rename kRenames[] = {
    {"balance_thresholds", "balance_thresholds_percent"},
    {"amount", "amount_micros"},
    {"tax", "tax_amount_micros"},
    {"tax", "tax_rate_ppm"},
};

absl::string_view ApiName(absl::string_view domain) {
  for (const Rename& r : kRenames) {
    if (r.domain == domain) return r.api;
  }
  return domain;
}

// The field name a path segment ("contacts[0]") starts with.
absl::string_view NameOf(absl::string_view segment) {
  return segment.substr(0, segment.find('['));
}

// `status`, whose field is `field`, naming `path` instead (in its field
// and at the start of its message).
absl::Status WithPath(absl::Status status, const std::string& field,
                      const std::string& path) {
  if (path == field) return status;
  const absl::string_view message = status.message();
  absl::Status out(status.code(),
                   absl::StartsWith(message, field)
                       ? absl::StrCat(path, message.substr(field.size()))
                       : std::string(message));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  out.SetPayload(core::kFieldPayload, absl::Cord(path));
  return out;
}

}  // namespace

absl::Status InRequest(absl::Status status, const RequestShape& shape) {
  const std::string field = core::FieldOf(status);
  if (field.empty()) return status;
  std::string path;
  for (absl::string_view segment : absl::StrSplit(field, '.')) {
    const absl::string_view name = NameOf(segment);
    absl::StrAppend(&path, path.empty() ? "" : ".", ApiName(name),
                    segment.substr(name.size()));
  }
  const bool of_request =
      shape.request->FindFieldByName(std::string(NameOf(
          absl::string_view(path).substr(0, path.find('.'))))) != nullptr;
  if (!of_request && !shape.subject.empty()) {
    path = absl::StrCat(shape.subject, ".", path);
  }
  return WithPath(std::move(status), field, path);
}

absl::Status UnderField(absl::Status status, absl::string_view prefix) {
  const std::string field = core::FieldOf(status);
  if (field.empty()) return status;
  return WithPath(std::move(status), field, absl::StrCat(prefix, ".", field));
}

absl::StatusOr<std::vector<std::string>> DomainMask(
    const google::protobuf::FieldMask& mask,
    const google::protobuf::Descriptor* api,
    const google::protobuf::Descriptor* domain, absl::string_view identity,
    absl::string_view what) {
  std::vector<std::string> out;
  for (int i = 0; i < mask.paths_size(); ++i) {
    const std::string& path = mask.paths(i);
    const size_t before = out.size();
    if (path != identity && api->FindFieldByName(path) != nullptr) {
      for (const Rename& r : kRenames) {
        if (r.api == path && domain->FindFieldByName(std::string(r.domain))) {
          out.emplace_back(r.domain);
        }
      }
      if (out.size() == before && domain->FindFieldByName(path) != nullptr) {
        out.push_back(path);
      }
    }
    if (out.size() == before) {
      return core::InvalidField(
          absl::StrCat("update_mask.paths[", i, "]"),
          absl::StrCat(core::Quote(path), " is not an updatable ", what,
                       " field"));
    }
  }
  return out;
}

bool ResolvesIn(const google::protobuf::Descriptor* message,
                absl::string_view path) {
  for (absl::string_view segment : absl::StrSplit(path, '.')) {
    if (message == nullptr) return false;
    const absl::string_view name = NameOf(segment);
    const google::protobuf::FieldDescriptor* field =
        message->FindFieldByName(std::string(name));
    if (field == nullptr) return false;
    const absl::string_view index = segment.substr(name.size());
    if (!index.empty() && (!field->is_repeated() || index.front() != '[' ||
                           index.back() != ']')) {
      return false;
    }
    message = field->message_type();
  }
  return true;
}

}  // namespace api
}  // namespace poledger
