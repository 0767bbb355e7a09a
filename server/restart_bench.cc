// poledger-restart-bench: how long a server takes from start to SERVING on
// a long log, with the verified-through mark and with a full check.
//
//   build/server/poledger-restart-bench --events=10000000 --dir=/tmp/restart
//
// Builds the log once (purchase orders, then invoices through the Ledger at
// --in-flight commands, snapshots every --snapshot-every events) unless
// --dir already holds one, then starts an in-process server on it --runs
// times in each mode, alternating:
//   clean  the mark at the head (after a clean stop);
//   crash  the mark --snapshot-every records behind the head (a kill -9 just
//          before the next snapshot: the most a restart checks);
//   full   --verify-on-open=full (every record).
// Prints seconds to SERVING, the records each open checked, and seconds until
// every account is loaded (the ledger loads them after SERVING).
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/convert.h"
#include "bench/load_requests.h"
#include "eventstore/record_format.h"
#include "eventstore/rocksdb_event_store.h"
#include "ledger/clock.h"
#include "ledger/ledger.h"
#include "rocksdb/db.h"
#include "server/server.h"

namespace poledger {
namespace {

struct Flags {
  std::string dir = "/tmp/poledger-restart-bench";
  uint64_t events = 10'000'000;
  int accounts = 1000;
  int in_flight = 512;
  int runs = 3;
  uint64_t snapshot_every = 250'000;
};

int Build(const Flags& f) {
  RocksDbEventStoreOptions store_options;
  store_options.path = f.dir;
  auto store = RocksDbEventStore::Open(store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  RealClock clock;
  LedgerOptions ledger_options;
  ledger_options.snapshot_every_events = f.snapshot_every;
  auto ledger = Ledger::Open(store->get(), &clock, ledger_options);
  if (!ledger.ok()) {
    std::fprintf(stderr, "%s\n", ledger.status().ToString().c_str());
    return 1;
  }
  for (int a = 0; a < f.accounts; ++a) {
    RequestContext ctx;
    ctx.account_id = absl::StrCat("acct-", a);
    ctx.actor = "restart-bench";
    auto done = (*ledger)->Execute(
        ctx, *convert::ToCreate(LoadPurchaseOrder("po"), "purchase_order"));
    if (!done.ok()) {
      std::fprintf(stderr, "%s\n", done.status().ToString().c_str());
      return 1;
    }
  }
  absl::Mutex mu;
  int outstanding = 0;
  struct Room {
    const int* outstanding;
    int limit;
    bool Free() const { return *outstanding < limit; }
    bool Empty() const { return *outstanding == 0; }
  } room{&outstanding, f.in_flight};
  std::atomic<int> failed{0};
  const absl::Time start = absl::Now();
  for (int64_t seq = 0; (*store)->Head().position < f.events; ++seq) {
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(&room, &Room::Free));
      ++outstanding;
    }
    RequestContext ctx;
    ctx.account_id = absl::StrCat("acct-", seq % f.accounts);
    ctx.actor = "restart-bench";
    v1::Invoice invoice;
    FillLoadInvoice(absl::StrCat("inv-", seq), seq, &invoice);
    (*ledger)->ExecuteAsync(
        ctx, core::RecordInvoice{*convert::ToInvoiceData(invoice, "invoice")},
        [&](absl::StatusOr<ExecuteResult> r) {
          if (!r.ok()) failed.fetch_add(1);
          absl::MutexLock lock(&mu);
          --outstanding;
        });
    if (seq % 500000 == 0) {
      std::fprintf(
          stderr, "  %llu events, %.0f/s\n",
          static_cast<unsigned long long>((*store)->Head().position),
          (*store)->Head().position /
              std::max(1e-9, absl::ToDoubleSeconds(absl::Now() - start)));
    }
  }
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&room, &Room::Empty));
  }
  std::fprintf(stderr, "built %llu events in %.0f s (%d refused)\n",
               static_cast<unsigned long long>((*store)->Head().position),
               absl::ToDoubleSeconds(absl::Now() - start), failed.load());
  return 0;
}

// Moves the verified-through mark `behind` records below the head.
bool SetMarkBehind(const std::string& dir, uint64_t behind) {
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(rocksdb::Options(), dir, &raw).ok()) return false;
  std::unique_ptr<rocksdb::DB> db(raw);
  std::unique_ptr<rocksdb::Iterator> it(
      db->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(record_format::LogKey(UINT64_MAX));
  if (!it->Valid()) return false;
  auto head = record_format::ParseLogKey(it->key().ToString());
  if (!head.ok() || *head <= behind) return false;
  // The end of the record `behind` records below the last one.
  it->SeekForPrev(record_format::LogKey(*head - behind));
  if (!it->Valid()) return false;
  auto first = record_format::ParseLogKey(it->key().ToString());
  std::vector<RecordedEvent> record;
  if (!first.ok() || !record_format::DecodeRecordValue(
                          *first, it->value().ToString(), true, &record)
                          .ok()) {
    return false;
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return db
      ->Put(wo, record_format::MetaVerifiedKey(),
            record_format::EncodeVerifiedMark(
                {record.back().position, record.back().hash}))
      .ok();
}

// Seconds to open the store alone (no ledger), checking from the mark or
// every record.
double OpenStoreSeconds(const std::string& dir, bool full) {
  RocksDbEventStoreOptions options;
  options.path = dir;
  options.create_if_missing = false;
  options.verify_from_mark = !full;
  const absl::Time start = absl::Now();
  auto store = RocksDbEventStore::Open(options);
  const double took = absl::ToDoubleSeconds(absl::Now() - start);
  if (!store.ok()) return -1;
  return took;
}

int Measure(const Flags& f) {
  // Where the time goes: the store's open (the check) against the whole
  // start (the ledger loads the snapshot and replays what follows it).
  std::printf("store open alone: %.2f s from the mark, %.2f s full\n",
              OpenStoreSeconds(f.dir, false), OpenStoreSeconds(f.dir, true));
  std::map<std::string, std::vector<double>> seconds;
  std::map<std::string, std::vector<double>> warm_seconds;
  std::map<std::string, uint64_t> checked;
  uint64_t head = 0;
  for (int run = 0; run < f.runs; ++run) {
    for (const char* mode : {"clean", "crash", "full"}) {
      if (std::string(mode) == "crash" &&
          !SetMarkBehind(f.dir, f.snapshot_every)) {
        std::fprintf(stderr, "cannot move the mark\n");
        return 1;
      }
      ServerOptions options;
      options.listen = "127.0.0.1:0";
      options.data_dir = f.dir;
      options.tick_interval = absl::Hours(1);
      options.snapshot_every_events = f.snapshot_every;
      options.verify_on_open = std::string(mode) == "full" ? "full" : "mark";
      const absl::Time start = absl::Now();
      auto server = PoledgerServer::Start(options);
      const double took = absl::ToDoubleSeconds(absl::Now() - start);
      if (!server.ok()) {
        std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
        return 1;
      }
      head = (*server)->ledger()->store()->Head().position;
      checked[mode] = (*server)->open_checked_records();
      seconds[mode].push_back(took);
      // Serving from here; the accounts load in the background (or on
      // first use) until all are in memory.
      while (!(*server)->ledger()->AllLoaded())
        absl::SleepFor(absl::Milliseconds(5));
      const double warm = absl::ToDoubleSeconds(absl::Now() - start);
      warm_seconds[mode].push_back(warm);
      std::fprintf(stderr,
                   "  run %d %-5s %.3f s, checked %llu records; all "
                   "accounts loaded at %.3f s\n",
                   run, mode, took,
                   static_cast<unsigned long long>(checked[mode]), warm);
      (*server)->Shutdown(absl::ZeroDuration());
      (*server)->Wait();
    }
  }
  std::printf("log: %llu events, snapshots every %llu\n",
              static_cast<unsigned long long>(head),
              static_cast<unsigned long long>(f.snapshot_every));
  std::printf(
      "| open | checked records | seconds to SERVING (each run) | best | "
      "seconds to every account loaded (each run) |\n");
  std::printf("|---|---|---|---|---|\n");
  std::map<std::string, double> best;
  auto list = [](const std::vector<double>& values) {
    std::string out;
    for (double v : values) {
      absl::StrAppend(&out, out.empty() ? "" : ", ",
                      absl::StrFormat("%.2f", v));
    }
    return out;
  };
  for (const char* mode : {"clean", "crash", "full"}) {
    best[mode] = 1e9;
    for (double s : seconds[mode]) best[mode] = std::min(best[mode], s);
    std::printf("| %s | %llu | %s | %.2f | %s |\n", mode,
                static_cast<unsigned long long>(checked[mode]),
                list(seconds[mode]).c_str(), best[mode],
                list(warm_seconds[mode]).c_str());
  }
  std::printf("full / crash: %.1fx, full / clean: %.1fx\n",
              best["full"] / best["crash"], best["full"] / best["clean"]);
  return 0;
}

}  // namespace
}  // namespace poledger

int main(int argc, char** argv) {
  poledger::Flags f;
  CLI::App app("poledger-restart-bench: restart time on a long log");
  app.add_option("--dir", f.dir, "Data directory (built if it has no log)")
      ->capture_default_str();
  app.add_option("--events", f.events, "Events to build")
      ->capture_default_str();
  app.add_option("--accounts", f.accounts)->capture_default_str();
  app.add_option("--in-flight", f.in_flight)->capture_default_str();
  app.add_option("--runs", f.runs)->capture_default_str();
  app.add_option("--snapshot-every", f.snapshot_every)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!std::filesystem::exists(f.dir + "/CURRENT")) {
    if (int rc = poledger::Build(f); rc != 0) return rc;
  }
  return poledger::Measure(f);
}
