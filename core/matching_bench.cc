// Matching throughput on a full account: 100 Active purchase orders x 100
// line items, invoices of mixed categories, seller entities and periods.
//   build/core/matching_bench
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "benchmark/benchmark.h"
#include "core/account.h"
#include "core/commands.h"
#include "core/decide.h"
#include "core/matching.h"

namespace poledger {
namespace core {
namespace {

const char* const kEntities[] = {"Amazon Web Services, Inc.",
                                 "Amazon Web Services EMEA SARL",
                                 "Amazon Web Services Japan G.K."};

AccountState FullAccount() {
  AccountState state;
  state.account_id = "bench";
  const absl::Time now = absl::FromCivil(absl::CivilDay(2026, 1, 1),
                                         absl::UTCTimeZone());
  for (int p = 0; p < kMaxActivePurchaseOrders; ++p) {
    CreatePurchaseOrder cmd;
    cmd.purchase_order_id = absl::StrCat("po-", p);
    v1::PurchaseOrderHeader& h = cmd.header;
    h.add_bill_from(kEntities[p % 3]);
    if (p % 4 == 0) h.add_bill_from(kEntities[(p + 1) % 3]);
    h.set_currency_code(p % 10 == 0 ? "EUR" : "USD");
    h.set_effective_month("2026-01");
    h.set_expiration_month("2026-12");
    for (int l = 1; l <= kMaxLineItems; ++l) {
      v1::LineItemDefinition line;
      line.set_line_number(l);
      line.set_type(static_cast<v1::LineItemType>(1 + (l + p) % 6));
      const int start = 1 + (l * 7 + p) % 12;
      const int end = std::min(12, start + (l % 4));
      line.set_start_month(absl::StrFormat("2026-%02d", start));
      line.set_end_month(absl::StrFormat("2026-%02d", end));
      line.set_balance_tracking(l % 3 != 0);
      line.set_amount_micros(int64_t{1000 + (l * p) % 5000} * 1000000);
      line.set_quantity(1);
      cmd.line_items.push_back(line);
    }
    auto d = Decide(state, cmd, now);
    if (!d.ok()) std::abort();
    for (const auto& e : d->events) {
      if (!Apply(state, e).ok()) std::abort();
    }
  }
  return state;
}

std::vector<v1::InvoiceData> MixedInvoices(int n) {
  std::mt19937 rng(42);
  std::vector<v1::InvoiceData> out;
  for (int i = 0; i < n; ++i) {
    v1::InvoiceData in;
    in.set_invoice_id(absl::StrCat("inv-", i));
    in.set_kind(v1::INVOICE_KIND_INVOICE);
    in.set_bill_from(kEntities[rng() % 3]);
    in.set_category(static_cast<v1::InvoiceCategory>(1 + rng() % 4));
    in.set_billing_period(absl::StrFormat("2026-%02d", 1 + rng() % 12));
    in.set_currency_code(rng() % 10 == 0 ? "EUR" : "USD");
    in.set_amount_micros(int64_t{1 + static_cast<int>(rng() % 3000)} * 1000000);
    if (in.category() == v1::INVOICE_CATEGORY_MARKETPLACE && rng() % 2 == 0) {
      in.set_purchase_order_id(absl::StrCat("po-", rng() % 100));
    }
    out.push_back(in);
  }
  return out;
}

void BM_Match(benchmark::State& bench) {
  const AccountState state = FullAccount();
  const std::vector<v1::InvoiceData> invoices = MixedInvoices(4096);
  std::vector<MatchInput> inputs;
  for (const v1::InvoiceData& in : invoices) {
    MatchInput m;
    m.bill_from = in.bill_from();
    m.currency_code = in.currency_code();
    m.category = in.category();
    m.billing_period = *YearMonth::Parse(in.billing_period(), "");
    m.amount_micros = in.amount_micros();
    m.purchase_order_id = in.purchase_order_id();
    inputs.push_back(m);
  }
  size_t i = 0;
  int64_t matched = 0;
  for (auto _ : bench) {
    const MatchResult r = Match(state, inputs[i++ & 4095]);
    matched += r.matched();
    benchmark::DoNotOptimize(r);
  }
  bench.SetItemsProcessed(bench.iterations());
  bench.counters["matched_ratio"] =
      static_cast<double>(matched) / static_cast<double>(bench.iterations());
}
BENCHMARK(BM_Match);

// The whole decision for one invoice: validation, matching, the compact
// explanation the event keeps (a walk over the 10,000 lines that counts and
// ranks them), balance alerts.
void BM_DecideInvoice(benchmark::State& bench) {
  const AccountState state = FullAccount();
  const std::vector<v1::InvoiceData> invoices = MixedInvoices(1024);
  const absl::Time now = absl::FromCivil(absl::CivilDay(2026, 6, 1),
                                         absl::UTCTimeZone());
  size_t i = 0;
  for (auto _ : bench) {
    auto d = Decide(state, RecordInvoice{invoices[i++ & 1023]}, now);
    benchmark::DoNotOptimize(d);
  }
  bench.SetItemsProcessed(bench.iterations());
}
BENCHMARK(BM_DecideInvoice);

// The full explanation GetInvoice's FULL view rebuilds: every purchase
// order with each line considered.
void BM_ExplainFull(benchmark::State& bench) {
  const AccountState state = FullAccount();
  const std::vector<v1::InvoiceData> invoices = MixedInvoices(1024);
  size_t i = 0;
  for (auto _ : bench) {
    auto e = ExplainRecorded(state, invoices[i++ & 1023]);
    benchmark::DoNotOptimize(e);
  }
  bench.SetItemsProcessed(bench.iterations());
}
BENCHMARK(BM_ExplainFull);

}  // namespace
}  // namespace core
}  // namespace poledger

BENCHMARK_MAIN();
