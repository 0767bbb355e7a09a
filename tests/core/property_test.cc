// Property test: random command sequences (seeded, reproducible). The state
// built while deciding must equal the state rebuilt from the emitted events
// alone (after a trip through their wire form), a snapshot must round-trip,
// and every line's balance must equal its total value minus what was
// invoiced to it net of credit memos.
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/account.h"
#include "core/decide.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "tests/core/core_test_util.h"

namespace poledger {
namespace core {
namespace {

using namespace ::poledger::core::testing;  // NOLINT

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Int(1, 100) <= percent; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) { return v[Int(0, v.size() - 1)]; }

  std::string PoId() { return absl::StrCat("po-", Int(1, 8)); }

  v1::LineItemType Type() {
    return static_cast<v1::LineItemType>(Int(1, 6));
  }

  v1::LineItemDefinition LineDef(int32_t number) {
    v1::LineItemDefinition l;
    l.set_line_number(number);
    l.set_type(Type());
    const int start = Int(1, 9);
    l.set_start_month(absl::StrCat("2026-0", start));
    l.set_end_month(absl::StrCat("2026-0", Int(start, 9)));
    l.set_balance_tracking(Chance(80));
    l.set_amount_micros(Units(Int(1, 3000)));
    l.set_quantity(Int(1, 3));
    if (Chance(30)) l.set_tax_rate_ppm(Int(0, 250000));
    if (Chance(10)) l.set_tax_amount_micros(Units(Int(0, 50)));
    if (Chance(3)) l.set_start_month("2026-13");  // Malformed now and then.
    return l;
  }

  v1::PurchaseOrderHeader HeaderDef() {
    v1::PurchaseOrderHeader h = Header("2026-01", Chance(70) ? "2026-09" : "2026-04",
                                       Chance(80) ? kAws : kEmea,
                                       Chance(85) ? "USD" : "EUR");
    if (Chance(30)) h.add_balance_thresholds_percent(Int(10, 95));
    if (Chance(20)) h.clear_contacts();
    return h;
  }

  Command Next(const AccountState& state,
               const std::vector<std::string>& invoice_ids) {
    switch (Int(0, 11)) {
      case 0:
      case 1: {
        std::vector<v1::LineItemDefinition> lines;
        const int n = Int(0, 4);
        for (int i = 0; i < n; ++i) lines.push_back(LineDef(Int(1, 6)));
        return CreatePurchaseOrder{PoId(), HeaderDef(), lines};
      }
      case 2: {
        v1::PurchaseOrderHeader h = HeaderDef();
        h.set_expiration_month(absl::StrCat("2026-", Chance(50) ? "09" : "12"));
        std::vector<std::string> mask = {
            Pick<std::string>({"description", "expiration_month", "contacts",
                               "balance_thresholds_percent", "bill_from"})};
        return UpdatePurchaseOrder{PoId(), h, mask};
      }
      case 3:
        return ChangePurchaseOrderStatus{
            PoId(), static_cast<v1::PurchaseOrderStatus>(Int(1, 4))};
      case 4:
        return Chance(30) ? Command(DeletePurchaseOrder{PoId()})
                          : Command(AddLineItem{PoId(), LineDef(Int(1, 8))});
      case 5: {
        v1::LineItemDefinition l = LineDef(Int(1, 6));
        return UpdateLineItem{PoId(),
                              l,
                              {Pick<std::string>({"amount_micros", "quantity",
                                                  "end_month", "type"})}};
      }
      case 6:
        return RemoveLineItem{PoId(), Int(1, 6)};
      case 7:
      case 8:
      case 9: {
        RecordInvoice inv = Invoice(absl::StrCat("inv-", Int(1, 400)), Int(1, 2500),
                                    static_cast<v1::InvoiceCategory>(Int(1, 4)),
                                    absl::StrCat("2026-0", Int(1, 9)),
                                    Chance(85) ? kAws : kEmea,
                                    Chance(90) ? "USD" : "EUR");
        if (Chance(30)) inv.invoice.set_purchase_order_id(PoId());
        return inv;
      }
      case 10: {
        if (invoice_ids.empty()) return Tick{};
        return CreditMemo(absl::StrCat("cm-", Int(1, 400)), Pick(invoice_ids),
                          Int(1, 1500));
      }
      default: {
        if (Chance(50)) return Tick{};
        RecordMarketplaceTransaction t;
        t.transaction_id = absl::StrCat("tx-", Int(1, 100));
        t.purchase_order_id = Chance(80) ? PoId() : "";
        t.bill_from = kAws;
        t.currency_code = "USD";
        t.month = absl::StrCat("2026-0", Int(1, 9));
        t.amount_micros = Units(Int(0, 500));
        return t;
      }
    }
    (void)state;
  }

 private:
  std::mt19937 rng_;
};

// Net invoiced per (PO incarnation, line), computed from events only.
class BalanceModel {
 public:
  void Observe(const v1::AccountEvent& e, uint64_t version) {
    if (e.has_purchase_order_created()) {
      created_[e.purchase_order_created().purchase_order_id()] = version;
    } else if (e.has_line_item_removed()) {
      const auto& r = e.line_item_removed();
      net_.erase({r.purchase_order_id(), created_[r.purchase_order_id()],
                  r.line_number()});
    } else if (e.has_purchase_order_deleted()) {
      created_.erase(e.purchase_order_deleted().purchase_order_id());
    } else if (e.has_invoice_recorded() &&
               !e.invoice_recorded().purchase_order_id().empty()) {
      const auto& r = e.invoice_recorded();
      net_[{r.purchase_order_id(), created_[r.purchase_order_id()],
            r.line_number()}] += r.invoice().amount_micros();
    } else if (e.has_credit_memo_recorded() &&
               !e.credit_memo_recorded().purchase_order_id().empty()) {
      const auto& r = e.credit_memo_recorded();
      net_[{r.purchase_order_id(), created_[r.purchase_order_id()],
            r.line_number()}] -= r.credit_memo().amount_micros();
    }
  }

  int64_t Net(const PurchaseOrderState& po, int32_t line) const {
    auto it = net_.find({po.id, po.created_version, line});
    return it == net_.end() ? 0 : it->second;
  }

 private:
  std::map<std::string, uint64_t> created_;
  std::map<std::tuple<std::string, uint64_t, int32_t>, int64_t> net_;
};

std::string Bytes(const AccountState& state) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  ToSnapshot(state).SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

TEST(PropertyTest, ReplayRebuildsTheStateAndBalancesAddUp) {
  constexpr int kSeeds = 12;
  constexpr int kCommandsPerSeed = 600;
  int accepted = 0, refused = 0, invoices_matched = 0;
  for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    Generator gen(seed);
    AccountState direct;
    direct.account_id = "acct";
    std::vector<std::string> wire;  // Serialized events, as stored.
    std::vector<std::string> invoice_ids;
    BalanceModel model;
    // Snapshot parts as the ledger saves them: now and then the account
    // without its invoices, and the invoices changed since the last save.
    std::string saved_account;
    std::map<std::string, std::string> saved_invoices;
    std::set<std::string> changed;
    auto save_parts = [&] {
      saved_account =
          ToSnapshot(direct, SnapshotInvoices::kExclude).SerializeAsString();
      for (const std::string& id : changed) {
        saved_invoices[id] =
            ToInvoiceSnapshot(id, direct.invoices.at(id)).SerializeAsString();
      }
      changed.clear();
    };
    absl::Time now = At(2026, 1, 1);
    for (int i = 0; i < kCommandsPerSeed; ++i) {
      now += absl::Hours(gen.Int(1, 30));
      const Command command = gen.Next(direct, invoice_ids);
      absl::StatusOr<Decision> decision = Decide(direct, command, now);
      if (!decision.ok()) {
        ++refused;
        ASSERT_NE(decision.status().code(), absl::StatusCode::kInternal)
            << decision.status();
        continue;
      }
      ++accepted;
      for (const v1::AccountEvent& e : decision->events) {
        ASSERT_TRUE(Apply(direct, e).ok());
        for (std::string& id : InvoicesChangedBy(e)) changed.insert(id);
        model.Observe(e, direct.version);
        wire.push_back(e.SerializeAsString());
        if (e.has_invoice_recorded()) {
          invoice_ids.push_back(e.invoice_recorded().invoice().invoice_id());
          invoices_matched += !e.invoice_recorded().purchase_order_id().empty();
        }
      }
      if (accepted % 25 == 0) save_parts();
      for (const auto& [id, po] : direct.purchase_orders) {
        for (const auto& [n, line] : po.lines) {
          ASSERT_EQ(line.total_value, *LineTotal(line.definition));
          ASSERT_EQ(line.balance(), line.total_value - model.Net(po, n))
              << id << " line " << n << " after command " << i;
          // Credit memos restore only what was charged to this very line:
          // a balance never exceeds the line's total value.
          ASSERT_LE(line.balance(), line.total_value)
              << id << " line " << n << " after command " << i;
        }
      }
    }
    AccountState rebuilt;
    rebuilt.account_id = "acct";
    for (const std::string& bytes : wire) {
      v1::AccountEvent e;
      ASSERT_TRUE(e.ParseFromString(bytes));
      ASSERT_TRUE(Apply(rebuilt, e).ok());
    }
    ASSERT_EQ(Bytes(rebuilt), Bytes(direct));
    absl::StatusOr<AccountState> restored = FromSnapshot(ToSnapshot(direct));
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_EQ(Bytes(*restored), Bytes(direct));
    // A snapshot lists the invoices by id, whatever order the state's hash
    // map holds them in (the restored state inserted them in that order,
    // the direct one in the log's).
    const v1::AccountSnapshot whole = ToSnapshot(direct);
    ASSERT_GT(whole.invoices_size(), 1);
    for (int k = 1; k < whole.invoices_size(); ++k) {
      ASSERT_LT(whole.invoices(k - 1).invoice_id(),
                whole.invoices(k).invoice_id());
    }
    // Rebuilt from parts saved incrementally: InvoicesChangedBy names every
    // invoice an event changes, or the parts fall behind the state.
    save_parts();
    v1::AccountSnapshot account_part;
    ASSERT_TRUE(account_part.ParseFromString(saved_account));
    absl::StatusOr<AccountState> from_parts = FromSnapshot(account_part);
    ASSERT_TRUE(from_parts.ok()) << from_parts.status();
    for (const auto& [id, bytes] : saved_invoices) {
      v1::InvoiceSnapshot invoice;
      ASSERT_TRUE(invoice.ParseFromString(bytes));
      ASSERT_TRUE(AddInvoiceSnapshot(*from_parts, invoice).ok());
    }
    ASSERT_EQ(saved_invoices.size(), direct.invoices.size());
    ASSERT_EQ(Bytes(*from_parts), Bytes(direct));
  }
  // The generator must exercise the rules, not only refusals.
  EXPECT_GT(accepted, kSeeds * kCommandsPerSeed / 3);
  EXPECT_GT(refused, 0);
  EXPECT_GT(invoices_matched, 100);
  std::printf("property test: %d commands accepted, %d refused, %d invoices "
              "matched\n",
              accepted, refused, invoices_matched);
}

}  // namespace
}  // namespace core
}  // namespace poledger
