// poledger-stream-bench: what subscribers cost the writers. Starts a
// poledger-server on a fresh data directory, keeps --in-flight RecordInvoice
// calls going, and for each subscriber count in --subscribers (0, 1,000,
// 10,000 by default; each phase adds to the last) measures the append rate,
// the server's thread count and RSS, and the delivery lag (p50/p99: receive
// time minus the event's time) of the events subscribers receive.
//
// Subscriber i follows the invoices of account watch-(i mod --watched) with
// SubscribeEvents from the head when it joins; one write in --watch-every goes
// to a watched account (0: none, idle subscribers), the rest to --accounts
// other accounts. At the end every subscriber must have received every invoice
// of its account since it joined, in order, exactly once.
//
//   build/bench/poledger-stream-bench --seconds=5
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/load_requests.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"

namespace poledger {
namespace {

// Lag histogram: buckets 10% wide from 1 us.
class Histogram {
 public:
  void Add(absl::Duration d) {
    const double us = std::max(1.0, absl::ToDoubleMicroseconds(d));
    const size_t b = std::min<size_t>(
        kBuckets - 1, static_cast<size_t>(std::log(us) / std::log(1.1)));
    buckets_[b].fetch_add(1, std::memory_order_relaxed);
  }
  void Reset() {
    for (auto& b : buckets_) b.store(0);
  }
  // The q-quantile in milliseconds (0 when empty).
  double QuantileMs(double q) const {
    uint64_t total = 0;
    for (const auto& b : buckets_) total += b.load();
    if (total == 0) return 0;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i].load();
      if (seen >= q * total) return std::pow(1.1, i + 1) / 1000.0;
    }
    return 0;
  }
  uint64_t Count() const {
    uint64_t total = 0;
    for (const auto& b : buckets_) total += b.load();
    return total;
  }

 private:
  static constexpr size_t kBuckets = 250;
  std::atomic<uint64_t> buckets_[kBuckets] = {};
};

class Subscriber final
    : public grpc::ClientReadReactor<v1::SubscribeEventsResponse> {
 public:
  // Follows watch-`watch` after position `after`, when `base` invoices of
  // that account were acknowledged.
  Subscriber(v1::EventLogService::Stub* stub, int watch, uint64_t after,
             uint64_t base, Histogram* lag, std::atomic<int>* caught_up)
      : watch_(watch), base_(base), lag_(lag), caught_up_count_(caught_up) {
    request_.set_account_id(absl::StrCat("watch-", watch));
    request_.set_after_position(after);
    request_.add_event_types("invoice_recorded");
    stub->async()->SubscribeEvents(&ctx_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (response_.has_caught_up()) {
      if (!live_.exchange(true)) caught_up_count_->fetch_add(1);
    } else if (response_.has_event()) {
      const uint64_t position = response_.event().position();
      if (position <= last_.load()) out_of_order_.fetch_add(1);
      last_ = position;
      received_.fetch_add(1);
      if (live_.load()) {
        const auto& t = response_.event().time();
        lag_->Add(absl::Now() - absl::FromUnixSeconds(t.seconds()) -
                  absl::Nanoseconds(t.nanos()));
      }
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    done_ = true;
    cv_.notify_all();
  }
  void Cancel() { ctx_.TryCancel(); }
  void WaitDone() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }
  int watch() const { return watch_; }
  uint64_t base() const { return base_; }
  uint64_t received() const { return received_.load(); }
  uint64_t out_of_order() const { return out_of_order_.load(); }

 private:
  const int watch_;
  const uint64_t base_;
  Histogram* const lag_;
  std::atomic<int>* const caught_up_count_;
  grpc::ClientContext ctx_;
  v1::SubscribeEventsRequest request_;
  v1::SubscribeEventsResponse response_;
  std::atomic<bool> live_{false};
  std::atomic<uint64_t> last_{0};
  std::atomic<uint64_t> received_{0};
  std::atomic<uint64_t> out_of_order_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
};

struct Server {
  pid_t pid = -1;
  int port = 0;
};

// Starts `binary` on 127.0.0.1 with a fresh data directory; returns its pid
// and port, or pid -1.
Server StartServer(const std::string& binary, const std::string& data_dir) {
  int fds[2];
  Server s;
  if (pipe(fds) != 0) return s;
  s.pid = fork();
  if (s.pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(binary.c_str(), binary.c_str(), "--listen=127.0.0.1:0",
          ("--data-dir=" + data_dir).c_str(), "--max-concurrent-streams=2000",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[1024];
  const std::string marker = "listening on 127.0.0.1:";
  ssize_t n;
  while (s.port == 0 && (n = read(fds[0], buf, sizeof(buf))) > 0) {
    out.append(buf, static_cast<size_t>(n));
    const size_t at = out.find(marker);
    const size_t eol = at == std::string::npos ? at : out.find('\n', at);
    if (eol != std::string::npos) {
      (void)absl::SimpleAtoi(
          out.substr(at + marker.size(), eol - at - marker.size()), &s.port);
    }
  }
  // Keep draining its stderr so that it never blocks on a full pipe.
  std::thread([fd = fds[0]] {
    char sink[4096];
    while (read(fd, sink, sizeof(sink)) > 0) {
    }
    close(fd);
  }).detach();
  return s;
}

// Threads and resident memory (MiB) of `pid`, from /proc.
std::pair<int, double> ThreadsAndRss(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  int threads = 0;
  double rss_mib = 0;
  while (std::getline(status, line)) {
    std::vector<std::string> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t:"), absl::SkipEmpty());
    if (f.size() >= 2 && f[0] == "Threads")
      (void)absl::SimpleAtoi(f[1], &threads);
    if (f.size() >= 2 && f[0] == "VmRSS") {
      double kib = 0;
      (void)absl::SimpleAtod(f[1], &kib);
      rss_mib = kib / 1024;
    }
  }
  return {threads, rss_mib};
}

int Run(int argc, char** argv) {
  CLI::App app("poledger-stream-bench: what subscribers cost the writers");
  std::string binary = "build/server/poledger-server";
  double seconds = 5;
  std::vector<int> counts = {0, 1000, 10000};
  int channels = 16, in_flight = 256, accounts = 64, watched = 10,
      watch_every = 50;
  app.add_option("--server-binary", binary)->capture_default_str();
  app.add_option("--seconds", seconds, "Writing time per phase")
      ->capture_default_str();
  app.add_option("--subscribers", counts, "Subscriber counts, ascending")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--channels", channels)->capture_default_str();
  app.add_option("--in-flight", in_flight)->capture_default_str();
  app.add_option("--accounts", accounts, "Accounts nobody watches")
      ->capture_default_str();
  app.add_option("--watched", watched, "Accounts subscribers watch")
      ->capture_default_str();
  app.add_option("--watch-every", watch_every,
                 "One write in this many goes to a watched account (0: none, "
                 "the subscribers stay idle)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  char dir_template[] = "/tmp/poledger-stream-bench-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const Server server = StartServer(binary, dir + "/data");
  if (server.pid <= 0 || server.port == 0) {
    std::fprintf(stderr, "cannot start %s\n", binary.c_str());
    return 1;
  }
  const std::string address = absl::StrCat("127.0.0.1:", server.port);
  std::vector<std::shared_ptr<grpc::Channel>> pool;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("poledger.bench.channel", c);
    pool.push_back(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args));
  }
  auto invoices = v1::InvoiceService::NewStub(pool[0]);
  {
    // One purchase order per account, so that invoices match.
    auto pos = v1::PurchaseOrderService::NewStub(pool[0]);
    for (int a = 0; a < accounts + watched; ++a) {
      for (int attempt = 0; attempt < 100; ++attempt) {
        grpc::ClientContext ctx;
        v1::CreatePurchaseOrderRequest req;
        req.set_account_id(a < accounts ? absl::StrCat("acct-", a)
                                        : absl::StrCat("watch-", a - accounts));
        *req.mutable_purchase_order() = LoadPurchaseOrder("base");
        v1::PurchaseOrder out;
        const grpc::Status s = pos->CreatePurchaseOrder(&ctx, req, &out);
        if (s.ok()) break;
        absl::SleepFor(absl::Milliseconds(50));  // Still loading.
      }
    }
  }
  std::vector<std::unique_ptr<v1::EventLogService::Stub>> log_stubs;
  for (auto& ch : pool) log_stubs.push_back(v1::EventLogService::NewStub(ch));

  Histogram lag;
  std::atomic<int> caught_up{0};
  std::vector<std::unique_ptr<Subscriber>> subscribers;
  std::vector<std::atomic<uint64_t>> watched_appends(watched);
  std::atomic<int64_t> seq{0};

  std::printf("%-12s %12s %10s %8s %9s %12s %12s %12s\n", "subscribers",
              "appends/s", "vs none", "threads", "RSS MiB", "lag p50 ms",
              "lag p99 ms", "delivered/s");
  double base_rate = 0;
  for (int count : counts) {
    // New subscribers start at the head: no writer runs between phases, so
    // what they must receive is exactly what is acknowledged from now on.
    uint64_t head = 0;
    {
      grpc::ClientContext ctx;
      v1::GetLogDigestResponse digest;
      if (log_stubs[0]
              ->GetLogDigest(&ctx, v1::GetLogDigestRequest(), &digest)
              .ok()) {
        head = digest.head_position();
      }
    }
    while (static_cast<int>(subscribers.size()) < count) {
      const int i = static_cast<int>(subscribers.size());
      const int w = i % watched;
      subscribers.push_back(std::make_unique<Subscriber>(
          log_stubs[i % log_stubs.size()].get(), w, head,
          watched_appends[w].load(), &lag, &caught_up));
    }
    const absl::Time caught_deadline = absl::Now() + absl::Seconds(120);
    while (caught_up.load() < count && absl::Now() < caught_deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    lag.Reset();
    // Writers: keep in_flight calls going for `seconds`.
    std::atomic<bool> stop{false};
    std::atomic<int64_t> acked{0}, failed{0};
    std::mutex mu;
    std::condition_variable cv;
    int outstanding = 0;
    std::function<void()> send = [&] {
      const int64_t n = seq.fetch_add(1);
      const bool watch = watch_every > 0 && n % watch_every == 0;
      const int w =
          watch_every > 0 ? static_cast<int>((n / watch_every) % watched) : 0;
      struct Call {
        grpc::ClientContext ctx;
        v1::RecordInvoiceRequest req;
        v1::Invoice resp;
      };
      auto call = std::make_shared<Call>();
      call->req.set_account_id(watch ? absl::StrCat("watch-", w)
                                     : absl::StrCat("acct-", n % accounts));
      FillLoadInvoice(absl::StrCat("inv-", n), n, call->req.mutable_invoice());
      invoices->async()->RecordInvoice(&call->ctx, &call->req, &call->resp,
                                       [&, call, watch, w](grpc::Status s) {
                                         if (s.ok()) {
                                           acked.fetch_add(1);
                                           if (watch)
                                             watched_appends[w].fetch_add(1);
                                         } else {
                                           failed.fetch_add(1);
                                         }
                                         if (!stop.load()) {
                                           send();
                                           return;
                                         }
                                         std::lock_guard<std::mutex> lock(mu);
                                         if (--outstanding == 0)
                                           cv.notify_all();
                                       });
    };
    const uint64_t delivered_before = [&] {
      uint64_t d = 0;
      for (auto& s : subscribers) d += s->received();
      return d;
    }();
    const absl::Time start = absl::Now();
    {
      std::lock_guard<std::mutex> lock(mu);
      outstanding = in_flight;
    }
    for (int i = 0; i < in_flight; ++i) send();
    absl::SleepFor(absl::Seconds(seconds));
    const auto [threads, rss] = ThreadsAndRss(server.pid);
    stop = true;
    const int64_t acked_at_stop = acked.load();
    const absl::Duration elapsed = absl::Now() - start;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return outstanding == 0; });
    }
    uint64_t delivered = 0;
    for (auto& s : subscribers) delivered += s->received();
    const double rate = acked_at_stop / absl::ToDoubleSeconds(elapsed);
    if (count == counts.front()) base_rate = rate;
    std::printf(
        "%-12d %12.0f %9.2fx %8d %9.1f %12.2f %12.2f %12.0f\n", count, rate,
        base_rate > 0 ? rate / base_rate : 0, threads, rss, lag.QuantileMs(0.5),
        lag.QuantileMs(0.99),
        (delivered - delivered_before) / absl::ToDoubleSeconds(elapsed));
    std::fflush(stdout);
    if (failed.load() > 0)
      std::printf("  %lld writes failed\n", (long long)failed.load());
  }

  // Every subscriber got every event of its account, in order, once.
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  int short_of = 0;
  for (;;) {
    short_of = 0;
    for (auto& s : subscribers) {
      short_of +=
          s->received() < watched_appends[s->watch()].load() - s->base();
    }
    if (short_of == 0 || absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  uint64_t disorder = 0, extra = 0;
  for (auto& s : subscribers) {
    disorder += s->out_of_order();
    extra += s->received() > watched_appends[s->watch()].load() - s->base();
  }
  std::printf(
      "delivery check: %zu subscribers, %d short of their events, %llu "
      "with more, %llu out of order\n",
      subscribers.size(), short_of, (unsigned long long)extra,
      (unsigned long long)disorder);
  for (auto& s : subscribers) s->Cancel();
  for (auto& s : subscribers) s->WaitDone();
  kill(server.pid, SIGTERM);
  waitpid(server.pid, nullptr, 0);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return short_of == 0 && extra == 0 && disorder == 0 ? 0 : 1;
}

}  // namespace
}  // namespace poledger

int main(int argc, char** argv) { return poledger::Run(argc, argv); }
