// The server's write path without gRPC: API request -> command -> Ledger
// (decide, durable append to a RocksDB log on disk, apply) -> API response,
// with 256 commands in flight over many accounts, as the load generator
// drives the real server. Reports throughput and the process's CPU time per
// command (all threads), the figure that bounds the server's rate when the
// CPU is saturated.
//
//   build/server/ledger_bench --benchmark_min_time=2
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/convert.h"
#include "bench/load_requests.h"
#include "benchmark/benchmark.h"
#include "eventstore/memory_event_store.h"
#include "eventstore/rocksdb_event_store.h"
#include "ledger/clock.h"
#include "ledger/ledger.h"

namespace poledger {
namespace {

constexpr int kInFlight = 256;

double ProcessCpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// A ledger over a fresh RocksDB log in a temporary directory.
class Fixture {
 public:
  // `seal`: contacts sealed as the server seals them (README "Personal
  // data"); else kept as given.
  explicit Fixture(bool seal = true)
      : clock_(absl::FromCivil(absl::CivilSecond(2026, 6, 15),
                               absl::UTCTimeZone())) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "ledger_bench.XXXXXX")
            .string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    dir_ = pattern;
    RocksDbEventStoreOptions options;
    options.path = dir_;
    store_ = *RocksDbEventStore::Open(options);
    LedgerOptions ledger_options;
    if (seal) {
      personal_data_ = *PersonalData::Open(store_.get(),
                                           std::string(kDataKeyBytes, '\x5e'));
      ledger_options.personal_data = personal_data_.get();
    }
    ledger_ = *Ledger::Open(store_.get(), &clock_, ledger_options);
  }
  ~Fixture() {
    ledger_.reset();
    personal_data_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  Ledger* ledger() { return ledger_.get(); }

 private:
  ManualClock clock_;
  std::string dir_;
  std::unique_ptr<RocksDbEventStore> store_;
  std::unique_ptr<PersonalData> personal_data_;
  std::unique_ptr<Ledger> ledger_;
};

// Runs `issue(seq, done)` for `kInFlight` commands at a time until the
// benchmark stops; reports commands/s and CPU microseconds per command.
template <typename Issue>
void RunInFlight(benchmark::State& state, Issue issue) {
  int64_t seq = 0;
  const double cpu0 = ProcessCpuSeconds();
  for (auto _ : state) {
    absl::BlockingCounter pending(kInFlight);
    for (int i = 0; i < kInFlight; ++i) issue(seq++, &pending);
    pending.Wait();
  }
  const double cpu = ProcessCpuSeconds() - cpu0;
  state.SetItemsProcessed(seq);
  state.counters["cpu_us_per_cmd"] = cpu * 1e6 / static_cast<double>(seq);
}

// With state.range(0) contacts a purchase order (0: none), each an
// address of its account's, so that its account's first purchase order
// makes each subject's key and the later ones seal with it; sealed if
// state.range(1), else kept as given: the cost of contacts, and of sealing
// them, against the same run's figure without.
void BM_CreatePurchaseOrder(benchmark::State& state) {
  Fixture f(state.range(1) != 0);
  Ledger* ledger = f.ledger();
  const int contacts = static_cast<int>(state.range(0));
  RunInFlight(state, [&](int64_t seq, absl::BlockingCounter* pending) {
    // As the server does: convert the request, execute, answer with the PO.
    v1::PurchaseOrder po = LoadPurchaseOrder(absl::StrCat("po-", seq));
    RequestContext ctx;
    ctx.account_id = absl::StrCat("acct-", seq % (kInFlight * 50));
    for (int c = 0; c < contacts; ++c) {
      v1::Contact* contact = po.add_contacts();
      contact->set_name(absl::StrCat("Contact ", c));
      contact->set_email(absl::StrCat("c", c, "@", ctx.account_id, ".example"));
      contact->set_phone("+1 555 0100");
    }
    absl::StatusOr<core::CreatePurchaseOrder> cmd =
        convert::ToCreate(po, "purchase_order");
    if (!cmd.ok()) std::abort();
    std::string po_id = cmd->purchase_order_id;
    ledger->ExecuteAsync(
        ctx, *std::move(cmd),
        [ledger, account = ctx.account_id, po_id,
         pending](absl::StatusOr<ExecuteResult> result) {
          if (!result.ok()) std::abort();
          v1::PurchaseOrder out;
          (void)ledger->Read(account, [&](const core::AccountState& s) {
            out = convert::ToApi(account, s.purchase_orders.at(po_id));
          });
          benchmark::DoNotOptimize(out);
          pending->DecrementCount();
        });
  });
}
BENCHMARK(BM_CreatePurchaseOrder)
    ->Args({0, 1})
    ->Args({3, 0})
    ->Args({3, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// PersonalData::Seal alone: a PurchaseOrderCreated of three contacts of an
// account whose subjects have keys already (the common case), then its
// stored form; and opening it again, as every read of the event does.
void BM_SealThreeContacts(benchmark::State& state) {
  InMemoryEventStore store;
  std::unique_ptr<PersonalData> keys =
      *PersonalData::Open(&store, std::string(kDataKeyBytes, '\x5e'));
  v1::AccountEvent event;
  v1::PurchaseOrderHeader* header =
      event.mutable_purchase_order_created()->mutable_header();
  for (int c = 0; c < 3; ++c) {
    v1::Contact* contact = header->add_contacts();
    contact->set_name(absl::StrCat("Contact ", c));
    contact->set_email(absl::StrCat("c", c, "@acct.example"));
    contact->set_phone("+1 555 0100");
  }
  {  // The subjects' keys, made once.
    std::vector<v1::AccountEvent> first = {event};
    std::vector<KeyEntry> made;
    if (!keys->Seal("acct", first, made).ok()) std::abort();
    keys->Remember(made);
  }
  const bool open = state.range(0) != 0;
  std::string stored;
  for (auto _ : state) {
    std::vector<v1::AccountEvent> events = {event};
    std::vector<KeyEntry> made;
    if (!keys->Seal("acct", events, made).ok() || !made.empty()) std::abort();
    stored = PersonalData::StoredPayload(events[0]);
    if (open) {
      v1::AccountEvent read;
      if (!read.ParseFromString(stored) || !keys->Open("acct", read).ok()) {
        std::abort();
      }
      benchmark::DoNotOptimize(read);
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SealThreeContacts)->Arg(0)->Arg(1);

void BM_RecordInvoice(benchmark::State& state) {
  Fixture f;
  Ledger* ledger = f.ledger();
  for (int a = 0; a < kInFlight; ++a) {
    RequestContext ctx;
    ctx.account_id = absl::StrCat("acct-", a);
    if (!ledger->Execute(ctx, *convert::ToCreate(LoadPurchaseOrder("base"), ""))
             .ok()) {
      std::abort();
    }
  }
  RunInFlight(state, [&](int64_t seq, absl::BlockingCounter* pending) {
    v1::Invoice invoice;
    FillLoadInvoice(absl::StrCat("inv-", seq), seq, &invoice);
    RequestContext ctx;
    ctx.account_id = absl::StrCat("acct-", seq % kInFlight);
    absl::StatusOr<v1::InvoiceData> data =
        convert::ToInvoiceData(invoice, "invoice");
    if (!data.ok()) std::abort();
    ledger->ExecuteAsync(ctx, core::RecordInvoice{*std::move(data)},
                         [account = ctx.account_id,
                          pending](absl::StatusOr<ExecuteResult> result) {
                           if (!result.ok() || result->events.empty())
                             std::abort();
                           absl::StatusOr<v1::Invoice> out = convert::InvoiceOf(
                               account, result->events.front());
                           if (!out.ok()) std::abort();
                           benchmark::DoNotOptimize(out);
                           pending->DecrementCount();
                         });
  });
}
BENCHMARK(BM_RecordInvoice)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace poledger

int main(int argc, char** argv) {
  // As poledger-server does (server_main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
