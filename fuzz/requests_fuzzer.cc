// Fuzzes every command request's validation and conversion to a command,
// then Decide on an account with purchase orders, lines and invoices.
// Properties: nothing crashes; a refusal is never INTERNAL or DATA_LOSS and
// its message is short, valid UTF-8; every decision applies (Decide and
// Apply agree), and its events survive their wire form.
//
// Input: one byte picks the request type, the rest is that request's
// protobuf encoding. Byte 255 is a BatchRecordInvoicesRequest: its items,
// decided in turn with each decision applied, decide the same on
// core::ScratchFor's copy as on the whole account.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "api/convert.h"
#include "core/account.h"
#include "core/decide.h"
#include "core/errors.h"
#include "fuzz/quiet_protobuf.h"
#include "poledger/v1/invoices.pb.h"
#include "poledger/v1/purchase_orders.pb.h"

namespace poledger {
namespace {

absl::Time Now() {
  return absl::FromCivil(absl::CivilDay(2026, 3, 15), absl::UTCTimeZone());
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
  }
}

void CheckRefusal(const absl::Status& s) {
  Check(s.code() != absl::StatusCode::kInternal &&
            s.code() != absl::StatusCode::kDataLoss,
        "a refusal is INTERNAL or DATA_LOSS");
  Check(core::SafeMessage(s.message(), 4096) == s.message(),
        "a refusal's message is not valid UTF-8 or is over 4 KiB");
}

// An account with two purchase orders (lines of several types) and an
// invoice on each, built through Decide and Apply.
const core::AccountState& Base() {
  static const core::AccountState* state = [] {
    auto* s = new core::AccountState;
    s->account_id = "123456789012";
    auto run = [&](const core::Command& c) {
      absl::StatusOr<core::Decision> d = core::Decide(*s, c, Now());
      Check(d.ok(), "the base account builds");
      for (const v1::AccountEvent& e : d->events) {
        Check(core::Apply(*s, e).ok(), "the base account applies");
      }
    };
    for (const char* id : {"PO-1", "PO-2"}) {
      v1::PurchaseOrderHeader h;
      h.add_bill_from("Amazon Web Services, Inc.");
      h.set_currency_code("USD");
      h.set_effective_month("2026-01");
      h.set_expiration_month("2026-12");
      v1::Contact* c = h.add_contacts();
      c->set_email("finance@example.com");
      std::vector<v1::LineItemDefinition> lines;
      for (int n = 1; n <= 3; ++n) {
        v1::LineItemDefinition l;
        l.set_line_number(n);
        l.set_type(static_cast<v1::LineItemType>(n));
        l.set_start_month("2026-01");
        l.set_end_month("2026-12");
        l.set_balance_tracking(true);
        l.set_amount_micros(int64_t{1000} * 1000000);
        l.set_quantity(1);
        lines.push_back(l);
      }
      run(core::CreatePurchaseOrder{id, h, lines});
      core::RecordInvoice inv;
      inv.invoice.set_invoice_id(std::string("INV-") + id);
      inv.invoice.set_kind(v1::INVOICE_KIND_INVOICE);
      inv.invoice.set_bill_from("Amazon Web Services, Inc.");
      inv.invoice.set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
      inv.invoice.set_billing_period("2026-02");
      inv.invoice.set_currency_code("USD");
      inv.invoice.set_amount_micros(int64_t{300} * 1000000);
      run(inv);
    }
    return s;
  }();
  return *state;
}

std::optional<uint64_t> Expected(bool has, uint64_t v) {
  return has ? std::optional<uint64_t>(v) : std::nullopt;
}

template <typename Request>
bool Parse(Request& r, const uint8_t* data, size_t size) {
  return r.ParseFromArray(data, static_cast<int>(size));
}

// The command a request becomes, as the services build it.
absl::StatusOr<core::Command> Build(uint8_t kind, const uint8_t* data,
                                    size_t size, bool& parsed) {
  parsed = true;
  switch (kind % 9) {
    case 0: {
      v1::CreatePurchaseOrderRequest r;
      if (!(parsed = Parse(r, data, size))) break;
      absl::StatusOr<core::CreatePurchaseOrder> c =
          convert::ToCreate(r.purchase_order(), "purchase_order");
      if (!c.ok()) return c.status();
      return core::Command(*std::move(c));
    }
    case 1: {
      v1::UpdatePurchaseOrderRequest r;
      if (!(parsed = Parse(r, data, size))) break;
      core::UpdatePurchaseOrder c;
      c.purchase_order_id = r.purchase_order().purchase_order_id();
      absl::StatusOr<v1::PurchaseOrderHeader> h =
          convert::ToHeader(r.purchase_order(), "purchase_order");
      if (!h.ok()) return h.status();
      c.header = *h;
      absl::StatusOr<std::vector<std::string>> mask =
          convert::HeaderMask(r.update_mask());
      if (!mask.ok()) return mask.status();
      c.update_mask = *mask;
      c.expected_version = Expected(r.has_expected_version(), r.expected_version());
      return core::Command(c);
    }
    case 2: {
      v1::UpdatePurchaseOrderStatusRequest r;
      if (!(parsed = Parse(r, data, size))) break;
      return core::Command(core::ChangePurchaseOrderStatus{
          r.purchase_order_id(), r.status(),
          Expected(r.has_expected_version(), r.expected_version())});
    }
    case 3: {
      v1::DeletePurchaseOrderRequest r;
      if (!(parsed = Parse(r, data, size))) break;
      return core::Command(core::DeletePurchaseOrder{
          r.purchase_order_id(),
          Expected(r.has_expected_version(), r.expected_version())});
    }
    case 4:
    case 5: {
      v1::UpdateLineItemRequest r;
      if (!(parsed = Parse(r, data, size))) break;
      absl::StatusOr<v1::LineItemDefinition> line =
          convert::ToLineDefinition(r.line_item(), "USD", "line_item");
      if (!line.ok()) return line.status();
      if (kind % 9 == 4) {
        return core::Command(core::AddLineItem{
            r.purchase_order_id(), *line,
            Expected(r.has_expected_version(), r.expected_version())});
      }
      absl::StatusOr<std::vector<std::string>> mask =
          convert::LineMask(r.update_mask());
      if (!mask.ok()) return mask.status();
      return core::Command(core::UpdateLineItem{
          r.purchase_order_id(), *line, *mask,
          Expected(r.has_expected_version(), r.expected_version())});
    }
    case 6: {
      v1::RemoveLineItemRequest r;
      if (!(parsed = Parse(r, data, size))) break;
      return core::Command(core::RemoveLineItem{
          r.purchase_order_id(), r.line_number(),
          Expected(r.has_expected_version(), r.expected_version())});
    }
    case 7: {
      v1::RecordInvoiceRequest r;
      if (!(parsed = Parse(r, data, size))) break;
      absl::StatusOr<v1::InvoiceData> data_or =
          convert::ToInvoiceData(r.invoice(), "invoice");
      if (!data_or.ok()) return data_or.status();
      core::RecordInvoice c;
      c.invoice = *data_or;
      return core::Command(c);
    }
    default: {
      v1::RecordMarketplaceTransactionRequest r;
      if (!(parsed = Parse(r, data, size))) break;
      const v1::MarketplaceTransaction& t = r.transaction();
      core::RecordMarketplaceTransaction c;
      c.transaction_id = t.transaction_id();
      c.purchase_order_id = t.purchase_order_id();
      c.bill_from = t.bill_from();
      c.currency_code = t.amount().currency_code();
      absl::StatusOr<int64_t> micros = convert::MicrosOf(
          t.amount(), t.amount().currency_code(), "transaction.amount");
      if (!micros.ok()) return micros.status();
      c.amount_micros = *micros;
      c.month = t.month();
      c.description = t.description();
      c.line_number = t.line_number();
      return core::Command(c);
    }
  }
  return absl::InvalidArgumentError("unparsed");
}

}  // namespace
}  // namespace poledger

namespace poledger {
namespace {

// What a batch's items decide, in turn, each decision applied: comparable.
std::vector<std::string> DecideInTurn(core::AccountState state,
                                      const std::vector<core::Command>& run) {
  std::vector<std::string> out;
  for (const core::Command& c : run) {
    absl::StatusOr<core::Decision> d = core::Decide(state, c, Now());
    if (!d.ok()) {
      CheckRefusal(d.status());
      // Not ToString: it lists a status's payloads in no fixed order.
      out.push_back(std::to_string(static_cast<int>(d.status().code())) + " " +
                    std::string(d.status().message()) + " " +
                    core::FieldOf(d.status()) + " " +
                    core::ReasonOf(d.status()));
      continue;
    }
    std::string text = std::to_string(d->duplicate_of_version);
    for (const v1::AccountEvent& e : d->events) {
      text += e.SerializeAsString();
      Check(core::Apply(state, e).ok(), "Decide and Apply agree in a batch");
    }
    out.push_back(std::move(text));
  }
  return out;
}

int FuzzBatch(const uint8_t* data, size_t size) {
  v1::BatchRecordInvoicesRequest batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size)) ||
      batch.requests_size() > 64) {
    return 0;
  }
  std::vector<core::Command> run;
  for (const v1::RecordInvoiceRequest& item : batch.requests()) {
    absl::StatusOr<v1::InvoiceData> invoice =
        convert::ToInvoiceData(item.invoice(), "invoice");
    if (!invoice.ok()) {
      CheckRefusal(invoice.status());
      continue;
    }
    run.push_back(core::RecordInvoice{*std::move(invoice)});
  }
  Check(DecideInTurn(core::ScratchFor(Base(), run), run) ==
            DecideInTurn(Base(), run),
        "a batch decides on the scratch as on the whole account");
  return 0;
}

}  // namespace
}  // namespace poledger

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace poledger;  // NOLINT
  if (size < 1) return 0;
  if (data[0] == 255) return FuzzBatch(data + 1, size - 1);
  bool parsed = false;
  absl::StatusOr<core::Command> command = Build(data[0], data + 1, size - 1, parsed);
  if (!parsed) return 0;
  if (!command.ok()) {
    CheckRefusal(command.status());
    return 0;
  }
  core::AccountState state = Base();
  absl::StatusOr<core::Decision> decision = core::Decide(state, *command, Now());
  if (!decision.ok()) {
    CheckRefusal(decision.status());
    return 0;
  }
  for (const v1::AccountEvent& e : decision->events) {
    v1::AccountEvent wire;
    Check(wire.ParseFromString(e.SerializeAsString()), "an event round-trips");
    Check(core::Apply(state, wire).ok(), "Decide and Apply agree");
  }
  for (const auto& [id, po] : state.purchase_orders) {
    for (const auto& [n, line] : po.lines) {
      Check(line.balance() <= line.total_value, "a balance above its total");
    }
  }
  return 0;
}
