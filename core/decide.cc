#include "core/decide.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "core/errors.h"
#include "core/matching.h"
#include "core/money.h"
#include "core/proto_time.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/util/field_mask_util.h"

namespace poledger {
namespace core {
namespace {

constexpr size_t kMaxDescription = 1000;
constexpr size_t kMaxEntityName = 200;
constexpr int kMaxBillFrom = 20;
constexpr size_t kMaxTaxNumber = 50;
constexpr int kMaxTaxNumbers = 50;
constexpr size_t kMaxName = 200;
constexpr size_t kMaxPhone = 50;
constexpr size_t kMaxTagKey = 128;
constexpr size_t kMaxTagValue = 256;
constexpr int kMaxThresholds = 10;
constexpr int kMaxAddressLines = 5;
constexpr size_t kMaxAddressField = 200;
constexpr size_t kMaxMarketplacePurchaseOrderId = 200;
constexpr int32_t kMaxLineNumber = 1000000;

// Collects the events of one decision, stamping each with the time.
class Events {
 public:
  Events(const AccountState& state, absl::Time now)
      : state_(state), now_(ToProtoTime(now)) {}

  v1::AccountEvent& Add() {
    v1::AccountEvent& e = decision_.events.emplace_back();
    *e.mutable_time() = now_;
    return e;
  }
  // The account version the next added event will have.
  uint64_t NextVersion() const {
    return state_.version + decision_.events.size() + 1;
  }
  Decision Take() { return std::move(decision_); }

 private:
  const AccountState& state_;
  const google::protobuf::Timestamp now_;
  Decision decision_;
};

// Whether two lists hold the same people in the same order: a stored
// contact carries its sealed form and subject reference too, which a
// request's does not.
bool SameContacts(const google::protobuf::RepeatedPtrField<v1::Contact>& a,
                  const google::protobuf::RepeatedPtrField<v1::Contact>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const v1::Contact& x, const v1::Contact& y) {
                      if (x.erased() || y.erased()) {
                        return x.erased() && y.erased() &&
                               x.subject_ref() == y.subject_ref();
                      }
                      return x.name() == y.name() && x.email() == y.email() &&
                             x.phone() == y.phone();
                    });
}

absl::Status CheckLength(absl::string_view field, absl::string_view value,
                         size_t max, bool required) {
  if (required && value.empty()) return InvalidField(field, "is required");
  if (value.size() > max) {  // Bytes >= characters: count only then.
    if (const size_t chars = CharCount(value); chars > max) {
      return InvalidField(
          field, absl::StrCat("is ", chars, " characters; the limit is ", max));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAddress(const v1::Address& a, absl::string_view field) {
  if (a.lines_size() > kMaxAddressLines) {
    return InvalidField(absl::StrCat(field, ".lines"),
                        absl::StrCat("at most ", kMaxAddressLines, " lines"));
  }
  for (int i = 0; i < a.lines_size(); ++i) {
    RETURN_IF_ERROR(CheckLength(absl::StrCat(field, ".lines[", i, "]"),
                                a.lines(i), kMaxAddressField, false));
  }
  RETURN_IF_ERROR(CheckLength(absl::StrCat(field, ".city"), a.city(),
                              kMaxAddressField, false));
  RETURN_IF_ERROR(CheckLength(absl::StrCat(field, ".region"), a.region(),
                              kMaxAddressField, false));
  RETURN_IF_ERROR(CheckLength(absl::StrCat(field, ".postal_code"),
                              a.postal_code(), kMaxAddressField, false));
  if (!a.country_code().empty() &&
      (a.country_code().size() != 2 ||
       !absl::ascii_isupper(static_cast<unsigned char>(a.country_code()[0])) ||
       !absl::ascii_isupper(static_cast<unsigned char>(a.country_code()[1])))) {
    return InvalidField(absl::StrCat(field, ".country_code"),
                        "must be an ISO 3166 alpha-2 code such as \"DE\"");
  }
  return absl::OkStatus();
}

// Validates a whole header and fills defaults (the balance threshold).
absl::Status ValidateHeader(v1::PurchaseOrderHeader& h) {
  RETURN_IF_ERROR(
      CheckLength("description", h.description(), kMaxDescription, false));
  if (h.bill_from().empty()) {
    return InvalidField("bill_from", "at least one seller entity is required");
  }
  if (h.bill_from_size() > kMaxBillFrom) {
    return InvalidField("bill_from",
                        absl::StrCat("at most ", kMaxBillFrom, " entities"));
  }
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < h.bill_from_size(); ++i) {
    const std::string field = absl::StrCat("bill_from[", i, "]");
    RETURN_IF_ERROR(CheckLength(field, h.bill_from(i), kMaxEntityName, true));
    if (!seen.insert(h.bill_from(i)).second) {
      return InvalidField(
          field, absl::StrCat(Quote(h.bill_from(i)), " is listed twice"));
    }
  }
  if (h.tax_registration_numbers_size() > kMaxTaxNumbers) {
    return InvalidField("tax_registration_numbers",
                        absl::StrCat("at most ", kMaxTaxNumbers, " numbers"));
  }
  for (int i = 0; i < h.tax_registration_numbers_size(); ++i) {
    RETURN_IF_ERROR(CheckLength(absl::StrCat("tax_registration_numbers[", i, "]"),
                                h.tax_registration_numbers(i), kMaxTaxNumber,
                                true));
  }
  if (!IsCurrencyCode(h.currency_code())) {
    return InvalidField("currency_code",
                        absl::StrCat(Quote(h.currency_code()),
                                     " is not an ISO 4217 code such as USD"));
  }
  ASSIGN_OR_RETURN(YearMonth effective,
                   YearMonth::Parse(h.effective_month(), "effective_month"));
  ASSIGN_OR_RETURN(YearMonth expiration,
                   YearMonth::Parse(h.expiration_month(), "expiration_month"));
  if (expiration < effective) {
    return InvalidField("expiration_month",
                        absl::StrCat(h.expiration_month(),
                                     " is before the effective month ",
                                     h.effective_month()));
  }
  if (h.contacts_size() > kMaxContacts) {
    return InvalidField("contacts", absl::StrCat(h.contacts_size(),
                                                 " contacts; the limit is ",
                                                 kMaxContacts));
  }
  for (int i = 0; i < h.contacts_size(); ++i) {
    const v1::Contact& c = h.contacts(i);
    // An erased contact the purchase order keeps: nothing left to check.
    if (c.erased()) continue;
    const std::string field = absl::StrCat("contacts[", i, "]");
    RETURN_IF_ERROR(
        CheckLength(absl::StrCat(field, ".name"), c.name(), kMaxName, false));
    RETURN_IF_ERROR(ValidateEmail(c.email(), absl::StrCat(field, ".email")));
    RETURN_IF_ERROR(CheckLength(absl::StrCat(field, ".phone"), c.phone(),
                                kMaxPhone, false));
    for (char ch : c.phone()) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(ch)) &&
          std::string_view("+-() .").find(ch) == std::string_view::npos) {
        return InvalidField(absl::StrCat(field, ".phone"),
                            "may hold only digits, spaces and + - ( ) .");
      }
    }
  }
  if (h.tags_size() > kMaxTags) {
    return InvalidField("tags", absl::StrCat(h.tags_size(),
                                             " tags; the limit is ", kMaxTags));
  }
  seen.clear();
  for (int i = 0; i < h.tags_size(); ++i) {
    const std::string field = absl::StrCat("tags[", i, "]");
    RETURN_IF_ERROR(CheckLength(absl::StrCat(field, ".key"), h.tags(i).key(),
                                kMaxTagKey, true));
    RETURN_IF_ERROR(CheckLength(absl::StrCat(field, ".value"),
                                h.tags(i).value(), kMaxTagValue, false));
    if (!seen.insert(h.tags(i).key()).second) {
      return InvalidField(
          absl::StrCat(field, ".key"),
          absl::StrCat(Quote(h.tags(i).key()), " is used twice"));
    }
  }
  if (h.balance_thresholds_percent_size() > kMaxThresholds) {
    return InvalidField("balance_thresholds_percent",
                        absl::StrCat("at most ", kMaxThresholds, " thresholds"));
  }
  std::set<int32_t> thresholds;
  for (int i = 0; i < h.balance_thresholds_percent_size(); ++i) {
    const int32_t t = h.balance_thresholds_percent(i);
    if (t < 1 || t > 100 || !thresholds.insert(t).second) {
      return InvalidField(absl::StrCat("balance_thresholds_percent[", i, "]"),
                          "must be distinct percentages from 1 to 100");
    }
  }
  h.clear_balance_thresholds_percent();
  if (thresholds.empty()) thresholds.insert(kDefaultBalanceThresholdPercent);
  for (int32_t t : thresholds) h.add_balance_thresholds_percent(t);
  if (h.has_ship_to()) RETURN_IF_ERROR(ValidateAddress(h.ship_to(), "ship_to"));
  if (h.has_bill_to()) RETURN_IF_ERROR(ValidateAddress(h.bill_to(), "bill_to"));
  return absl::OkStatus();
}

// Validates a line on its own and fills defaults (quantity 1).
absl::Status ValidateLine(v1::LineItemDefinition& line,
                          absl::string_view prefix) {
  auto field = [&](absl::string_view name) {
    return absl::StrCat(prefix, name);
  };
  if (line.line_number() < 1 || line.line_number() > kMaxLineNumber) {
    return InvalidField(field("line_number"),
                        absl::StrCat("must be from 1 to ", kMaxLineNumber));
  }
  if (line.type() == v1::LINE_ITEM_TYPE_UNSPECIFIED ||
      !v1::LineItemType_IsValid(line.type())) {
    return InvalidField(field("type"), "a line item type is required");
  }
  ASSIGN_OR_RETURN(YearMonth start,
                   YearMonth::Parse(line.start_month(), field("start_month")));
  ASSIGN_OR_RETURN(YearMonth end,
                   YearMonth::Parse(line.end_month(), field("end_month")));
  if (end < start) {
    return InvalidField(field("end_month"),
                        absl::StrCat(line.end_month(), " is before start_month ",
                                     line.start_month()));
  }
  RETURN_IF_ERROR(CheckLength(field("description"), line.description(),
                              kMaxDescription, false));
  if (line.amount_micros() < 0) {
    return InvalidField(field("amount"), "must not be negative");
  }
  if (line.quantity() < 0) {
    return InvalidField(field("quantity"), "must not be negative");
  }
  if (line.balance_tracking()) {
    if (line.amount_micros() == 0) {
      return InvalidField(field("amount"),
                          "is required when balance tracking is on");
    }
    if (line.quantity() == 0) {
      return InvalidField(field("quantity"),
                          "is required when balance tracking is on");
    }
  }
  if (line.quantity() == 0) line.set_quantity(1);
  if (line.tax_case() == v1::LineItemDefinition::kTaxAmountMicros &&
      line.tax_amount_micros() < 0) {
    return InvalidField(field("tax"), "must not be negative");
  }
  if (line.tax_case() == v1::LineItemDefinition::kTaxRatePpm &&
      (line.tax_rate_ppm() < 0 || line.tax_rate_ppm() > 1000000)) {
    return InvalidField(field("tax"), "a rate must be from 0% to 100%");
  }
  absl::StatusOr<int64_t> total = LineTotal(line);
  if (!total.ok()) {
    return InvalidField(field("amount"),
                        "amount x quantity + tax exceeds the supported range",
                        reason::kMoneyOverflow);
  }
  return absl::OkStatus();
}

// The line must lie within the purchase order's months.
absl::Status CheckLineWindow(const v1::LineItemDefinition& line,
                             YearMonth effective, YearMonth expiration,
                             absl::string_view prefix, absl::StatusCode code) {
  const YearMonth start = *YearMonth::Parse(line.start_month(), "start_month");
  const YearMonth end = *YearMonth::Parse(line.end_month(), "end_month");
  if (start >= effective && end <= expiration) return absl::OkStatus();
  const std::string message = absl::StrCat(
      prefix, "start_month: line ", line.line_number(), " runs ",
      line.start_month(), "..", line.end_month(),
      ", outside the purchase order's ", effective.ToString(), "..",
      expiration.ToString());
  if (code == absl::StatusCode::kInvalidArgument) {
    return InvalidField(absl::StrCat(prefix, "start_month"),
                        message.substr(message.find(':') + 2),
                        reason::kLineItemOutsideWindow);
  }
  return DomainError(code, reason::kLineItemOutsideWindow, message);
}

absl::StatusOr<const PurchaseOrderState*> FindPo(const AccountState& state,
                                                 const std::string& id) {
  RETURN_IF_ERROR(ValidatePurchaseOrderId(id, "purchase_order_id"));
  auto it = state.purchase_orders.find(id);
  if (it == state.purchase_orders.end()) {
    return DomainError(
        absl::StatusCode::kNotFound, reason::kPurchaseOrderNotFound,
        absl::StrCat("purchase order ", Quote(id), " not found"));
  }
  return &it->second;
}

absl::Status CheckExpected(const PurchaseOrderState& po,
                           const std::optional<uint64_t>& expected) {
  if (!expected.has_value() || *expected == po.version) return absl::OkStatus();
  return DomainError(
      absl::StatusCode::kAborted, reason::kWrongExpectedVersion,
      absl::StrCat("purchase order ", Quote(po.id), " is at version ",
                   po.version, ", not the expected ", *expected));
}

absl::Status CheckActiveLimit(const AccountState& state) {
  if (state.ActiveCount() < kMaxActivePurchaseOrders) return absl::OkStatus();
  return DomainError(
      absl::StatusCode::kFailedPrecondition, reason::kActivePurchaseOrderLimit,
      absl::StrCat("the account already has ", kMaxActivePurchaseOrders,
                   " Active purchase orders; suspend, delete or let one "
                   "expire first"));
}

// A line's invoiced sum as a decision would leave it.
struct InvoicedAfter {
  int32_t line_number = 0;
  int64_t invoiced = 0;
};

// Checks that `lines` keep the purchase order's value and balance in range,
// with one line's invoiced sum as `after` says (if given): without copying
// the lines, which an invoice on a purchase order of 100 lines would do
// on every call.
absl::Status CheckPurchaseOrderSums(
    const std::map<int32_t, LineItemState>& lines,
    std::optional<InvoicedAfter> after = std::nullopt) {
  int64_t value = 0;
  int64_t balance = 0;
  for (const auto& [n, line] : lines) {
    ASSIGN_OR_RETURN(value, AddMicros(value, line.total_value,
                                      "purchase order value"));
    const int64_t invoiced = after.has_value() && after->line_number == n
                                 ? after->invoiced
                                 : line.invoiced;
    ASSIGN_OR_RETURN(int64_t b,
                     SubMicros(line.total_value, invoiced, "line balance"));
    ASSIGN_OR_RETURN(balance, AddMicros(balance, b, "purchase order balance"));
  }
  return absl::OkStatus();
}

v1::NotificationRaised* AddNotification(Events& events,
                                        const AccountState& state,
                                        const PurchaseOrderState& po,
                                        v1::NotificationKind kind) {
  v1::NotificationRaised* n = events.Add().mutable_notification_raised();
  n->set_notification_id(
      absl::StrCat(state.account_id, "/", events.NextVersion() - 1));
  n->set_kind(kind);
  n->set_purchase_order_id(po.id);
  n->set_purchase_order_description(po.header.description());
  n->set_currency_code(po.header.currency_code());
  n->set_expiration_date(FormatDay(po.expiration.LastDay()));
  for (const v1::Contact& c : po.header.contacts()) *n->add_recipients() = c;
  return n;
}

// Raises a balance alert for each threshold the line is newly below.
void RaiseBalanceAlerts(Events& events, const AccountState& state,
                        const PurchaseOrderState& po, const LineItemState& line,
                        int64_t balance, absl::string_view invoice_id) {
  if (!line.definition.balance_tracking() || line.total_value <= 0) return;
  for (int32_t pct : po.header.balance_thresholds_percent()) {
    if (std::binary_search(line.fired_thresholds.begin(),
                           line.fired_thresholds.end(), pct)) {
      continue;
    }
    if (static_cast<__int128>(balance) * 100 >=
        static_cast<__int128>(line.total_value) * pct) {
      continue;
    }
    v1::NotificationRaised* n = AddNotification(
        events, state, po, v1::NOTIFICATION_KIND_BALANCE_THRESHOLD);
    n->set_line_number(line.definition.line_number());
    n->set_threshold_percent(pct);
    n->set_balance_micros(balance);
    n->set_total_value_micros(line.total_value);
    n->set_invoice_id(std::string(invoice_id));
  }
}

// --- Purchase orders -------------------------------------------------------

// OK unless `h` holds an erased contact that `kept_from` (the purchase
// order's header before an update; null for a new one) does not: an erased
// contact can be kept, as read, never made.
absl::Status CheckErasedContacts(v1::PurchaseOrderHeader& h,
                                 const v1::PurchaseOrderHeader* kept_from) {
  for (int i = 0; i < h.contacts_size(); ++i) {
    v1::Contact& c = *h.mutable_contacts(i);
    if (!c.erased()) continue;
    const bool held =
        kept_from != nullptr &&
        std::any_of(kept_from->contacts().begin(), kept_from->contacts().end(),
                    [&](const v1::Contact& old) {
                      return old.erased() &&
                             old.subject_ref() == c.subject_ref();
                    });
    if (!held) {
      return InvalidField(
          absl::StrCat("contacts[", i, "].erased"),
          "only an erased contact this purchase order holds can be kept; "
          "leave it out to remove it");
    }
    const std::string ref = c.subject_ref();
    c.Clear();
    c.set_subject_ref(ref);
    c.set_erased(true);
  }
  return absl::OkStatus();
}

absl::StatusOr<Decision> DecideCreate(const AccountState& state,
                                      const CreatePurchaseOrder& cmd,
                                      absl::Time now) {
  RETURN_IF_ERROR(
      ValidatePurchaseOrderId(cmd.purchase_order_id, "purchase_order_id"));
  v1::PurchaseOrderHeader header = cmd.header;
  RETURN_IF_ERROR(ValidateHeader(header));
  RETURN_IF_ERROR(CheckErasedContacts(header, nullptr));
  if (static_cast<int>(cmd.line_items.size()) > kMaxLineItems) {
    return InvalidField("line_items",
                        absl::StrCat(cmd.line_items.size(),
                                     " line items; the limit is ", kMaxLineItems));
  }
  const YearMonth effective = *YearMonth::Parse(header.effective_month(), "");
  const YearMonth expiration = *YearMonth::Parse(header.expiration_month(), "");
  std::vector<v1::LineItemDefinition> lines = cmd.line_items;
  std::map<int32_t, LineItemState> sums;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string prefix = absl::StrCat("line_items[", i, "].");
    RETURN_IF_ERROR(ValidateLine(lines[i], prefix));
    RETURN_IF_ERROR(CheckLineWindow(lines[i], effective, expiration, prefix,
                                    absl::StatusCode::kInvalidArgument));
    if (sums.count(lines[i].line_number()) > 0) {
      return InvalidField(absl::StrCat(prefix, "line_number"),
                          absl::StrCat("line number ", lines[i].line_number(),
                                       " is used twice"));
    }
    sums[lines[i].line_number()].total_value = *LineTotal(lines[i]);
  }
  RETURN_IF_ERROR(CheckPurchaseOrderSums(sums));
  if (state.purchase_orders.count(cmd.purchase_order_id) > 0) {
    return DomainError(
        absl::StatusCode::kAlreadyExists, reason::kPurchaseOrderAlreadyExists,
        absl::StrCat("purchase order ", Quote(cmd.purchase_order_id),
                     " already exists"));
  }
  RETURN_IF_ERROR(CheckActiveLimit(state));
  Events events(state, now);
  v1::PurchaseOrderCreated* e = events.Add().mutable_purchase_order_created();
  e->set_purchase_order_id(cmd.purchase_order_id);
  *e->mutable_header() = std::move(header);
  for (v1::LineItemDefinition& l : lines) *e->add_line_items() = std::move(l);
  for (v1::ScheduledReminder& r : PlanReminders(expiration, now)) {
    *e->add_reminders() = std::move(r);
  }
  e->set_origin(v1::PURCHASE_ORDER_ORIGIN_USER);
  return events.Take();
}

absl::StatusOr<Decision> DecideUpdate(const AccountState& state,
                                      const UpdatePurchaseOrder& cmd,
                                      absl::Time now) {
  ASSIGN_OR_RETURN(const PurchaseOrderState* po,
                   FindPo(state, cmd.purchase_order_id));
  v1::PurchaseOrderHeader header = po->header;
  RETURN_IF_ERROR(MergeMasked(cmd.header, cmd.update_mask, "", &header));
  RETURN_IF_ERROR(ValidateHeader(header));
  RETURN_IF_ERROR(CheckErasedContacts(header, &po->header));
  RETURN_IF_ERROR(CheckExpected(*po, cmd.expected_version));
  const YearMonth effective = *YearMonth::Parse(header.effective_month(), "");
  const YearMonth expiration = *YearMonth::Parse(header.expiration_month(), "");
  for (const auto& [n, line] : po->lines) {
    RETURN_IF_ERROR(CheckLineWindow(line.definition, effective, expiration, "",
                                    absl::StatusCode::kFailedPrecondition));
  }
  const bool expiration_changed = expiration != po->expiration;
  const bool reactivate = expiration_changed &&
                          po->status == v1::PURCHASE_ORDER_STATUS_EXPIRED &&
                          expiration.End() > now;
  if (expiration_changed &&
      po->status == v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED) {
    return DomainError(
        absl::StatusCode::kFailedPrecondition, reason::kInvalidStatusTransition,
        absl::StrCat("purchase order ", Quote(po->id),
                     " is Suspended-expired: set it back to Expired before "
                     "changing its expiration month"));
  }
  if (reactivate) RETURN_IF_ERROR(CheckActiveLimit(state));
  std::vector<std::string> changed;
  const v1::PurchaseOrderHeader& old = po->header;
  auto differs = [](const auto& a, const auto& b) {
    return a.SerializeAsString() != b.SerializeAsString();
  };
  if (old.description() != header.description()) changed.push_back("description");
  if (!std::equal(old.bill_from().begin(), old.bill_from().end(),
                  header.bill_from().begin(), header.bill_from().end())) {
    changed.push_back("bill_from");
  }
  if (!std::equal(old.tax_registration_numbers().begin(),
                  old.tax_registration_numbers().end(),
                  header.tax_registration_numbers().begin(),
                  header.tax_registration_numbers().end())) {
    changed.push_back("tax_registration_numbers");
  }
  if (old.currency_code() != header.currency_code()) changed.push_back("currency_code");
  if (old.effective_month() != header.effective_month()) changed.push_back("effective_month");
  if (expiration_changed) changed.push_back("expiration_month");
  if (!SameContacts(old.contacts(), header.contacts())) {
    changed.push_back("contacts");
  }
  v1::PurchaseOrderHeader old_tags, new_tags;
  *old_tags.mutable_tags() = old.tags();
  *new_tags.mutable_tags() = header.tags();
  if (differs(old_tags, new_tags)) changed.push_back("tags");
  if (!std::equal(old.balance_thresholds_percent().begin(),
                  old.balance_thresholds_percent().end(),
                  header.balance_thresholds_percent().begin(),
                  header.balance_thresholds_percent().end())) {
    changed.push_back("balance_thresholds_percent");
  }
  if (differs(old.ship_to(), header.ship_to())) changed.push_back("ship_to");
  if (differs(old.bill_to(), header.bill_to())) changed.push_back("bill_to");

  Events events(state, now);
  if (changed.empty()) return events.Take();  // Nothing to record.
  v1::PurchaseOrderUpdated* e = events.Add().mutable_purchase_order_updated();
  e->set_purchase_order_id(po->id);
  *e->mutable_header() = header;
  for (std::string& c : changed) e->add_changed_fields(std::move(c));
  if (expiration_changed) {
    e->set_reminders_rescheduled(true);
    for (v1::ScheduledReminder& r : PlanReminders(expiration, now)) {
      *e->add_reminders() = std::move(r);
    }
  }
  if (reactivate) {
    v1::PurchaseOrderStatusChanged* s =
        events.Add().mutable_purchase_order_status_changed();
    s->set_purchase_order_id(po->id);
    s->set_from_status(po->status);
    s->set_to_status(v1::PURCHASE_ORDER_STATUS_ACTIVE);
    s->set_reason(v1::STATUS_CHANGE_REASON_EXPIRATION_EXTENDED);
  }
  return events.Take();
}

absl::StatusOr<Decision> DecideStatus(const AccountState& state,
                                      const ChangePurchaseOrderStatus& cmd,
                                      absl::Time now) {
  if (cmd.status == v1::PURCHASE_ORDER_STATUS_UNSPECIFIED ||
      !v1::PurchaseOrderStatus_IsValid(cmd.status)) {
    return InvalidField("status", "a target status is required");
  }
  ASSIGN_OR_RETURN(const PurchaseOrderState* po,
                   FindPo(state, cmd.purchase_order_id));
  RETURN_IF_ERROR(CheckExpected(*po, cmd.expected_version));
  Events events(state, now);
  using S = v1::PurchaseOrderStatus;
  const S from = po->status;
  S to = cmd.status;
  // "Suspend" an Expired purchase order: the user means Suspended-expired
  // (and a Suspended-expired one is suspended already).
  if (to == v1::PURCHASE_ORDER_STATUS_SUSPENDED &&
      (from == v1::PURCHASE_ORDER_STATUS_EXPIRED ||
       from == v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED)) {
    to = v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED;
  }
  if (from == to) return events.Take();  // Already there.
  const bool allowed =
      (from == v1::PURCHASE_ORDER_STATUS_ACTIVE &&
       to == v1::PURCHASE_ORDER_STATUS_SUSPENDED) ||
      (from == v1::PURCHASE_ORDER_STATUS_SUSPENDED &&
       to == v1::PURCHASE_ORDER_STATUS_ACTIVE) ||
      (from == v1::PURCHASE_ORDER_STATUS_EXPIRED &&
       to == v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED) ||
      (from == v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED &&
       to == v1::PURCHASE_ORDER_STATUS_EXPIRED);
  if (!allowed) {
    std::string hint;
    if (to == v1::PURCHASE_ORDER_STATUS_ACTIVE) {
      hint = from == v1::PURCHASE_ORDER_STATUS_EXPIRED
                 ? "; extend its expiration month to make it Active"
                 : "; set it back to Expired, then extend its expiration month";
    } else if (to == v1::PURCHASE_ORDER_STATUS_EXPIRED ||
               to == v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED) {
      hint = "; only the system expires purchase orders";
    }
    return DomainError(absl::StatusCode::kFailedPrecondition,
                       reason::kInvalidStatusTransition,
                       absl::StrCat("purchase order ", Quote(po->id),
                                    " cannot go "
                                    "from ",
                                    v1::PurchaseOrderStatus_Name(from), " to ",
                                    v1::PurchaseOrderStatus_Name(to), hint));
  }
  if (to == v1::PURCHASE_ORDER_STATUS_ACTIVE) {
    RETURN_IF_ERROR(CheckActiveLimit(state));
  }
  v1::PurchaseOrderStatusChanged* e =
      events.Add().mutable_purchase_order_status_changed();
  e->set_purchase_order_id(po->id);
  e->set_from_status(from);
  e->set_to_status(to);
  e->set_reason(v1::STATUS_CHANGE_REASON_USER);
  return events.Take();
}

absl::StatusOr<Decision> DecideDelete(const AccountState& state,
                                      const DeletePurchaseOrder& cmd,
                                      absl::Time now) {
  ASSIGN_OR_RETURN(const PurchaseOrderState* po,
                   FindPo(state, cmd.purchase_order_id));
  RETURN_IF_ERROR(CheckExpected(*po, cmd.expected_version));
  Events events(state, now);
  events.Add().mutable_purchase_order_deleted()->set_purchase_order_id(po->id);
  return events.Take();
}

// --- Line items --------------------------------------------------------------

absl::StatusOr<Decision> DecideAddLine(const AccountState& state,
                                       const AddLineItem& cmd, absl::Time now) {
  v1::LineItemDefinition line = cmd.line_item;
  RETURN_IF_ERROR(ValidateLine(line, "line_item."));
  ASSIGN_OR_RETURN(const PurchaseOrderState* po,
                   FindPo(state, cmd.purchase_order_id));
  RETURN_IF_ERROR(CheckExpected(*po, cmd.expected_version));
  if (po->lines.count(line.line_number()) > 0) {
    return DomainError(absl::StatusCode::kAlreadyExists,
                       reason::kLineItemAlreadyExists,
                       absl::StrCat("purchase order ", Quote(po->id),
                                    " already has line ", line.line_number()));
  }
  if (static_cast<int>(po->lines.size()) >= kMaxLineItems) {
    return DomainError(
        absl::StatusCode::kFailedPrecondition, reason::kLineItemLimit,
        absl::StrCat("purchase order ", Quote(po->id), " already has ",
                     kMaxLineItems, " line items"));
  }
  RETURN_IF_ERROR(CheckLineWindow(line, po->effective, po->expiration,
                                  "line_item.",
                                  absl::StatusCode::kFailedPrecondition));
  std::map<int32_t, LineItemState> lines = po->lines;
  lines[line.line_number()].total_value = *LineTotal(line);
  RETURN_IF_ERROR(CheckPurchaseOrderSums(lines));
  Events events(state, now);
  v1::LineItemAdded* e = events.Add().mutable_line_item_added();
  e->set_purchase_order_id(po->id);
  *e->mutable_line_item() = std::move(line);
  return events.Take();
}

absl::StatusOr<Decision> DecideUpdateLine(const AccountState& state,
                                          const UpdateLineItem& cmd,
                                          absl::Time now) {
  ASSIGN_OR_RETURN(const PurchaseOrderState* po,
                   FindPo(state, cmd.purchase_order_id));
  auto it = po->lines.find(cmd.line_item.line_number());
  if (it == po->lines.end()) {
    return DomainError(
        absl::StatusCode::kNotFound, reason::kLineItemNotFound,
        absl::StrCat("purchase order ", Quote(po->id), " has no line ",
                     cmd.line_item.line_number()));
  }
  v1::LineItemDefinition line = it->second.definition;
  RETURN_IF_ERROR(
      MergeMasked(cmd.line_item, cmd.update_mask, "line_number", &line));
  RETURN_IF_ERROR(ValidateLine(line, "line_item."));
  RETURN_IF_ERROR(CheckExpected(*po, cmd.expected_version));
  RETURN_IF_ERROR(CheckLineWindow(line, po->effective, po->expiration,
                                  "line_item.",
                                  absl::StatusCode::kFailedPrecondition));
  std::map<int32_t, LineItemState> lines = po->lines;
  LineItemState& updated = lines[line.line_number()];
  updated.definition = line;
  updated.total_value = *LineTotal(line);
  RETURN_IF_ERROR(CheckPurchaseOrderSums(lines));
  Events events(state, now);
  if (line.SerializeAsString() == it->second.definition.SerializeAsString()) {
    return events.Take();  // Nothing changed.
  }
  v1::LineItemUpdated* e = events.Add().mutable_line_item_updated();
  e->set_purchase_order_id(po->id);
  *e->mutable_line_item() = line;
  // A lower total can take the balance below a threshold.
  LineItemState after = updated;
  after.fired_thresholds = it->second.fired_thresholds;
  const int64_t balance = after.total_value - after.invoiced;
  // Thresholds the new balance is back above re-arm first (as Apply does).
  after.fired_thresholds.erase(
      std::remove_if(after.fired_thresholds.begin(), after.fired_thresholds.end(),
                     [&](int32_t pct) {
                       return static_cast<__int128>(balance) * 100 >=
                              static_cast<__int128>(after.total_value) * pct;
                     }),
      after.fired_thresholds.end());
  RaiseBalanceAlerts(events, state, *po, after, balance, "");
  return events.Take();
}

absl::StatusOr<Decision> DecideRemoveLine(const AccountState& state,
                                          const RemoveLineItem& cmd,
                                          absl::Time now) {
  ASSIGN_OR_RETURN(const PurchaseOrderState* po,
                   FindPo(state, cmd.purchase_order_id));
  if (po->lines.count(cmd.line_number) == 0) {
    return DomainError(absl::StatusCode::kNotFound, reason::kLineItemNotFound,
                       absl::StrCat("purchase order ", Quote(po->id),
                                    " has no line ", cmd.line_number));
  }
  RETURN_IF_ERROR(CheckExpected(*po, cmd.expected_version));
  Events events(state, now);
  v1::LineItemRemoved* e = events.Add().mutable_line_item_removed();
  e->set_purchase_order_id(po->id);
  e->set_line_number(cmd.line_number);
  return events.Take();
}

// --- Invoices ----------------------------------------------------------------

absl::Status ValidateInvoice(v1::InvoiceData& in) {
  RETURN_IF_ERROR(ValidateId(in.invoice_id(), "invoice_id", kMaxInvoiceId));
  if (in.kind() != v1::INVOICE_KIND_INVOICE &&
      in.kind() != v1::INVOICE_KIND_CREDIT_MEMO) {
    return InvalidField("kind", "must be INVOICE_KIND_INVOICE or "
                                "INVOICE_KIND_CREDIT_MEMO");
  }
  if (in.kind() == v1::INVOICE_KIND_CREDIT_MEMO) {
    RETURN_IF_ERROR(ValidateId(in.original_invoice_id(), "original_invoice_id",
                               kMaxInvoiceId));
  } else if (!in.original_invoice_id().empty()) {
    return InvalidField("original_invoice_id",
                        "only a credit memo names an original invoice");
  }
  RETURN_IF_ERROR(CheckLength("bill_from", in.bill_from(), kMaxEntityName, true));
  RETURN_IF_ERROR(CheckLength("tax_registration_number",
                              in.tax_registration_number(), kMaxTaxNumber,
                              false));
  if (in.category() == v1::INVOICE_CATEGORY_UNSPECIFIED ||
      !v1::InvoiceCategory_IsValid(in.category())) {
    return InvalidField("category", "an invoice category is required");
  }
  RETURN_IF_ERROR(YearMonth::Parse(in.billing_period(), "billing_period").status());
  if (!IsCurrencyCode(in.currency_code())) {
    return InvalidField(
        "amount.currency_code",
        absl::StrCat(Quote(in.currency_code()), " is not an ISO 4217 code"));
  }
  if (in.amount_micros() <= 0) {
    return InvalidField("amount", "must be positive (credit memos too: their "
                                  "kind says they are credits)");
  }
  RETURN_IF_ERROR(CheckLength("purchase_order_id", in.purchase_order_id(),
                              kMaxMarketplacePurchaseOrderId, false));
  // The content digest is the canonical encoding of everything else, so two
  // submissions are "the same invoice" exactly when every field is equal.
  in.clear_content_digest();
  in.set_content_digest(in.SerializeAsString());
  return absl::OkStatus();
}

absl::StatusOr<Decision> DecideInvoice(const AccountState& state,
                                       const v1::InvoiceData& invoice,
                                       absl::Time now) {
  Events events(state, now);
  const MatchInput input = MatchInputOf(invoice);
  const MatchResult result = Match(state, input);
  v1::InvoiceRecorded* e = events.Add().mutable_invoice_recorded();
  *e->mutable_invoice() = invoice;
  // The event keeps the compact form: ExplainRecorded gives the rest.
  *e->mutable_explanation() =
      Explain(state, input, result, ExplainDetail::kCompact);
  if (!result.matched()) {
    e->set_unmatched_reason(state.purchase_orders.empty()
                                ? v1::UNMATCHED_REASON_NO_PURCHASE_ORDERS
                                : v1::UNMATCHED_REASON_NO_CANDIDATE);
    return events.Take();
  }
  const PurchaseOrderState& po = *result.purchase_order;
  const LineItemState& line = *result.line;
  ASSIGN_OR_RETURN(int64_t invoiced, AddMicros(line.invoiced,
                                               invoice.amount_micros(),
                                               "line balance"));
  RETURN_IF_ERROR(CheckPurchaseOrderSums(
      po.lines, InvoicedAfter{line.definition.line_number(), invoiced}));
  const int64_t balance = line.total_value - invoiced;
  e->set_purchase_order_id(po.id);
  e->set_line_number(line.definition.line_number());
  e->set_line_balance_after_micros(balance);
  e->set_purchase_order_balance_after_micros(po.Balance() -
                                             invoice.amount_micros());
  RaiseBalanceAlerts(events, state, po, line, balance, invoice.invoice_id());
  return events.Take();
}

absl::StatusOr<Decision> DecideCreditMemo(const AccountState& state,
                                          const v1::InvoiceData& memo,
                                          absl::Time now) {
  auto original = state.invoices.find(memo.original_invoice_id());
  if (original == state.invoices.end() ||
      original->second.kind != v1::INVOICE_KIND_INVOICE) {
    return DomainError(
        absl::StatusCode::kNotFound, reason::kOriginalInvoiceNotFound,
        absl::StrCat("original_invoice_id: no invoice ",
                     Quote(memo.original_invoice_id()), " in this account"));
  }
  const InvoiceEntry& inv = original->second;
  ASSIGN_OR_RETURN(int64_t credited,
                   AddMicros(inv.credited, memo.amount_micros(), "credits"));
  if (credited > inv.amount) {
    return DomainError(
        absl::StatusCode::kFailedPrecondition, reason::kCreditExceedsInvoice,
        absl::StrCat("credits for invoice ", Quote(memo.original_invoice_id()),
                     " would total ",
                     FormatMicros(credited, memo.currency_code()),
                     ", more than its ",
                     FormatMicros(inv.amount, memo.currency_code())));
  }
  Events events(state, now);
  v1::CreditMemoRecorded* e = events.Add().mutable_credit_memo_recorded();
  *e->mutable_credit_memo() = memo;
  auto po_it = state.purchase_orders.find(inv.purchase_order_id);
  if (inv.purchase_order_id.empty() || po_it == state.purchase_orders.end() ||
      po_it->second.created_version != inv.purchase_order_created_version) {
    return events.Take();  // Nothing left to restore.
  }
  // The very line the invoice was charged to: one removed and added again
  // with the same number was never charged it.
  auto line_it = po_it->second.lines.find(inv.line_number);
  if (line_it == po_it->second.lines.end() ||
      line_it->second.created_version != inv.line_created_version) {
    return events.Take();
  }
  const PurchaseOrderState& po = po_it->second;
  const LineItemState& line = po.lines.at(inv.line_number);
  e->set_purchase_order_id(po.id);
  e->set_line_number(inv.line_number);
  e->set_line_balance_after_micros(line.balance() + memo.amount_micros());
  e->set_purchase_order_balance_after_micros(po.Balance() +
                                             memo.amount_micros());
  return events.Take();
}

absl::StatusOr<Decision> DecideRecordInvoice(const AccountState& state,
                                             const RecordInvoice& cmd,
                                             absl::Time now) {
  v1::InvoiceData invoice = cmd.invoice;
  RETURN_IF_ERROR(ValidateInvoice(invoice));
  auto existing = state.invoices.find(invoice.invoice_id());
  if (existing != state.invoices.end()) {
    if (existing->second.content_digest == invoice.content_digest()) {
      Decision d;
      d.duplicate_of_version = existing->second.recorded_version;
      return d;
    }
    return DomainError(absl::StatusCode::kAlreadyExists,
                       reason::kInvoiceIdConflict,
                       absl::StrCat("invoice ", Quote(invoice.invoice_id()),
                                    " was already recorded with different "
                                    "content"));
  }
  if (invoice.kind() == v1::INVOICE_KIND_CREDIT_MEMO) {
    return DecideCreditMemo(state, invoice, now);
  }
  return DecideInvoice(state, invoice, now);
}

// --- Marketplace ---------------------------------------------------------------

absl::StatusOr<Decision> DecideMarketplace(
    const AccountState& state, const RecordMarketplaceTransaction& cmd,
    absl::Time now) {
  RETURN_IF_ERROR(
      ValidateId(cmd.transaction_id, "transaction_id", kMaxInvoiceId));
  RETURN_IF_ERROR(CheckLength("purchase_order_id", cmd.purchase_order_id,
                              kMaxMarketplacePurchaseOrderId, false));
  RETURN_IF_ERROR(CheckLength("bill_from", cmd.bill_from, kMaxEntityName, true));
  if (!IsCurrencyCode(cmd.currency_code)) {
    return InvalidField(
        "amount.currency_code",
        absl::StrCat(Quote(cmd.currency_code), " is not an ISO 4217 code"));
  }
  ASSIGN_OR_RETURN(YearMonth month, YearMonth::Parse(cmd.month, "month"));
  // A transaction may create a purchase order running 12 months from its
  // month: that last month must be a month too (found by the fuzzer:
  // 9999-03 decided a purchase order ending "10000-02" that Apply refused).
  if (!YearMonth::Parse(month.Plus(11).ToString(), "month").ok()) {
    return InvalidField("month",
                        absl::StrCat(Quote(cmd.month),
                                     " is too late: a purchase order created "
                                     "for it would end after 9999-12"));
  }
  if (cmd.amount_micros < 0) {
    return InvalidField("amount", "must not be negative");
  }
  RETURN_IF_ERROR(
      CheckLength("description", cmd.description, kMaxDescription, false));
  if (cmd.line_number < 0 || cmd.line_number > kMaxLineNumber) {
    return InvalidField("line_number",
                        absl::StrCat("must be from 1 to ", kMaxLineNumber));
  }
  v1::MarketplaceTransactionRecorded record;
  record.set_transaction_id(cmd.transaction_id);
  record.set_purchase_order_id(cmd.purchase_order_id);
  record.set_bill_from(cmd.bill_from);
  record.set_currency_code(cmd.currency_code);
  record.set_month(month.ToString());
  record.set_amount_micros(cmd.amount_micros);
  record.set_description(cmd.description);
  record.set_line_number(cmd.line_number);
  const std::string digest = record.SerializeAsString();
  auto existing = state.marketplace_transactions.find(cmd.transaction_id);
  if (existing != state.marketplace_transactions.end()) {
    if (existing->second.content_digest == digest) {
      Decision d;
      d.duplicate_of_version = existing->second.recorded_version;
      return d;
    }
    return DomainError(
        absl::StatusCode::kAlreadyExists, reason::kTransactionIdConflict,
        absl::StrCat("marketplace transaction ", Quote(cmd.transaction_id),
                     " was already recorded with different "
                     "content"));
  }
  record.set_content_digest(digest);
  record.set_line_number(0);
  Events events(state, now);
  auto not_associated = [&](absl::string_view code, std::string why) {
    record.set_outcome(v1::MARKETPLACE_OUTCOME_NOT_ASSOCIATED);
    record.set_reason_code(std::string(code));
    record.set_reason(std::move(why));
    *events.Add().mutable_marketplace_transaction_recorded() = record;
    return events.Take();
  };
  if (cmd.purchase_order_id.empty()) {
    return not_associated("NO_PURCHASE_ORDER_ID",
                          "the buyer gave no purchase order number");
  }
  v1::LineItemDefinition line;
  line.set_type(v1::LINE_ITEM_TYPE_AWS_MARKETPLACE_TRANSACTION);
  line.set_description(cmd.description);
  line.set_balance_tracking(false);
  line.set_amount_micros(cmd.amount_micros);
  line.set_quantity(1);
  auto po_it = state.purchase_orders.find(cmd.purchase_order_id);
  if (po_it != state.purchase_orders.end()) {
    const PurchaseOrderState& po = po_it->second;
    if (static_cast<int>(po.lines.size()) >= kMaxLineItems) {
      return not_associated(
          reason::kLineItemLimit,
          absl::StrCat("purchase order ", Quote(po.id), " already has ",
                       kMaxLineItems, " line items"));
    }
    if (month > po.expiration) {
      return not_associated(reason::kLineItemOutsideWindow,
                            absl::StrCat("purchase order ", Quote(po.id),
                                         " ends ", po.expiration.ToString(),
                                         ", before ", month.ToString()));
    }
    if (po.header.currency_code() != cmd.currency_code) {
      return not_associated(
          "CURRENCY_MISMATCH",
          absl::StrCat("purchase order ", Quote(po.id), " is in ",
                       po.header.currency_code(), ", the transaction in ",
                       cmd.currency_code));
    }
    int32_t number = cmd.line_number;
    if (number == 0 || po.lines.count(number) > 0) {
      number = po.lines.empty() ? 1 : po.lines.rbegin()->first + 1;
    }
    if (number > kMaxLineNumber) {
      return not_associated(reason::kLineItemLimit, "no free line number");
    }
    line.set_line_number(number);
    line.set_start_month(std::max(month, po.effective).ToString());
    line.set_end_month(po.expiration.ToString());
    std::map<int32_t, LineItemState> lines = po.lines;
    lines[number].total_value = cmd.amount_micros;
    if (!CheckPurchaseOrderSums(lines).ok()) {
      return not_associated(reason::kMoneyOverflow,
                            "the purchase order's value would overflow");
    }
    v1::LineItemAdded* added = events.Add().mutable_line_item_added();
    added->set_purchase_order_id(po.id);
    *added->mutable_line_item() = line;
    added->set_marketplace_transaction_id(cmd.transaction_id);
    record.set_outcome(v1::MARKETPLACE_OUTCOME_LINE_ADDED);
    record.set_line_number(number);
    *events.Add().mutable_marketplace_transaction_recorded() = record;
    return events.Take();
  }
  if (absl::Status s =
          ValidatePurchaseOrderId(cmd.purchase_order_id, "purchase_order_id");
      !s.ok()) {
    return not_associated("INVALID_PURCHASE_ORDER_ID",
                          std::string(s.message()));
  }
  if (state.ActiveCount() >= kMaxActivePurchaseOrders) {
    return not_associated(
        reason::kActivePurchaseOrderLimit,
        absl::StrCat("the account already has ", kMaxActivePurchaseOrders,
                     " Active purchase orders"));
  }
  const YearMonth expiration = month.Plus(11);
  const int32_t number = cmd.line_number == 0 ? 1 : cmd.line_number;
  line.set_line_number(number);
  line.set_start_month(month.ToString());
  line.set_end_month(expiration.ToString());
  v1::PurchaseOrderCreated* created =
      events.Add().mutable_purchase_order_created();
  created->set_purchase_order_id(cmd.purchase_order_id);
  v1::PurchaseOrderHeader* h = created->mutable_header();
  h->add_bill_from(cmd.bill_from);
  h->set_currency_code(cmd.currency_code);
  h->set_effective_month(month.ToString());
  h->set_expiration_month(expiration.ToString());
  h->add_balance_thresholds_percent(kDefaultBalanceThresholdPercent);
  *created->add_line_items() = line;
  for (v1::ScheduledReminder& r : PlanReminders(expiration, now)) {
    *created->add_reminders() = std::move(r);
  }
  created->set_origin(v1::PURCHASE_ORDER_ORIGIN_MARKETPLACE);
  record.set_outcome(v1::MARKETPLACE_OUTCOME_PURCHASE_ORDER_CREATED);
  record.set_line_number(number);
  *events.Add().mutable_marketplace_transaction_recorded() = record;
  return events.Take();
}

// --- Scheduler -----------------------------------------------------------------

absl::StatusOr<Decision> DecideTick(const AccountState& state, absl::Time now) {
  Events events(state, now);
  for (const auto& [id, po] : state.purchase_orders) {
    const bool live = po.status == v1::PURCHASE_ORDER_STATUS_ACTIVE ||
                      po.status == v1::PURCHASE_ORDER_STATUS_SUSPENDED;
    if (!live) continue;
    if (now >= po.ExpiryTime()) {
      // Reminders still pending are superseded by the expiry notice.
      v1::PurchaseOrderExpired* e = events.Add().mutable_purchase_order_expired();
      e->set_purchase_order_id(id);
      e->set_from_status(po.status);
      e->set_to_status(po.status == v1::PURCHASE_ORDER_STATUS_ACTIVE
                           ? v1::PURCHASE_ORDER_STATUS_EXPIRED
                           : v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED);
      v1::NotificationRaised* n =
          AddNotification(events, state, po, v1::NOTIFICATION_KIND_EXPIRED);
      *n->mutable_due_time() = ToProtoTime(po.ExpiryTime());
      continue;
    }
    for (const Reminder& r : po.reminders) {
      if (r.fired || r.due > now) continue;
      v1::NotificationRaised* n = AddNotification(
          events, state, po, v1::NOTIFICATION_KIND_EXPIRATION_REMINDER);
      *n->mutable_due_time() = ToProtoTime(r.due);
      n->set_reminder_label(r.label);
    }
  }
  return events.Take();
}

absl::StatusOr<Decision> DecideErase(const AccountState& state,
                                     const ErasePersonalData& c,
                                     absl::Time now) {
  if (c.subject_ref.size() != kSubjectRefBytes) {
    return InvalidField("subject_ref",
                        absl::StrCat("is ", c.subject_ref.size(),
                                     " bytes; a reference is ",
                                     kSubjectRefBytes));
  }
  RETURN_IF_ERROR(CheckLength("request_reference", c.request_reference,
                              kMaxRequestReference, false));
  for (char ch : c.request_reference) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(ch))) {
      return InvalidField("request_reference",
                          "may hold no control characters");
    }
  }
  Events events(state, now);
  v1::PersonalDataErased* e = events.Add().mutable_personal_data_erased();
  e->set_subject_ref(c.subject_ref);
  e->set_request_reference(c.request_reference);
  return events.Take();
}

}  // namespace

std::optional<absl::Time> NextDue(const AccountState& state) {
  std::optional<absl::Time> next;
  auto consider = [&](absl::Time t) {
    if (!next.has_value() || t < *next) next = t;
  };
  for (const auto& [id, po] : state.purchase_orders) {
    if (po.status != v1::PURCHASE_ORDER_STATUS_ACTIVE &&
        po.status != v1::PURCHASE_ORDER_STATUS_SUSPENDED) {
      continue;
    }
    consider(po.ExpiryTime());
    for (const Reminder& r : po.reminders) {
      if (!r.fired) consider(r.due);
    }
  }
  return next;
}

std::vector<v1::ScheduledReminder> PlanReminders(YearMonth expiration,
                                                 absl::Time now) {
  const absl::CivilDay date = expiration.LastDay();
  struct Planned {
    absl::Time due;
    const char* label;
  };
  std::vector<Planned> planned;
  const absl::Time one_month_before = StartOf(AddMonthsClamped(date, -1));
  const absl::Time three_months_before = StartOf(AddMonthsClamped(date, -3));
  if (now >= one_month_before) {
    planned.push_back({StartOf(date - 7), "one week before"});
    planned.push_back({StartOf(date), "on the expiration date"});
  } else if (now >= three_months_before) {
    planned.push_back({one_month_before, "one month before"});
  } else {
    planned.push_back({StartOf(AddMonthsClamped(date, -2)), "two months before"});
  }
  std::vector<v1::ScheduledReminder> out;
  for (const Planned& p : planned) {
    if (p.due < now) continue;
    v1::ScheduledReminder& r = out.emplace_back();
    *r.mutable_due_time() = ToProtoTime(p.due);
    r.set_label(p.label);
  }
  return out;
}

absl::Status ValidateId(absl::string_view id, absl::string_view field,
                        size_t max_chars) {
  if (id.empty() || id.size() > max_chars) {
    return InvalidField(
        field, absl::StrCat("must be 1 to ", max_chars, " characters, not ",
                            CharCount(id)));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char u = static_cast<unsigned char>(id[i]);
    if (!absl::ascii_isalnum(u) &&
        std::string_view(kIdPunctuation).find(id[i]) ==
            std::string_view::npos) {
      return InvalidField(
          field, absl::StrCat("character ", QuoteFirstChar(id.substr(i)),
                              " at byte ", i,
                              " is not allowed (letters, digits, space and "
                              "_.:/=+-%@# are)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePurchaseOrderId(absl::string_view id,
                                     absl::string_view field) {
  return ValidateId(id, field, 100);
}

absl::Status MergeMasked(const google::protobuf::Message& from,
                         const std::vector<std::string>& mask,
                         absl::string_view identity,
                         google::protobuf::Message* to) {
  const google::protobuf::Descriptor* type = to->GetDescriptor();
  google::protobuf::FieldMask fields;
  if (mask.empty()) {  // Every field but the identity.
    for (int i = 0; i < type->field_count(); ++i) {
      if (type->field(i)->name() != identity) {
        fields.add_paths(type->field(i)->name());
      }
    }
  }
  for (size_t i = 0; i < mask.size(); ++i) {
    if (mask[i] == identity || type->FindFieldByName(mask[i]) == nullptr) {
      return InvalidField(
          absl::StrCat("update_mask.paths[", i, "]"),
          absl::StrCat(Quote(mask[i]), " is not an updatable ", "field"));
    }
    fields.add_paths(mask[i]);
  }
  // Named fields take the new values whole: lists and addresses are
  // replaced, not merged; a field the new values leave unset is cleared.
  google::protobuf::util::FieldMaskUtil::MergeOptions options;
  options.set_replace_message_fields(true);
  options.set_replace_repeated_fields(true);
  google::protobuf::util::FieldMaskUtil::MergeMessageTo(from, fields, options,
                                                        to);
  return absl::OkStatus();
}

absl::Status ValidateEmail(absl::string_view email, absl::string_view field) {
  const size_t at = email.find('@');
  bool ok = !email.empty() && email.size() <= 254 && at != 0 &&
            at != absl::string_view::npos && at <= 64 &&
            email.find('@', at + 1) == absl::string_view::npos;
  if (ok) {
    const absl::string_view domain = email.substr(at + 1);
    ok = domain.size() >= 3 && domain.find('.') != absl::string_view::npos &&
         domain.front() != '.' && domain.back() != '.' &&
         domain.find("..") == absl::string_view::npos;
    for (char c : domain) {
      ok = ok && (absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                  c == '.' || c == '-');
    }
    for (char c : email.substr(0, at)) {
      ok = ok && static_cast<unsigned char>(c) > ' ' &&
           static_cast<unsigned char>(c) < 127 &&
           std::string_view("()<>,;:\\\"[]").find(c) == std::string_view::npos;
    }
  }
  if (!ok) {
    return InvalidField(
        field, absl::StrCat(Quote(email), " is not an e-mail address"));
  }
  return absl::OkStatus();
}

std::vector<std::string> InvoicesReadBy(const Command& command) {
  const auto* record = std::get_if<RecordInvoice>(&command);
  if (record == nullptr) return {};
  std::vector<std::string> ids = {record->invoice.invoice_id()};
  if (!record->invoice.original_invoice_id().empty()) {
    ids.push_back(record->invoice.original_invoice_id());
  }
  return ids;
}

AccountState ScratchFor(const AccountState& state,
                        const std::vector<Command>& commands) {
  for (const Command& c : commands) {
    if (!std::holds_alternative<RecordInvoice>(c) &&
        !std::holds_alternative<RecordMarketplaceTransaction>(c)) {
      return state;
    }
  }
  // Field by field: every field but the two maps is copied whole (a field
  // added to AccountState must be added here).
  AccountState scratch;
  scratch.account_id = state.account_id;
  scratch.version = state.version;
  scratch.purchase_orders = state.purchase_orders;
  auto copy_invoice = [&](const std::string& id) {
    if (auto it = state.invoices.find(id); it != state.invoices.end()) {
      scratch.invoices.insert(*it);
    }
  };
  for (const Command& c : commands) {
    for (const std::string& id : InvoicesReadBy(c)) copy_invoice(id);
    if (const auto* tx = std::get_if<RecordMarketplaceTransaction>(&c)) {
      if (auto it = state.marketplace_transactions.find(tx->transaction_id);
          it != state.marketplace_transactions.end()) {
        scratch.marketplace_transactions.insert(*it);
      }
    }
  }
  return scratch;
}

absl::StatusOr<Decision> Decide(const AccountState& state,
                                const Command& command, absl::Time now) {
  struct Visitor {
    const AccountState& state;
    absl::Time now;
    absl::StatusOr<Decision> operator()(const CreatePurchaseOrder& c) {
      return DecideCreate(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const UpdatePurchaseOrder& c) {
      return DecideUpdate(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const ChangePurchaseOrderStatus& c) {
      return DecideStatus(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const DeletePurchaseOrder& c) {
      return DecideDelete(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const AddLineItem& c) {
      return DecideAddLine(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const UpdateLineItem& c) {
      return DecideUpdateLine(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const RemoveLineItem& c) {
      return DecideRemoveLine(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const RecordInvoice& c) {
      return DecideRecordInvoice(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const RecordMarketplaceTransaction& c) {
      return DecideMarketplace(state, c, now);
    }
    absl::StatusOr<Decision> operator()(const Tick&) {
      return DecideTick(state, now);
    }
    absl::StatusOr<Decision> operator()(const ErasePersonalData& c) {
      return DecideErase(state, c, now);
    }
  };
  return std::visit(Visitor{state, now}, command);
}

}  // namespace core
}  // namespace poledger
