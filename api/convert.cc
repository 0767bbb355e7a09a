#include "api/convert.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "api/field_paths.h"
#include "base/status_macros.h"
#include "core/decide.h"
#include "core/errors.h"
#include "core/matching.h"
#include "core/money.h"
#include "core/proto_time.h"

namespace poledger {
namespace convert {

absl::StatusOr<int64_t> MicrosOf(const v1::Money& money,
                                 absl::string_view currency,
                                 absl::string_view field) {
  if (!money.currency_code().empty() && money.currency_code() != currency) {
    return core::InvalidField(
        absl::StrCat(field, ".currency_code"),
        absl::StrCat("is ", money.currency_code(), "; expected ", currency));
  }
  return core::MicrosFromUnitsNanos(money.units(), money.nanos(), field);
}

v1::SpendForecast ForecastOf(const core::SpendForecast& f,
                             absl::string_view currency) {
  v1::SpendForecast out;
  switch (f.outlook) {
    case core::SpendForecast::Outlook::kNoSpend:
      out.set_outlook(v1::SpendForecast::OUTLOOK_NO_SPEND);
      break;
    case core::SpendForecast::Outlook::kRunsOut:
      out.set_outlook(v1::SpendForecast::OUTLOOK_RUNS_OUT);
      out.set_runs_out_month(f.runs_out.ToString());
      break;
    case core::SpendForecast::Outlook::kLastsTheTerm:
      out.set_outlook(v1::SpendForecast::OUTLOOK_LASTS_THE_TERM);
      break;
  }
  *out.mutable_burn_rate() = MoneyOf(f.burn_rate, currency);
  out.set_months_averaged(f.months_averaged);
  return out;
}

v1::Money MoneyOf(int64_t micros, absl::string_view currency) {
  v1::Money out;
  out.set_currency_code(std::string(currency));
  int64_t units;
  int32_t nanos;
  core::MicrosToUnitsNanos(micros, &units, &nanos);
  out.set_units(units);
  out.set_nanos(nanos);
  return out;
}

absl::StatusOr<v1::LineItemDefinition> ToLineDefinition(
    const v1::LineItem& line, absl::string_view currency,
    absl::string_view field) {
  v1::LineItemDefinition def;
  def.set_line_number(line.line_number());
  def.set_type(line.type());
  def.set_start_month(line.start_month());
  def.set_end_month(line.end_month());
  def.set_description(line.description());
  def.set_balance_tracking(line.balance_tracking());
  ASSIGN_OR_RETURN(int64_t amount, MicrosOf(line.amount(), currency,
                                            absl::StrCat(field, ".amount")));
  def.set_amount_micros(amount);
  def.set_quantity(line.quantity());
  if (line.has_tax()) {
    if (line.tax().has_amount()) {
      ASSIGN_OR_RETURN(int64_t tax,
                       MicrosOf(line.tax().amount(), currency,
                                absl::StrCat(field, ".tax.amount")));
      def.set_tax_amount_micros(tax);
    } else if (line.tax().kind_case() == v1::Tax::kRatePpm) {
      def.set_tax_rate_ppm(line.tax().rate_ppm());
    }
  }
  return def;
}

absl::StatusOr<v1::PurchaseOrderHeader> ToHeader(const v1::PurchaseOrder& po,
                                                 absl::string_view field) {
  (void)field;
  v1::PurchaseOrderHeader h;
  h.set_description(po.description());
  *h.mutable_bill_from() = po.bill_from();
  *h.mutable_tax_registration_numbers() = po.tax_registration_numbers();
  h.set_currency_code(po.currency_code());
  h.set_effective_month(po.effective_month());
  h.set_expiration_month(po.expiration_month());
  *h.mutable_contacts() = po.contacts();
  RequestContacts(*h.mutable_contacts());
  *h.mutable_tags() = po.tags();
  *h.mutable_balance_thresholds_percent() = po.balance_thresholds();
  if (po.has_ship_to()) *h.mutable_ship_to() = po.ship_to();
  if (po.has_bill_to()) *h.mutable_bill_to() = po.bill_to();
  return h;
}

absl::StatusOr<core::CreatePurchaseOrder> ToCreate(const v1::PurchaseOrder& po,
                                                   absl::string_view field) {
  core::CreatePurchaseOrder cmd;
  cmd.purchase_order_id = po.purchase_order_id();
  ASSIGN_OR_RETURN(cmd.header, ToHeader(po, field));
  for (int i = 0; i < po.line_items_size(); ++i) {
    ASSIGN_OR_RETURN(
        v1::LineItemDefinition def,
        ToLineDefinition(po.line_items(i), po.currency_code(),
                         absl::StrCat(field, ".line_items[", i, "]")));
    cmd.line_items.push_back(std::move(def));
  }
  return cmd;
}

v1::PurchaseOrder ToApi(const std::string& account_id,
                        const core::PurchaseOrderState& po) {
  const std::string& currency = po.header.currency_code();
  v1::PurchaseOrder out;
  out.set_account_id(account_id);
  out.set_purchase_order_id(po.id);
  const v1::PurchaseOrderHeader& h = po.header;
  out.set_description(h.description());
  *out.mutable_bill_from() = h.bill_from();
  *out.mutable_tax_registration_numbers() = h.tax_registration_numbers();
  out.set_currency_code(currency);
  out.set_effective_month(h.effective_month());
  out.set_expiration_month(h.expiration_month());
  *out.mutable_contacts() = h.contacts();
  AnswerContacts(*out.mutable_contacts());
  *out.mutable_tags() = h.tags();
  *out.mutable_balance_thresholds() = h.balance_thresholds_percent();
  if (h.has_ship_to()) *out.mutable_ship_to() = h.ship_to();
  if (h.has_bill_to()) *out.mutable_bill_to() = h.bill_to();
  for (const auto& [n, line] : po.lines) {
    const v1::LineItemDefinition& d = line.definition;
    v1::LineItem* l = out.add_line_items();
    l->set_line_number(n);
    l->set_type(d.type());
    l->set_start_month(d.start_month());
    l->set_end_month(d.end_month());
    l->set_description(d.description());
    l->set_balance_tracking(d.balance_tracking());
    *l->mutable_amount() = MoneyOf(d.amount_micros(), currency);
    l->set_quantity(d.quantity());
    if (d.tax_case() == v1::LineItemDefinition::kTaxAmountMicros) {
      *l->mutable_tax()->mutable_amount() =
          MoneyOf(d.tax_amount_micros(), currency);
    } else if (d.tax_case() == v1::LineItemDefinition::kTaxRatePpm) {
      l->mutable_tax()->set_rate_ppm(d.tax_rate_ppm());
    }
    *l->mutable_total_value() = MoneyOf(line.total_value, currency);
    *l->mutable_balance() = MoneyOf(line.balance(), currency);
    if (std::optional<core::SpendForecast> f = core::ForecastLine(line)) {
      *l->mutable_forecast() = ForecastOf(*f, currency);
    }
  }
  out.set_status(po.status);
  *out.mutable_value() = MoneyOf(po.Value(), currency);
  *out.mutable_balance() = MoneyOf(po.Balance(), currency);
  *out.mutable_create_time() = core::ToProtoTime(po.create_time);
  *out.mutable_update_time() = core::ToProtoTime(po.update_time);
  out.set_version(po.version);
  out.set_line_item_count(static_cast<int32_t>(po.lines.size()));
  if (std::optional<core::SpendForecast> f = core::ForecastPurchaseOrder(po)) {
    *out.mutable_forecast() = ForecastOf(*f, currency);
  }
  return out;
}

absl::StatusOr<v1::InvoiceData> ToInvoiceData(const v1::Invoice& invoice,
                                              absl::string_view field) {
  v1::InvoiceData d;
  d.set_invoice_id(invoice.invoice_id());
  d.set_kind(invoice.kind() == v1::INVOICE_KIND_UNSPECIFIED
                 ? v1::INVOICE_KIND_INVOICE
                 : invoice.kind());
  d.set_original_invoice_id(invoice.original_invoice_id());
  d.set_bill_from(invoice.bill_from());
  d.set_tax_registration_number(invoice.tax_registration_number());
  d.set_category(invoice.category());
  d.set_billing_period(invoice.billing_period());
  d.set_currency_code(invoice.amount().currency_code());
  ASSIGN_OR_RETURN(int64_t amount,
                   MicrosOf(invoice.amount(), invoice.amount().currency_code(),
                            absl::StrCat(field, ".amount")));
  d.set_amount_micros(amount);
  if (invoice.has_issue_time()) *d.mutable_issue_time() = invoice.issue_time();
  if (invoice.has_due_time()) *d.mutable_due_time() = invoice.due_time();
  d.set_purchase_order_id(invoice.purchase_order_id());
  return d;
}

namespace {

void FillInvoice(const v1::InvoiceData& d, v1::Invoice* out) {
  out->set_invoice_id(d.invoice_id());
  out->set_kind(d.kind());
  out->set_original_invoice_id(d.original_invoice_id());
  out->set_bill_from(d.bill_from());
  out->set_tax_registration_number(d.tax_registration_number());
  out->set_category(d.category());
  out->set_billing_period(d.billing_period());
  *out->mutable_amount() = MoneyOf(d.amount_micros(), d.currency_code());
  if (d.has_issue_time()) *out->mutable_issue_time() = d.issue_time();
  if (d.has_due_time()) *out->mutable_due_time() = d.due_time();
  out->set_purchase_order_id(d.purchase_order_id());
}

}  // namespace

absl::StatusOr<v1::Invoice> InvoiceOf(const std::string& account_id,
                                      const LoggedEvent& logged) {
  v1::Invoice out;
  RETURN_IF_ERROR(FillInvoiceOf(account_id, logged, &out));
  return out;
}

absl::Status FillInvoiceOf(const std::string& account_id,
                           const LoggedEvent& logged, v1::Invoice* out) {
  out->set_account_id(account_id);
  out->set_position(logged.position);
  *out->mutable_record_time() = core::ToProtoTime(logged.time);
  v1::InvoiceAssociation* a = out->mutable_association();
  if (logged.event.has_invoice_recorded()) {
    const v1::InvoiceRecorded& e = logged.event.invoice_recorded();
    const std::string& currency = e.invoice().currency_code();
    FillInvoice(e.invoice(), out);
    a->set_associated(!e.purchase_order_id().empty());
    a->set_purchase_order_id(e.purchase_order_id());
    a->set_line_number(e.line_number());
    a->set_unmatched_reason(e.unmatched_reason());
    if (a->associated()) {
      *a->mutable_line_balance_after() =
          MoneyOf(e.line_balance_after_micros(), currency);
      *a->mutable_purchase_order_balance_after() =
          MoneyOf(e.purchase_order_balance_after_micros(), currency);
    }
    v1::InvoiceExplanation* why = a->mutable_explanation();
    why->set_summary(core::ExplanationSummary(e.explanation()));
    // Of a compact explanation, only the selected purchase order: the FULL
    // view rebuilds the rest (ExplainRecorded).
    *why->mutable_purchase_orders() = e.explanation().purchase_orders();
    *why->mutable_runners_up() = e.explanation().runners_up();
    *why->mutable_purchase_order_outcomes() =
        e.explanation().purchase_order_outcomes();
    why->set_fitting_lines(e.explanation().fitting_lines());
    return absl::OkStatus();
  }
  if (logged.event.has_credit_memo_recorded()) {
    const v1::CreditMemoRecorded& e = logged.event.credit_memo_recorded();
    const std::string& currency = e.credit_memo().currency_code();
    FillInvoice(e.credit_memo(), out);
    a->set_associated(!e.purchase_order_id().empty());
    a->set_purchase_order_id(e.purchase_order_id());
    a->set_line_number(e.line_number());
    if (a->associated()) {
      *a->mutable_line_balance_after() =
          MoneyOf(e.line_balance_after_micros(), currency);
      *a->mutable_purchase_order_balance_after() =
          MoneyOf(e.purchase_order_balance_after_micros(), currency);
    }
    return absl::OkStatus();
  }
  return absl::InternalError(absl::StrCat("event at position ", logged.position,
                                          " is not an invoice"));
}

absl::StatusOr<v1::Invoice> RecordedInvoiceOf(
    const std::string& account_id, const std::vector<LoggedEvent>& events,
    v1::InvoiceView view, v1::InvoiceView default_view) {
  v1::Invoice out;
  RETURN_IF_ERROR(
      FillRecordedInvoice(account_id, events, view, default_view, &out));
  return out;
}

absl::Status FillRecordedInvoice(const std::string& account_id,
                                 const std::vector<LoggedEvent>& events,
                                 v1::InvoiceView view,
                                 v1::InvoiceView default_view,
                                 v1::Invoice* out) {
  const LoggedEvent* record = nullptr;
  for (const LoggedEvent& e : events) {
    if (e.event.has_invoice_recorded() || e.event.has_credit_memo_recorded()) {
      record = &e;
      break;
    }
  }
  if (record == nullptr) {
    return absl::InternalError("recording an invoice logged no invoice");
  }
  RETURN_IF_ERROR(FillInvoiceOf(account_id, *record, out));
  for (const LoggedEvent& e : events) {
    if (e.event.has_notification_raised()) {
      *out->add_notifications() = NotificationOf(account_id, e.position, e.time,
                                                 e.event.notification_raised());
    }
  }
  if (view == v1::INVOICE_VIEW_UNSPECIFIED) view = default_view;
  if (view == v1::INVOICE_VIEW_BASIC) {
    out->mutable_association()->mutable_explanation()->clear_purchase_orders();
  }
  return absl::OkStatus();
}

void RequestContacts(google::protobuf::RepeatedPtrField<v1::Contact>& contacts) {
  for (v1::Contact& c : contacts) {
    c.clear_sealed();
    if (c.erased()) {  // Kept as read: its reference is what counts.
      c.clear_name();
      c.clear_email();
      c.clear_phone();
    } else {
      c.clear_subject_ref();
    }
  }
}

void AnswerContacts(google::protobuf::RepeatedPtrField<v1::Contact>& contacts) {
  for (v1::Contact& c : contacts) {
    c.clear_sealed();
    if (!c.erased()) continue;
    c.set_name(kErasedText);
    c.set_email(kErasedText);
    c.set_phone(kErasedText);
  }
}

absl::StatusOr<v1::Event> EventOf(const RecordedEvent& record) {
  v1::Event out;
  out.set_position(record.position);
  out.set_stream_id(record.stream_id);
  out.set_stream_version(record.stream_version);
  out.set_event_type(record.event_type);
  *out.mutable_time() = core::ToProtoTime(record.timestamp);
  out.set_event_id(record.event_id);
  out.set_request_id(record.request_id);
  out.set_correlation_id(record.correlation_id);
  out.set_actor(record.actor);
  out.set_hash(HashToHex(record.hash));
  out.set_prev_hash(HashToHex(record.prev_hash));
  out.set_record_position(record.record_first());
  out.set_record_events(
      static_cast<uint32_t>(record.record_last() - record.record_first() + 1));
  out.set_account_id(AccountOfStream(record.stream_id));
  if (!out.account_id().empty() &&
      !out.mutable_payload()->ParseFromString(record.payload)) {
    return absl::DataLossError(absl::StrCat(
        "event at position ", record.position, " is not an account event"));
  }
  return out;
}

v1::Notification NotificationOf(const std::string& account_id,
                                uint64_t position, absl::Time time,
                                const v1::NotificationRaised& raised) {
  v1::Notification n;
  n.set_position(position);
  n.set_account_id(account_id);
  *n.mutable_time() = core::ToProtoTime(time);
  n.set_notification_id(raised.notification_id());
  n.set_kind(raised.kind());
  n.set_purchase_order_id(raised.purchase_order_id());
  n.set_purchase_order_description(raised.purchase_order_description());
  n.set_line_number(raised.line_number());
  n.set_threshold_percent(raised.threshold_percent());
  if (raised.kind() == v1::NOTIFICATION_KIND_BALANCE_THRESHOLD) {
    *n.mutable_balance() =
        MoneyOf(raised.balance_micros(), raised.currency_code());
    *n.mutable_total_value() =
        MoneyOf(raised.total_value_micros(), raised.currency_code());
  }
  n.set_invoice_id(raised.invoice_id());
  n.set_expiration_date(raised.expiration_date());
  if (raised.has_due_time()) *n.mutable_due_time() = raised.due_time();
  n.set_reminder_label(raised.reminder_label());
  *n.mutable_recipients() = raised.recipients();
  AnswerContacts(*n.mutable_recipients());
  return n;
}

absl::StatusOr<std::vector<std::string>> HeaderMask(
    const google::protobuf::FieldMask& mask) {
  return api::DomainMask(mask, v1::PurchaseOrder::descriptor(),
                         v1::PurchaseOrderHeader::descriptor(), "",
                         "purchase order");
}

absl::StatusOr<std::vector<std::string>> LineMask(
    const google::protobuf::FieldMask& mask) {
  return api::DomainMask(mask, v1::LineItem::descriptor(),
                         v1::LineItemDefinition::descriptor(), "line_number",
                         "line item");
}

}  // namespace convert
}  // namespace poledger
