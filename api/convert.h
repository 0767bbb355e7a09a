// Conversions between the public API messages (poledger.v1 services) and
// the domain's commands, state and events. Input conversions validate what
// only the API form can get wrong (Money's units/nanos, its currency) and
// name the request field in INVALID_ARGUMENT errors.
//
// Thread safety: pure functions.
#ifndef POLEDGER_API_CONVERT_H_
#define POLEDGER_API_CONVERT_H_

#include <string>

#include "absl/status/statusor.h"
#include "core/account.h"
#include "core/commands.h"
#include "core/forecast.h"
#include "eventstore/event_store.h"
#include "ledger/ledger.h"
#include "poledger/v1/invoices.pb.h"
#include "poledger/v1/log.pb.h"
#include "poledger/v1/purchase_orders.pb.h"

namespace poledger {
namespace convert {

// Money <-> micros. `currency` is the expected currency: a Money with
// another non-empty currency_code is INVALID_ARGUMENT naming `field`.
absl::StatusOr<int64_t> MicrosOf(const v1::Money& money,
                                 absl::string_view currency,
                                 absl::string_view field);
v1::Money MoneyOf(int64_t micros, absl::string_view currency);

// The API form of a spend forecast, in `currency`.
v1::SpendForecast ForecastOf(const core::SpendForecast& forecast,
                             absl::string_view currency);

// API purchase order -> command. `field` prefixes error fields
// ("purchase_order").
absl::StatusOr<core::CreatePurchaseOrder> ToCreate(const v1::PurchaseOrder& po,
                                                   absl::string_view field);
absl::StatusOr<v1::PurchaseOrderHeader> ToHeader(const v1::PurchaseOrder& po,
                                                 absl::string_view field);
absl::StatusOr<v1::LineItemDefinition> ToLineDefinition(
    const v1::LineItem& line, absl::string_view currency,
    absl::string_view field);

// Domain state -> API purchase order, with derived status, value, balance,
// times and version.
v1::PurchaseOrder ToApi(const std::string& account_id,
                        const core::PurchaseOrderState& po);

// API invoice -> domain invoice data.
absl::StatusOr<v1::InvoiceData> ToInvoiceData(const v1::Invoice& invoice,
                                              absl::string_view field);

// A logged InvoiceRecorded or CreditMemoRecorded -> API invoice.
absl::StatusOr<v1::Invoice> InvoiceOf(const std::string& account_id,
                                      const LoggedEvent& logged);
// The same into `out` (which may live on an arena); `out` is only partly
// set if this fails.
absl::Status FillInvoiceOf(const std::string& account_id,
                           const LoggedEvent& logged, v1::Invoice* out);

// The invoice or credit memo that `events` (a command's, or a repeated
// record's) recorded, with the notifications among them, in `view`
// (UNSPECIFIED is `default_view`; BASIC leaves out the explanation's
// candidates and keeps its summary). INTERNAL if none records one.
absl::StatusOr<v1::Invoice> RecordedInvoiceOf(
    const std::string& account_id, const std::vector<LoggedEvent>& events,
    v1::InvoiceView view, v1::InvoiceView default_view);
// The same into `out`, as FillInvoiceOf.
absl::Status FillRecordedInvoice(const std::string& account_id,
                                 const std::vector<LoggedEvent>& events,
                                 v1::InvoiceView view,
                                 v1::InvoiceView default_view,
                                 v1::Invoice* out);

// A logged NotificationRaised -> API notification (amounts as Money).
v1::Notification NotificationOf(const std::string& account_id,
                                uint64_t position, absl::Time time,
                                const v1::NotificationRaised& raised);

// A log record -> API event (decoding account payloads). The payload is
// the record's as the log holds and hashes it, so that a remote auditor
// can verify it: contacts sealed, with their subject references only
// (README "Personal data").
absl::StatusOr<v1::Event> EventOf(const RecordedEvent& record);

// Contacts as a request may give them: the sealed form is dropped, and the
// reference too unless the contact is erased (one read back, which an
// update may keep: only its reference and flag count).
void RequestContacts(google::protobuf::RepeatedPtrField<v1::Contact>& contacts);
// Contacts as an answer shows them: never the sealed form; an erased one
// with the flag and "[erased]" in place of its fields.
void AnswerContacts(google::protobuf::RepeatedPtrField<v1::Contact>& contacts);
inline constexpr char kErasedText[] = "[erased]";

// Update mask paths of the API (purchase order / line item) -> the domain
// fields they name (see api::DomainMask).
absl::StatusOr<std::vector<std::string>> HeaderMask(
    const google::protobuf::FieldMask& mask);
absl::StatusOr<std::vector<std::string>> LineMask(
    const google::protobuf::FieldMask& mask);

}  // namespace convert
}  // namespace poledger

#endif  // POLEDGER_API_CONVERT_H_
