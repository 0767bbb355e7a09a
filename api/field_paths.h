// Request field paths: how the API names a field of a request (AIP-161:
// "purchase_order.contacts[0].email", "update_mask.paths[2]") and how those
// names meet the domain's.
//
// The domain names a field relative to the message it checks (the purchase
// order header, a line item definition, the invoice data) and by that
// message's own field names ("balance_thresholds_percent", "amount_micros").
// The API names the same field from the request, by the API message's names
// ("purchase_order.balance_thresholds[0]"). This file is the one place that
// translates between the two: for BadRequest field paths and for update
// masks.

#ifndef POLEDGER_API_FIELD_PATHS_H_
#define POLEDGER_API_FIELD_PATHS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace google::protobuf {
class Descriptor;
class FieldMask;
}  // namespace google::protobuf

namespace poledger {
namespace api {

// Where a command's subject sits in its request: the request's descriptor and
// the field that holds the subject ("purchase_order", "invoice", ...; empty
// when the command's fields are the request's own).
struct RequestShape {
  const google::protobuf::Descriptor* request;
  absl::string_view subject;
};

// Returns `status` with its field (core::FieldOf) made a path in the request:
// a path whose first name is a field of the request itself ("request_id",
// "update_mask.paths[0]", "line_item.amount") is kept; any other is taken as
// relative to the subject and prefixed with it. Domain field names become the
// API's ("balance_thresholds_percent" -> "balance_thresholds"). The message,
// which starts with the field, names the new path. A status without a field
// is returned as is.
absl::Status InRequest(absl::Status status, const RequestShape& shape);

// Returns `status` with its field, if any, under `prefix`: "invoice.amount"
// under "requests[3]" is "requests[3].invoice.amount" (a batch's item).
absl::Status UnderField(absl::Status status, absl::string_view prefix);

// The domain field names that an update mask of the API message `api` names,
// for the domain message `domain` (each API path is a field both messages
// have, or one the API renames; `identity` names the field that says which
// element is updated and cannot itself be updated, or is empty). A bad path
// is INVALID_ARGUMENT naming "update_mask.paths[i]"; `what` names the element
// ("purchase order", "line item") in that message. An empty mask gives an
// empty list (every field).
absl::StatusOr<std::vector<std::string>> DomainMask(
    const google::protobuf::FieldMask& mask,
    const google::protobuf::Descriptor* api,
    const google::protobuf::Descriptor* domain, absl::string_view identity,
    absl::string_view what);

// True if `path` ("a.b[3].c") names a field of `message` by its descriptor.
bool ResolvesIn(const google::protobuf::Descriptor* message,
                absl::string_view path);

}  // namespace api
}  // namespace poledger

#endif  // POLEDGER_API_FIELD_PATHS_H_
