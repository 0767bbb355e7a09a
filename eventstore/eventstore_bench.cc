// Measures the RocksDB event store against RocksDB's own db_bench on the
// same disk, in one run:
//   - durable append throughput and latency, single ~300-byte events, sync
//     on, with 1, 16 and 256 concurrent appenders: as that many threads
//     calling Append, and as that many appends in flight through
//     AppendAsync;
//   - replay throughput: read and decode every record of a 1M-event log;
//   - baselines: db_bench fillseq --sync=1 --value_size=300 --threads=64,
//     and readseq over 1M keys (the second of two readseq passes, so the
//     page cache is warm; the replay figures likewise follow a warm-up pass).
//
// Usage: poledger-eventstore-bench [--dir=DIR] [--seconds=S]
//            [--replay-events=N] [--db-bench=PATH]
// DIR (default: a new directory under $TMPDIR or /tmp) is removed after.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "eventstore/rocksdb_event_store.h"

namespace poledger {
namespace {

struct Flags {
  std::string dir;
  double seconds = 3;
  uint64_t replay_events = 1000000;
  std::string db_bench = "/usr/bin/db_bench";
  std::string phases = "baseline,append,append-async,replay";
  std::string appenders = "1,16,256";
};

std::unique_ptr<RocksDbEventStore> MustOpen(const std::string& path,
                                            bool verify_reads = true) {
  RocksDbEventStoreOptions options;
  options.path = path;
  options.verify_reads = verify_reads;
  auto store = RocksDbEventStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "open %s: %s\n", path.c_str(),
                 store.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*store);
}

std::string Payload(uint64_t i) {
  std::string p = absl::StrCat("event ", i, " ");
  p.resize(300, 'x');
  return p;
}

struct AppendFigures {
  double events_per_sec;
  double p50_us;
  double p99_us;
};

AppendFigures BenchAppend(const std::string& path, int appenders,
                          double seconds) {
  auto store = MustOpen(path);
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> latencies(appenders);
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int t = 0; t < appenders; ++t) {
    threads.emplace_back([&, t] {
      const std::string stream = absl::StrCat("bench-", t % 64);
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        AppendRequest request;
        request.streams.push_back(
            {stream, ExpectedVersion::Any(), {{"BenchEvent", Payload(i), ""}}});
        const absl::Time begin = absl::Now();
        auto result = store->Append(request);
        if (!result.ok()) {
          std::fprintf(stderr, "append: %s\n",
                       result.status().ToString().c_str());
          std::exit(1);
        }
        latencies[t].push_back(absl::ToDoubleMicroseconds(absl::Now() - begin));
      }
    });
  }
  absl::SleepFor(absl::Seconds(seconds));
  stop = true;
  for (std::thread& t : threads) t.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double q) {
    return all.empty() ? 0.0 : all[static_cast<size_t>(q * (all.size() - 1))];
  };
  return {all.size() / elapsed, pct(0.50), pct(0.99)};
}

// The same load with appends kept in flight through AppendAsync from one
// thread: `in_flight` concurrent appenders that do not each need a thread.
AppendFigures BenchAppendAsync(const std::string& path, int in_flight,
                               double seconds) {
  auto store = MustOpen(path);
  absl::Mutex mu;
  std::vector<double> latencies;
  bool stop = false;
  int outstanding = in_flight;
  std::atomic<uint64_t> seq{0};
  std::function<void()> issue = [&]() {
    const uint64_t i = seq++;
    AppendRequest request;
    request.streams.push_back({absl::StrCat("bench-", i % 64),
                               ExpectedVersion::Any(),
                               {{"BenchEvent", Payload(i), ""}}});
    const absl::Time begin = absl::Now();
    store->AppendAsync(std::move(request),
                       [&, begin](absl::StatusOr<AppendResult> result) {
                         if (!result.ok()) {
                           std::fprintf(stderr, "append: %s\n",
                                        result.status().ToString().c_str());
                           std::exit(1);
                         }
                         const double us =
                             absl::ToDoubleMicroseconds(absl::Now() - begin);
                         bool again;
                         {
                           absl::MutexLock lock(&mu);
                           latencies.push_back(us);
                           again = !stop;
                           if (!again) --outstanding;
                         }
                         if (again) issue();
                       });
  };
  const absl::Time start = absl::Now();
  for (int i = 0; i < in_flight; ++i) issue();
  absl::SleepFor(absl::Seconds(seconds));
  absl::MutexLock lock(&mu);
  stop = true;
  mu.Await(absl::Condition(+[](int* n) { return *n == 0; }, &outstanding));
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double q) {
    return latencies.empty()
               ? 0.0
               : latencies[static_cast<size_t>(q * (latencies.size() - 1))];
  };
  return {latencies.size() / elapsed, pct(0.50), pct(0.99)};
}

void FillForReplay(const std::string& path, uint64_t events) {
  auto store = MustOpen(path);
  constexpr uint64_t kPerAppend = 1000;
  for (uint64_t done = 0; done < events;) {
    AppendRequest request;
    StreamAppend s{absl::StrCat("replay-", done % 1000), ExpectedVersion::Any(),
                   {}};
    const uint64_t n = std::min(kPerAppend, events - done);
    for (uint64_t i = 0; i < n; ++i) {
      s.events.push_back({"BenchEvent", Payload(done + i), ""});
    }
    request.streams.push_back(std::move(s));
    if (!store->Append(request).ok()) std::exit(1);
    done += n;
  }
}

double BenchReplay(const std::string& path, bool verify, uint64_t* count) {
  auto store = MustOpen(path, verify);
  const absl::Time start = absl::Now();
  uint64_t next = 1;
  uint64_t bytes = 0;
  for (;;) {
    auto batch = store->ReadForward(next, 4096);
    if (!batch.ok()) {
      std::fprintf(stderr, "replay: %s\n", batch.status().ToString().c_str());
      std::exit(1);
    }
    if (batch->empty()) break;
    for (const RecordedEvent& r : *batch) bytes += r.payload.size();
    next = batch->back().position + 1;
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  *count = next - 1;
  if (bytes == 0) std::exit(1);
  return (next - 1) / elapsed;
}

double BenchOpen(const std::string& path) {
  const absl::Time start = absl::Now();
  auto store = MustOpen(path);
  return absl::ToDoubleSeconds(absl::Now() - start);
}

// Runs db_bench and returns the ops/sec it reports for `benchmark`.
double RunDbBench(const Flags& flags, const std::string& args,
                  const std::string& benchmark) {
  const std::string command =
      absl::StrCat(flags.db_bench, " ", args, " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return 0;
  char line[4096];
  double ops = 0;
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    const std::string text(line);
    if (!absl::StartsWith(text, benchmark + " ")) continue;
    // "readseq      :       0.533 micros/op 1874832 ops/sec ..."
    const size_t end = text.find(" ops/sec");
    const size_t begin = text.rfind(' ', end - 1);
    if (end != std::string::npos && begin != std::string::npos) {
      absl::SimpleAtod(text.substr(begin + 1, end - begin - 1), &ops);
    }
  }
  pclose(pipe);
  return ops;
}

int Main(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    bool ok = true;
    if (name == "--dir") {
      flags.dir = value;
    } else if (name == "--seconds") {
      ok = absl::SimpleAtod(value, &flags.seconds);
    } else if (name == "--replay-events") {
      ok = absl::SimpleAtoi(value, &flags.replay_events);
    } else if (name == "--db-bench") {
      flags.db_bench = value;
    } else if (name == "--phases") {
      flags.phases = value;
    } else if (name == "--appenders") {
      flags.appenders = value;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: %s [--dir=DIR] [--seconds=S] [--replay-events=N] "
                   "[--db-bench=PATH] [--phases=baseline,append,append-async,replay] "
                   "[--appenders=1,16,256]\n",
                   argv[0]);
      return 2;
    }
  }
  if (flags.dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(tmp != nullptr ? tmp : "/tmp",
                                       "/poledger-bench-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) return 1;
    flags.dir = pattern;
  }
  std::filesystem::create_directories(flags.dir);
  std::printf("poledger event store benchmark in %s\n", flags.dir.c_str());

  const std::vector<std::string> phases = absl::StrSplit(flags.phases, ',');
  auto enabled = [&](absl::string_view phase) {
    return std::find(phases.begin(), phases.end(), phase) != phases.end();
  };
  double fillseq = 0, readseq = 0, append256 = 0, replay = 0,
         replay_unverified = 0;

  // Baselines first, on the same disk.
  const std::string dbb = flags.dir + "/db_bench";
  if (enabled("baseline")) {
  fillseq = RunDbBench(
      flags,
      absl::StrCat("--benchmarks=fillseq --sync=1 --value_size=300 "
                   "--threads=64 --num=1000 --db=",
                   dbb),
      "fillseq");
  std::filesystem::remove_all(dbb);
  readseq = RunDbBench(
      flags,
      absl::StrCat("--benchmarks=fillseq,readseq,readseq --value_size=300 --num=",
                   flags.replay_events, " --db=", dbb),
      "readseq");
  std::filesystem::remove_all(dbb);
  std::printf("baseline db_bench fillseq sync=1 value=300 threads=64: %.0f ops/s\n",
              fillseq);
  std::printf("baseline db_bench readseq %llu keys: %.0f ops/s\n",
              static_cast<unsigned long long>(flags.replay_events), readseq);
  }

  double async256 = 0;
  for (absl::string_view n : absl::StrSplit(flags.appenders, ',')) {
    int appenders = 0;
    if (!enabled("append-async") || !absl::SimpleAtoi(n, &appenders)) break;
    const std::string path = absl::StrCat(flags.dir, "/append-async-", appenders);
    const AppendFigures f = BenchAppendAsync(path, appenders, flags.seconds);
    std::filesystem::remove_all(path);
    std::printf("append sync=on 300B in flight=%-3d (AppendAsync, 1 thread) "
                "%9.0f events/s  p50 %8.0f us  p99 %8.0f us\n",
                appenders, f.events_per_sec, f.p50_us, f.p99_us);
    if (appenders == 256) async256 = f.events_per_sec;
  }

  for (absl::string_view n : absl::StrSplit(flags.appenders, ',')) {
    int appenders = 0;
    if (!enabled("append") || !absl::SimpleAtoi(n, &appenders)) break;
    const std::string path = absl::StrCat(flags.dir, "/append-", appenders);
    const AppendFigures f = BenchAppend(path, appenders, flags.seconds);
    std::filesystem::remove_all(path);
    std::printf("append sync=on 300B appenders=%-3d %9.0f events/s  p50 %8.0f us"
                "  p99 %8.0f us\n",
                appenders, f.events_per_sec, f.p50_us, f.p99_us);
    if (appenders == 256) append256 = f.events_per_sec;
  }

  if (enabled("replay")) {
  const std::string replay_path = flags.dir + "/replay";
  FillForReplay(replay_path, flags.replay_events);
  const double open_seconds = BenchOpen(replay_path);
  uint64_t count = 0;
  // A first pass warms the page cache, as db_bench's first readseq does for
  // the second one, whose figure is the baseline.
  BenchReplay(replay_path, /*verify=*/false, &count);
  replay = BenchReplay(replay_path, /*verify=*/true, &count);
  replay_unverified = BenchReplay(replay_path, false, &count);
  std::filesystem::remove_all(replay_path);
  std::printf("open with full chain verification of %llu events: %.2f s\n",
              static_cast<unsigned long long>(count), open_seconds);
  std::printf("replay (decode + verify hashes): %.0f events/s\n", replay);
  std::printf("replay (decode only):            %.0f events/s\n",
              replay_unverified);
  }
  if (fillseq > 0 && append256 > 0) {
    std::printf("ratio append@256 threads / db_bench fillseq@64: %.2fx "
                "(target >= 3)\n",
                append256 / fillseq);
  }
  if (fillseq > 0 && async256 > 0) {
    std::printf("ratio append@256 in flight (AppendAsync) / db_bench "
                "fillseq@64: %.2fx (target >= 3)\n",
                async256 / fillseq);
  }
  if (readseq > 0 && replay > 0) {
    std::printf("ratio replay verified / db_bench readseq: %.2fx (target >= 0.5)\n",
                replay / readseq);
    std::printf("ratio replay decode-only / db_bench readseq: %.2fx\n",
                replay_unverified / readseq);
  }
  std::filesystem::remove_all(flags.dir);
  return 0;
}

}  // namespace
}  // namespace poledger

int main(int argc, char** argv) { return poledger::Main(argc, argv); }
