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

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace poledger {
namespace core {

inline constexpr absl::string_view kReasonPayload = "type.poledger.dev/reason";
inline constexpr absl::string_view kFieldPayload = "type.poledger.dev/field";
// Followed by the metadata entry's key.
inline constexpr absl::string_view kMetadataPayloadPrefix =
    "type.poledger.dev/metadata/";

// Every stable reason (google.rpc.ErrorInfo.reason) the server sends:
// clients branch on these, and README lists each with its code. Errors
// without one get their code's name (DATA_LOSS, UNAVAILABLE, ...).
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
inline constexpr absl::string_view kInvoiceNotFound = "INVOICE_NOT_FOUND";
// The request's bytes are not its message (gRPC left it unparsed).
inline constexpr absl::string_view kMalformedRequest = "MALFORMED_REQUEST";
// A list page token the server did not issue for this query.
inline constexpr absl::string_view kInvalidPageToken = "INVALID_PAGE_TOKEN";
// Of the layers above the domain: the server is still loading its log;
// SetTime/AdvanceTime on a real clock; a request id reused with other
// content.
inline constexpr absl::string_view kStarting = "STARTING";
inline constexpr absl::string_view kClockNotManual = "CLOCK_NOT_MANUAL";
inline constexpr absl::string_view kRequestIdConflict = "REQUEST_ID_CONFLICT";
// Security: a call without an identity where one is needed; an identity
// without the right to the method on the account.
inline constexpr absl::string_view kUnauthenticated = "UNAUTHENTICATED";
inline constexpr absl::string_view kPermissionDenied = "PERMISSION_DENIED";
// Scale-out: an account of another shard (metadata "owning_shard" and
// "shard_count").
inline constexpr absl::string_view kWrongShard = "WRONG_SHARD";
// A write sent to a read replica (metadata "leader": its leader's address).
inline constexpr absl::string_view kReadOnlyReplica = "READ_ONLY_REPLICA";
// Faults: the store cannot write (a full disk until space is freed,
// another I/O error until restarted; the cause in the message, RetryInfo
// attached); a stream's client certificate expired while it was open; an
// identity holds as many open streams as --max-streams-per-identity allows.
inline constexpr absl::string_view kStorageUnavailable = "STORAGE_UNAVAILABLE";
inline constexpr absl::string_view kCertificateExpired = "CERTIFICATE_EXPIRED";
inline constexpr absl::string_view kTooManyStreams = "TOO_MANY_STREAMS";
// Replication: a write durable on the leader that not enough synchronous
// followers stored before the call's deadline (not acknowledged: send it
// again with its request id); a follower whose log is not a prefix of its
// leader's.
inline constexpr absl::string_view kNotReplicated = "NOT_REPLICATED";
inline constexpr absl::string_view kLogsDiffer = "LOGS_DIFFER";
// A write to a node of a shard with failover that does not lead now (a
// failover may be under way): retry, the proxy finds the leader.
inline constexpr absl::string_view kNotLeader = "NOT_LEADER";
// Personal data: contacts sent to a server started without
// --data-key-file (it cannot seal them); an erasure of a subject that no
// account named holds.
inline constexpr absl::string_view kNoDataKey = "NO_DATA_KEY";
inline constexpr absl::string_view kSubjectNotFound = "SUBJECT_NOT_FOUND";
}  // namespace reason

// The metadata key that asks clients to wait before retrying: its value is
// a number of milliseconds, sent as google.rpc.RetryInfo as well.
inline constexpr absl::string_view kRetryDelayMsKey = "retry_delay_ms";

// Returns INVALID_ARGUMENT "field: why" with reason INVALID_FIELD (or
// `reason_code`) and the field attached.
absl::Status InvalidField(absl::string_view field, absl::string_view why,
                          absl::string_view reason_code = reason::kInvalidField);

// Returns a status of `code` with `reason_code` attached.
absl::Status DomainError(absl::StatusCode code, absl::string_view reason_code,
                         absl::string_view message);

// Returns `status` with `key`: `value` attached (google.rpc.ErrorInfo's
// metadata).
absl::Status WithMetadata(absl::Status status, absl::string_view key,
                          absl::string_view value);

// Calls `visit(key, value)` for each metadata entry attached to `status`.
void ForEachMetadata(
    const absl::Status& status,
    const std::function<void(absl::string_view, absl::string_view)>& visit);

// Returns `value` quoted for a message: in double quotes, at most its first
// 32 characters, each that is not printable escaped (\xNN for a byte that
// is not UTF-8, \u{NNNN} for control, format and bidi-override characters,
// \" and \\), then "... (N more bytes)" if cut. Always valid UTF-8 and
// short, whatever `value` holds: error messages never echo raw input.
std::string Quote(absl::string_view value);

// Returns the first character of `text` quoted as Quote does, alone.
std::string QuoteFirstChar(absl::string_view text);

// Returns the number of characters (code points) of UTF-8 `text`; a byte
// that is not UTF-8 counts as one.
size_t CharCount(absl::string_view text);

// Returns `message` made safe to send: valid UTF-8 (other bytes escaped as
// \xNN) and at most `max_bytes` long (cut at a character boundary, with
// "...").
std::string SafeMessage(absl::string_view message, size_t max_bytes = 1024);

// Returns the reason attached to `status`, or "" if none.
std::string ReasonOf(const absl::Status& status);
// Returns the field attached to `status`, or "" if none.
std::string FieldOf(const absl::Status& status);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_ERRORS_H_
