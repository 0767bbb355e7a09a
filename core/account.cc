#include "core/account.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/errors.h"
#include "core/money.h"
#include "core/proto_time.h"

namespace poledger {
namespace core {
namespace {

absl::Status Inconsistent(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("event does not fit the account state: ", what));
}

absl::StatusOr<LineItemState> MakeLine(const v1::LineItemDefinition& def) {
  LineItemState line;
  line.definition = def;
  ASSIGN_OR_RETURN(line.start, YearMonth::Parse(def.start_month(), "start_month"));
  ASSIGN_OR_RETURN(line.end, YearMonth::Parse(def.end_month(), "end_month"));
  ASSIGN_OR_RETURN(line.total_value, LineTotal(def));
  return line;
}

absl::Status SetHeader(PurchaseOrderState& po,
                       const v1::PurchaseOrderHeader& header) {
  po.header = header;
  // Events written before thresholds existed (or with none) get the default.
  if (po.header.balance_thresholds_percent().empty()) {
    po.header.add_balance_thresholds_percent(kDefaultBalanceThresholdPercent);
  }
  ASSIGN_OR_RETURN(po.effective,
                   YearMonth::Parse(header.effective_month(), "effective_month"));
  ASSIGN_OR_RETURN(po.expiration, YearMonth::Parse(header.expiration_month(),
                                                   "expiration_month"));
  return absl::OkStatus();
}

void SetReminders(PurchaseOrderState& po,
                  const google::protobuf::RepeatedPtrField<v1::ScheduledReminder>&
                      reminders) {
  po.reminders.clear();
  for (const v1::ScheduledReminder& r : reminders) {
    po.reminders.push_back({FromProtoTime(r.due_time()), r.label(), false});
  }
}

// Re-arms every fired threshold the line's balance is back at or above.
// Adds `micros` to the line's net amount of `billing_period`.
absl::Status AddToMonth(LineItemState& line, absl::string_view billing_period,
                        int64_t micros) {
  absl::StatusOr<YearMonth> month =
      YearMonth::Parse(billing_period, "billing_period");
  if (!month.ok()) return Inconsistent(month.status().message());
  int64_t& total = line.invoiced_by_month[*month];
  if (__builtin_add_overflow(total, micros, &total)) {
    return Inconsistent("a line's monthly total out of range");
  }
  if (total == 0) line.invoiced_by_month.erase(*month);
  return absl::OkStatus();
}

void RearmThresholds(LineItemState& line) {
  const __int128 balance = line.balance();
  line.fired_thresholds.erase(
      std::remove_if(line.fired_thresholds.begin(), line.fired_thresholds.end(),
                     [&](int32_t pct) {
                       return balance * 100 >=
                              static_cast<__int128>(line.total_value) * pct;
                     }),
      line.fired_thresholds.end());
}

absl::StatusOr<PurchaseOrderState*> FindPo(AccountState& state,
                                           const std::string& id) {
  auto it = state.purchase_orders.find(id);
  if (it == state.purchase_orders.end()) {
    return Inconsistent(absl::StrCat("unknown purchase order ", Quote(id)));
  }
  return &it->second;
}

absl::StatusOr<LineItemState*> FindLine(PurchaseOrderState& po, int32_t n) {
  auto it = po.lines.find(n);
  if (it == po.lines.end()) {
    return Inconsistent(absl::StrCat("unknown line ", n, " of purchase order ",
                                     Quote(po.id)));
  }
  return &it->second;
}

void TouchByUser(PurchaseOrderState& po, uint64_t version, absl::Time time) {
  po.last_user_change = version;
  po.version = version;
  po.update_time = time;
}

InvoiceEntry EntryOf(const v1::InvoiceData& data, uint64_t version) {
  InvoiceEntry entry;
  entry.kind = data.kind();
  entry.content_digest = data.content_digest();
  entry.amount = data.amount_micros();
  entry.original_invoice_id = data.original_invoice_id();
  entry.recorded_version = version;
  return entry;
}

// Where an invoice matched, or where a credit memo's credit went.
void Associate(InvoiceEntry& entry, const PurchaseOrderState& po,
               int32_t line_number, const LineItemState& line) {
  entry.purchase_order_id = po.id;
  entry.purchase_order_created_version = po.created_version;
  entry.line_number = line_number;
  entry.line_created_version = line.created_version;
}

}  // namespace

absl::StatusOr<int64_t> LineTotal(const v1::LineItemDefinition& line) {
  const int64_t quantity = line.quantity() == 0 ? 1 : line.quantity();
  ASSIGN_OR_RETURN(int64_t base,
                   MulMicros(line.amount_micros(), quantity, "line total"));
  int64_t tax = 0;
  switch (line.tax_case()) {
    case v1::LineItemDefinition::kTaxAmountMicros:
      tax = line.tax_amount_micros();
      break;
    case v1::LineItemDefinition::kTaxRatePpm: {
      ASSIGN_OR_RETURN(tax, ApplyRatePpm(base, line.tax_rate_ppm(), "line tax"));
      break;
    }
    case v1::LineItemDefinition::TAX_NOT_SET:
      break;
  }
  return AddMicros(base, tax, "line total");
}

int64_t PurchaseOrderState::Value() const {
  int64_t sum = 0;
  for (const auto& [n, line] : lines) sum += line.total_value;
  return sum;
}

int64_t PurchaseOrderState::Balance() const {
  int64_t sum = 0;
  for (const auto& [n, line] : lines) sum += line.balance();
  return sum;
}

int AccountState::ActiveCount() const {
  int count = 0;
  for (const auto& [id, po] : purchase_orders) {
    if (po.status == v1::PURCHASE_ORDER_STATUS_ACTIVE) ++count;
  }
  return count;
}

absl::Status Apply(AccountState& state, const v1::AccountEvent& event) {
  const uint64_t version = state.version + 1;
  const absl::Time time = FromProtoTime(event.time());
  switch (event.event_case()) {
    case v1::AccountEvent::kPurchaseOrderCreated: {
      const v1::PurchaseOrderCreated& e = event.purchase_order_created();
      if (state.purchase_orders.count(e.purchase_order_id()) > 0) {
        return Inconsistent("purchase order created twice");
      }
      PurchaseOrderState po;
      po.id = e.purchase_order_id();
      RETURN_IF_ERROR(SetHeader(po, e.header()));
      po.origin = e.origin();
      for (const v1::LineItemDefinition& def : e.line_items()) {
        ASSIGN_OR_RETURN(LineItemState line, MakeLine(def));
        line.created_version = version;
        po.lines[def.line_number()] = std::move(line);
      }
      po.create_time = time;
      po.created_version = version;
      TouchByUser(po, version, time);
      SetReminders(po, e.reminders());
      state.purchase_orders[po.id] = std::move(po);
      state.match_index.index.reset();
      break;
    }
    case v1::AccountEvent::kPurchaseOrderUpdated: {
      const v1::PurchaseOrderUpdated& e = event.purchase_order_updated();
      ASSIGN_OR_RETURN(PurchaseOrderState * po,
                       FindPo(state, e.purchase_order_id()));
      RETURN_IF_ERROR(SetHeader(*po, e.header()));
      if (e.reminders_rescheduled()) SetReminders(*po, e.reminders());
      TouchByUser(*po, version, time);
      state.match_index.index.reset();
      break;
    }
    case v1::AccountEvent::kPurchaseOrderStatusChanged: {
      const v1::PurchaseOrderStatusChanged& e =
          event.purchase_order_status_changed();
      ASSIGN_OR_RETURN(PurchaseOrderState * po,
                       FindPo(state, e.purchase_order_id()));
      po->status = e.to_status();
      TouchByUser(*po, version, time);
      state.match_index.index.reset();
      break;
    }
    case v1::AccountEvent::kPurchaseOrderExpired: {
      const v1::PurchaseOrderExpired& e = event.purchase_order_expired();
      ASSIGN_OR_RETURN(PurchaseOrderState * po,
                       FindPo(state, e.purchase_order_id()));
      po->status = e.to_status();
      po->version = version;  // A system change: update_time stays.
      state.match_index.index.reset();
      break;
    }
    case v1::AccountEvent::kPurchaseOrderDeleted: {
      const std::string& id = event.purchase_order_deleted().purchase_order_id();
      if (state.purchase_orders.erase(id) == 0) {
        return Inconsistent(
            absl::StrCat("unknown purchase order ", Quote(id)));
      }
      state.match_index.index.reset();
      break;
    }
    case v1::AccountEvent::kLineItemAdded: {
      const v1::LineItemAdded& e = event.line_item_added();
      ASSIGN_OR_RETURN(PurchaseOrderState * po,
                       FindPo(state, e.purchase_order_id()));
      const int32_t n = e.line_item().line_number();
      if (po->lines.count(n) > 0) return Inconsistent("line added twice");
      ASSIGN_OR_RETURN(LineItemState line, MakeLine(e.line_item()));
      line.created_version = version;
      po->lines[n] = std::move(line);
      TouchByUser(*po, version, time);
      state.match_index.index.reset();
      break;
    }
    case v1::AccountEvent::kLineItemUpdated: {
      const v1::LineItemUpdated& e = event.line_item_updated();
      ASSIGN_OR_RETURN(PurchaseOrderState * po,
                       FindPo(state, e.purchase_order_id()));
      ASSIGN_OR_RETURN(LineItemState * line,
                       FindLine(*po, e.line_item().line_number()));
      ASSIGN_OR_RETURN(LineItemState updated, MakeLine(e.line_item()));
      updated.invoiced = line->invoiced;
      updated.invoiced_by_month = std::move(line->invoiced_by_month);
      updated.fired_thresholds = line->fired_thresholds;
      updated.created_version = line->created_version;
      RearmThresholds(updated);
      *line = std::move(updated);
      TouchByUser(*po, version, time);
      state.match_index.index.reset();
      break;
    }
    case v1::AccountEvent::kLineItemRemoved: {
      const v1::LineItemRemoved& e = event.line_item_removed();
      ASSIGN_OR_RETURN(PurchaseOrderState * po,
                       FindPo(state, e.purchase_order_id()));
      if (po->lines.erase(e.line_number()) == 0) {
        return Inconsistent("unknown line removed");
      }
      TouchByUser(*po, version, time);
      state.match_index.index.reset();
      break;
    }
    case v1::AccountEvent::kInvoiceRecorded: {
      const v1::InvoiceRecorded& e = event.invoice_recorded();
      InvoiceEntry entry = EntryOf(e.invoice(), version);
      if (!e.purchase_order_id().empty()) {
        ASSIGN_OR_RETURN(PurchaseOrderState * po,
                         FindPo(state, e.purchase_order_id()));
        ASSIGN_OR_RETURN(LineItemState * line, FindLine(*po, e.line_number()));
        line->invoiced += e.invoice().amount_micros();
        RETURN_IF_ERROR(AddToMonth(*line, e.invoice().billing_period(),
                                   e.invoice().amount_micros()));
        po->version = version;
        Associate(entry, *po, e.line_number(), *line);
      }
      if (!state.invoices.emplace(e.invoice().invoice_id(), std::move(entry))
               .second) {
        return Inconsistent("invoice recorded twice");
      }
      break;
    }
    case v1::AccountEvent::kCreditMemoRecorded: {
      const v1::CreditMemoRecorded& e = event.credit_memo_recorded();
      InvoiceEntry entry = EntryOf(e.credit_memo(), version);
      auto original = state.invoices.find(e.credit_memo().original_invoice_id());
      if (original == state.invoices.end()) {
        return Inconsistent("credit memo for an unknown invoice");
      }
      original->second.credited += e.credit_memo().amount_micros();
      if (!e.purchase_order_id().empty()) {
        ASSIGN_OR_RETURN(PurchaseOrderState * po,
                         FindPo(state, e.purchase_order_id()));
        ASSIGN_OR_RETURN(LineItemState * line, FindLine(*po, e.line_number()));
        line->invoiced -= e.credit_memo().amount_micros();
        RETURN_IF_ERROR(AddToMonth(*line, e.credit_memo().billing_period(),
                                   -e.credit_memo().amount_micros()));
        RearmThresholds(*line);
        po->version = version;
        Associate(entry, *po, e.line_number(), *line);
      }
      if (!state.invoices
               .emplace(e.credit_memo().invoice_id(), std::move(entry))
               .second) {
        return Inconsistent("credit memo recorded twice");
      }
      break;
    }
    case v1::AccountEvent::kMarketplaceTransactionRecorded: {
      const v1::MarketplaceTransactionRecorded& e =
          event.marketplace_transaction_recorded();
      if (!state.marketplace_transactions
               .emplace(e.transaction_id(),
                        MarketplaceEntry{e.content_digest(), version})
               .second) {
        return Inconsistent("marketplace transaction recorded twice");
      }
      break;
    }
    case v1::AccountEvent::kNotificationRaised: {
      const v1::NotificationRaised& e = event.notification_raised();
      if (e.kind() == v1::NOTIFICATION_KIND_BALANCE_THRESHOLD ||
          e.kind() == v1::NOTIFICATION_KIND_EXPIRATION_REMINDER) {
        ASSIGN_OR_RETURN(PurchaseOrderState * po,
                         FindPo(state, e.purchase_order_id()));
        if (e.kind() == v1::NOTIFICATION_KIND_BALANCE_THRESHOLD) {
          ASSIGN_OR_RETURN(LineItemState * line, FindLine(*po, e.line_number()));
          auto& fired = line->fired_thresholds;
          fired.insert(std::upper_bound(fired.begin(), fired.end(),
                                        e.threshold_percent()),
                       e.threshold_percent());
        } else {
          const absl::Time due = FromProtoTime(e.due_time());
          for (Reminder& r : po->reminders) {
            if (r.due == due && r.label == e.reminder_label()) r.fired = true;
          }
        }
      }
      break;
    }
    case v1::AccountEvent::kPersonalDataErased: {
      // Only the contacts change: what remains is the reference and the
      // flag, so the purchase order still shows how many it had.
      const std::string& ref = event.personal_data_erased().subject_ref();
      for (auto& [id, po] : state.purchase_orders) {
        for (v1::Contact& c : *po.header.mutable_contacts()) {
          if (c.subject_ref() != ref) continue;
          c.Clear();
          c.set_subject_ref(ref);
          c.set_erased(true);
        }
      }
      break;
    }
    case v1::AccountEvent::EVENT_NOT_SET:
      return Inconsistent("empty event");
  }
  state.version = version;
  return absl::OkStatus();
}

v1::InvoiceSnapshot ToInvoiceSnapshot(const std::string& invoice_id,
                                      const InvoiceEntry& inv) {
  v1::InvoiceSnapshot i;
  i.set_invoice_id(invoice_id);
  i.set_kind(inv.kind);
  i.set_content_digest(inv.content_digest);
  i.set_amount_micros(inv.amount);
  i.set_original_invoice_id(inv.original_invoice_id);
  i.set_purchase_order_id(inv.purchase_order_id);
  i.set_purchase_order_created_version(inv.purchase_order_created_version);
  i.set_line_number(inv.line_number);
  i.set_line_created_version(inv.line_created_version);
  i.set_credited_micros(inv.credited);
  i.set_recorded_version(inv.recorded_version);
  return i;
}

InvoiceEntry InvoiceEntryOf(const v1::InvoiceSnapshot& i) {
  InvoiceEntry entry;
  entry.kind = i.kind();
  entry.content_digest = i.content_digest();
  entry.amount = i.amount_micros();
  entry.original_invoice_id = i.original_invoice_id();
  entry.purchase_order_id = i.purchase_order_id();
  entry.purchase_order_created_version = i.purchase_order_created_version();
  entry.line_number = i.line_number();
  entry.line_created_version = i.line_created_version();
  entry.credited = i.credited_micros();
  entry.recorded_version = i.recorded_version();
  return entry;
}

absl::Status AddInvoiceSnapshot(AccountState& state,
                                const v1::InvoiceSnapshot& i) {
  if (!state.invoices.emplace(i.invoice_id(), InvoiceEntryOf(i)).second) {
    return absl::DataLossError(
        absl::StrCat("snapshot of account ", Quote(state.account_id),
                     ": invoice ", Quote(i.invoice_id()), " appears twice"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<v1::InvoiceSnapshot>> RecordedInvoice(
    const AccountState& state, const v1::AccountEvent& event,
    uint64_t version) {
  const v1::InvoiceData* data;
  const std::string* po_id;
  int32_t line_number;
  switch (event.event_case()) {
    case v1::AccountEvent::kInvoiceRecorded:
      data = &event.invoice_recorded().invoice();
      po_id = &event.invoice_recorded().purchase_order_id();
      line_number = event.invoice_recorded().line_number();
      break;
    case v1::AccountEvent::kCreditMemoRecorded:
      data = &event.credit_memo_recorded().credit_memo();
      po_id = &event.credit_memo_recorded().purchase_order_id();
      line_number = event.credit_memo_recorded().line_number();
      break;
    default:
      return std::nullopt;
  }
  InvoiceEntry entry = EntryOf(*data, version);
  if (!po_id->empty()) {
    auto po = state.purchase_orders.find(*po_id);
    if (po == state.purchase_orders.end()) {
      return Inconsistent(absl::StrCat("unknown purchase order ", Quote(*po_id)));
    }
    auto line = po->second.lines.find(line_number);
    if (line == po->second.lines.end()) {
      return Inconsistent(absl::StrCat("unknown line ", line_number,
                                       " of purchase order ", Quote(*po_id)));
    }
    Associate(entry, po->second, line_number, line->second);
  }
  return ToInvoiceSnapshot(data->invoice_id(), entry);
}

bool RecordsAnInvoice(const v1::AccountEvent& event) {
  return event.has_invoice_recorded() || event.has_credit_memo_recorded();
}

std::vector<std::string> InvoicesChangedBy(const v1::AccountEvent& event) {
  switch (event.event_case()) {
    case v1::AccountEvent::kInvoiceRecorded:
      return {event.invoice_recorded().invoice().invoice_id()};
    case v1::AccountEvent::kCreditMemoRecorded: {
      const v1::InvoiceData& memo = event.credit_memo_recorded().credit_memo();
      return {memo.invoice_id(), memo.original_invoice_id()};
    }
    default:
      return {};
  }
}

v1::AccountSnapshot ToSnapshot(const AccountState& state,
                               SnapshotInvoices invoices) {
  v1::AccountSnapshot out;
  out.set_account_id(state.account_id);
  out.set_version(state.version);
  for (const auto& [id, po] : state.purchase_orders) {
    v1::PurchaseOrderSnapshot* p = out.add_purchase_orders();
    p->set_purchase_order_id(id);
    *p->mutable_header() = po.header;
    p->set_status(po.status);
    p->set_origin(po.origin);
    for (const auto& [n, line] : po.lines) {
      v1::LineItemSnapshot* l = p->add_line_items();
      *l->mutable_definition() = line.definition;
      l->set_total_value_micros(line.total_value);
      l->set_invoiced_micros(line.invoiced);
      for (const auto& [month, micros] : line.invoiced_by_month) {
        v1::MonthAmount* m = l->add_invoiced_by_month();
        m->set_month(month.ToString());
        m->set_micros(micros);
      }
      l->set_created_version(line.created_version);
      for (int32_t t : line.fired_thresholds) l->add_fired_thresholds(t);
    }
    *p->mutable_create_time() = ToProtoTime(po.create_time);
    *p->mutable_update_time() = ToProtoTime(po.update_time);
    p->set_created_version(po.created_version);
    p->set_last_user_change(po.last_user_change);
    p->set_version(po.version);
    for (const Reminder& r : po.reminders) {
      v1::ReminderSnapshot* rs = p->add_reminders();
      *rs->mutable_due_time() = ToProtoTime(r.due);
      rs->set_label(r.label);
      rs->set_fired(r.fired);
    }
  }
  if (invoices == SnapshotInvoices::kInclude) {
    std::vector<const AccountState::InvoiceMap::value_type*> sorted;
    sorted.reserve(state.invoices.size());
    for (const auto& entry : state.invoices) sorted.push_back(&entry);
    std::sort(sorted.begin(), sorted.end(),
              [](const auto* a, const auto* b) { return a->first < b->first; });
    for (const auto* entry : sorted) {
      *out.add_invoices() = ToInvoiceSnapshot(entry->first, entry->second);
    }
  }
  for (const auto& [id, tx] : state.marketplace_transactions) {
    v1::MarketplaceTransactionSnapshot* t = out.add_marketplace_transactions();
    t->set_transaction_id(id);
    t->set_content_digest(tx.content_digest);
    t->set_recorded_version(tx.recorded_version);
  }
  return out;
}

absl::StatusOr<AccountState> FromSnapshot(const v1::AccountSnapshot& snapshot) {
  AccountState state;
  state.account_id = snapshot.account_id();
  state.version = snapshot.version();
  for (const v1::PurchaseOrderSnapshot& p : snapshot.purchase_orders()) {
    PurchaseOrderState po;
    po.id = p.purchase_order_id();
    RETURN_IF_ERROR(SetHeader(po, p.header()));
    po.status = p.status();
    po.origin = p.origin();
    for (const v1::LineItemSnapshot& l : p.line_items()) {
      ASSIGN_OR_RETURN(LineItemState line, MakeLine(l.definition()));
      if (line.total_value != l.total_value_micros()) {
        return absl::DataLossError(
            absl::StrCat("snapshot of purchase order ", Quote(po.id), " line ",
                         l.definition().line_number(),
                         ": total value does not match its definition"));
      }
      line.invoiced = l.invoiced_micros();
      for (const v1::MonthAmount& m : l.invoiced_by_month()) {
        absl::StatusOr<YearMonth> month =
            YearMonth::Parse(m.month(), "invoiced_by_month");
        if (!month.ok()) {
          return absl::DataLossError(absl::StrCat(
              "snapshot of purchase order ", Quote(po.id), " line ",
              l.definition().line_number(), ": ", month.status().message()));
        }
        line.invoiced_by_month[*month] = m.micros();
      }
      line.created_version = l.created_version();
      line.fired_thresholds.assign(l.fired_thresholds().begin(),
                                   l.fired_thresholds().end());
      po.lines[l.definition().line_number()] = std::move(line);
    }
    po.create_time = FromProtoTime(p.create_time());
    po.update_time = FromProtoTime(p.update_time());
    po.created_version = p.created_version();
    po.last_user_change = p.last_user_change();
    po.version = p.version();
    for (const v1::ReminderSnapshot& r : p.reminders()) {
      po.reminders.push_back({FromProtoTime(r.due_time()), r.label(), r.fired()});
    }
    state.purchase_orders[po.id] = std::move(po);
  }
  for (const v1::InvoiceSnapshot& i : snapshot.invoices()) {
    RETURN_IF_ERROR(AddInvoiceSnapshot(state, i));
  }
  for (const v1::MarketplaceTransactionSnapshot& t :
       snapshot.marketplace_transactions()) {
    state.marketplace_transactions[t.transaction_id()] =
        MarketplaceEntry{t.content_digest(), t.recorded_version()};
  }
  return state;
}

}  // namespace core
}  // namespace poledger
