// Domain errors: an absl::Status with a machine-readable reason and, for
// malformed input, the offending field, carried as status payloads so that
// the server can turn them into google.rpc.ErrorInfo and BadRequest.
//
// Codes, chosen on purpose:
//   INVALID_ARGUMENT     the request is malformed on its own (bad month, bad
//                        e-mail, 11 contacts in one request).
//   FAILED_PRECONDITION  a rule or limit refuses it in the current state
//                        (the 101st active PO, a forbidden status change).
//   NOT_FOUND            an unknown purchase order, line item or invoice.
//   ALREADY_EXISTS       an id that is taken, or reused with other content.
//   ABORTED              an expected version that does not match.
//
// Thread safety: pure functions.
#ifndef POLEDGER_CORE_ERRORS_H_
#define POLEDGER_CORE_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace poledger {
namespace core {

inline constexpr absl::string_view kReasonPayload = "type.poledger.dev/reason";
inline constexpr absl::string_view kFieldPayload = "type.poledger.dev/field";

// Stable reasons (google.rpc.ErrorInfo.reason); clients branch on these.
namespace reason {
inline constexpr absl::string_view kInvalidField = "INVALID_FIELD";
inline constexpr absl::string_view kMoneyOverflow = "MONEY_OVERFLOW";
inline constexpr absl::string_view kActivePurchaseOrderLimit =
    "ACTIVE_PURCHASE_ORDER_LIMIT";
inline constexpr absl::string_view kLineItemLimit = "LINE_ITEM_LIMIT";
inline constexpr absl::string_view kPurchaseOrderNotFound =
    "PURCHASE_ORDER_NOT_FOUND";
inline constexpr absl::string_view kPurchaseOrderAlreadyExists =
    "PURCHASE_ORDER_ALREADY_EXISTS";
inline constexpr absl::string_view kLineItemNotFound = "LINE_ITEM_NOT_FOUND";
inline constexpr absl::string_view kLineItemAlreadyExists =
    "LINE_ITEM_ALREADY_EXISTS";
inline constexpr absl::string_view kLineItemOutsideWindow =
    "LINE_ITEM_OUTSIDE_PURCHASE_ORDER_WINDOW";
inline constexpr absl::string_view kInvalidStatusTransition =
    "INVALID_STATUS_TRANSITION";
inline constexpr absl::string_view kWrongExpectedVersion =
    "WRONG_EXPECTED_VERSION";
inline constexpr absl::string_view kInvoiceIdConflict = "INVOICE_ID_CONFLICT";
inline constexpr absl::string_view kOriginalInvoiceNotFound =
    "ORIGINAL_INVOICE_NOT_FOUND";
inline constexpr absl::string_view kCreditExceedsInvoice =
    "CREDIT_EXCEEDS_INVOICE";
inline constexpr absl::string_view kTransactionIdConflict =
    "MARKETPLACE_TRANSACTION_ID_CONFLICT";
}  // namespace reason

// Returns INVALID_ARGUMENT "field: why" with reason INVALID_FIELD (or
// `reason_code`) and the field attached.
absl::Status InvalidField(absl::string_view field, absl::string_view why,
                          absl::string_view reason_code = reason::kInvalidField);

// Returns a status of `code` with `reason_code` attached.
absl::Status DomainError(absl::StatusCode code, absl::string_view reason_code,
                         absl::string_view message);

// Returns the reason attached to `status`, or "" if none.
std::string ReasonOf(const absl::Status& status);
// Returns the field attached to `status`, or "" if none.
std::string FieldOf(const absl::Status& status);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_ERRORS_H_
