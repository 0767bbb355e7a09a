// poledger-loadgen: a closed-loop load generator for a running server.
// Keeps N requests in flight with gRPC's callback API and reports, for each
// method and concurrency, throughput, p50/p99 latency and the CPU time each
// request cost the load generator and (with --server-pid, when the server
// runs on the same machine) the server. Three baselines are measured in the
// same run: GetServerInfo (no disk, tiny messages), GetPurchaseOrder (no
// disk, the answer CreatePurchaseOrder gives) and GetInvoice (writes
// nothing; reads the invoice's event from the log and gives the answer
// RecordInvoice gives), which tell the cost of a durable write apart from
// the cost of the messages.
//
//   poledger-loadgen --server=127.0.0.1:50051 --seconds=5
//                    --concurrency=1,64,256 --accounts=256
//                    --server-pid=$(pidof poledger-server)
//
// Writes go to `--accounts` accounts (round robin) under a run-unique
// prefix, each with purchase orders set up first, so invoices match.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/load_requests.h"
#include "clients/channel.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"

namespace poledger {
namespace {

struct Figures {
  double per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  int64_t errors = 0;
  std::string first_error;
  // CPU time per request; negative when not measured.
  double client_cpu_us = -1;
  double server_cpu_us = -1;
  // Bytes of an answer (the serialized response), on average.
  double answer_bytes = 0;
};

// CPU time (user + system, all threads) this process has used.
double OwnCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// CPU time (user + system, all threads) process `pid` has used, from
// /proc/<pid>/stat; negative if it cannot be read.
double ProcessCpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) in parentheses;
  // utime and stime are fields 14 and 15 of the whole line.
  const size_t end = stat.rfind(')');
  if (end == std::string::npos) return -1;
  std::vector<absl::string_view> f = absl::StrSplit(
      absl::string_view(stat).substr(end + 1), ' ', absl::SkipWhitespace());
  int64_t utime = 0, stime = 0;
  if (f.size() < 13 || !absl::SimpleAtoi(f[11], &utime) ||
      !absl::SimpleAtoi(f[12], &stime)) {
    return -1;
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

// The first failure seen in a measurement, for the report.
std::mutex first_error_mu;
std::string first_error;

void NoteError(const grpc::Status& s) {
  if (s.ok()) return;
  std::lock_guard<std::mutex> lock(first_error_mu);
  if (first_error.empty()) {
    first_error = absl::StrCat(s.error_code(), " ", s.error_message());
  }
}

// Bytes of the answers received so far.
std::atomic<int64_t> answer_bytes{0};

// Issues one request; calls done(ok) when it completes.
using Issue = std::function<void(int64_t seq, std::function<void(bool)> done)>;

// Whether a request message is about one account (has account_id).
template <typename R, typename = void>
struct HasAccount : std::false_type {};
template <typename R>
struct HasAccount<R, std::void_t<decltype(std::declval<R>().account_id())>>
    : std::true_type {};

// Sets the header a proxy in front of shards routes on: the request's
// account, as the body has it.
template <typename Request>
void Route(grpc::ClientContext* ctx, const Request& request) {
  if constexpr (HasAccount<Request>::value) {
    ctx->AddMetadata("x-poledger-account", request.account_id());
  }
}

// Starts one call with `request`: `call(context, request, response,
// on_done)` is the stub's async method. The context and messages live until
// the call ends; then done(ok) runs.
template <typename Response, typename Request, typename Call>
void Send(std::unique_ptr<Request> request, std::function<void(bool)> done,
          Call call) {
  auto* ctx = new grpc::ClientContext;
  Route(ctx, *request);
  Request* req = request.release();
  auto* resp = new Response;
  call(ctx, req, resp, [=](grpc::Status s) {
    if (s.ok()) {
      answer_bytes += static_cast<int64_t>(resp->ByteSizeLong());
    }
    delete ctx;
    delete req;
    delete resp;
    NoteError(s);
    done(s.ok());
  });
}

// What the windows of one method measured, added up.
struct Samples {
  std::vector<double> latencies_us;
  int64_t errors = 0;
  double seconds = 0;
  double client_cpu_seconds = 0;
  double server_cpu_seconds = 0;  // Negative once a reading failed.
  int64_t answer_bytes = 0;
  // Numbers the requests (ids must not repeat across windows).
  int64_t next_seq = 0;
};

// Keeps `concurrency` requests in flight for `duration`; adds to `out`.
// `server_pid` > 0: also adds the CPU time that process used meanwhile.
void Run(int concurrency, absl::Duration duration, const Issue& issue,
         int server_pid, Samples* out) {
  const double client_cpu_start = OwnCpuSeconds();
  const int64_t answer_bytes_start = answer_bytes.load();
  const double server_cpu_start =
      server_pid > 0 ? ProcessCpuSeconds(server_pid) : -1;
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::atomic<int64_t> seq{out->next_seq};
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  std::function<void()> launch = [&]() {
    const absl::Time begin = absl::Now();
    issue(seq++, [&, begin](bool ok) {
      const double us = absl::ToDoubleMicroseconds(absl::Now() - begin);
      bool again;
      {
        std::lock_guard<std::mutex> lock(mu);
        out->latencies_us.push_back(us);
        if (!ok) ++out->errors;
        again = absl::Now() < end;
        if (!again) {
          --in_flight;
          cv.notify_all();
        }
      }
      if (again) launch();
    });
  };
  {
    std::lock_guard<std::mutex> lock(mu);
    in_flight = concurrency;
  }
  for (int i = 0; i < concurrency; ++i) launch();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  out->seconds += absl::ToDoubleSeconds(absl::Now() - start);
  out->next_seq = seq.load();
  out->client_cpu_seconds += OwnCpuSeconds() - client_cpu_start;
  out->answer_bytes += answer_bytes.load() - answer_bytes_start;
  const double server_cpu_end =
      server_pid > 0 ? ProcessCpuSeconds(server_pid) : -1;
  if (server_cpu_start < 0 || server_cpu_end < 0) {
    out->server_cpu_seconds = -1;
  } else if (out->server_cpu_seconds >= 0) {
    out->server_cpu_seconds += server_cpu_end - server_cpu_start;
  }
}

Figures Summarize(Samples& samples) {
  std::vector<double>& latencies = samples.latencies_us;
  std::sort(latencies.begin(), latencies.end());
  Figures f;
  if (samples.seconds > 0) f.per_second = latencies.size() / samples.seconds;
  if (!latencies.empty()) {
    f.p50_us = latencies[latencies.size() / 2];
    f.p99_us = latencies[static_cast<size_t>(0.99 * (latencies.size() - 1))];
  }
  f.errors = samples.errors;
  if (!latencies.empty()) {
    const double n = static_cast<double>(latencies.size());
    f.client_cpu_us = samples.client_cpu_seconds * 1e6 / n;
    f.answer_bytes = static_cast<double>(samples.answer_bytes) / n;
    if (samples.server_cpu_seconds >= 0) {
      f.server_cpu_us = samples.server_cpu_seconds * 1e6 / n;
    }
  }
  std::lock_guard<std::mutex> error_lock(first_error_mu);
  f.first_error = std::move(first_error);
  first_error.clear();
  return f;
}

int Main(int argc, char** argv) {
  std::string server = "127.0.0.1:50051";
  double seconds = 5;
  std::string concurrency_list = "1,64,256";
  int accounts = 256;
  int channels = 1;
  int rounds = 4;
  double warmup_seconds = 0;
  int server_pid = 0;
  std::vector<std::string> methods = {"info",    "get",    "get-invoice",
                                      "invoice", "create", "batch"};
  std::string batch_sizes = "100,1000";
  std::string account_size = "small";
  CLI::App app("poledger-loadgen: throughput and latency of a running server");
  app.add_option("--server", server, "host:port")->capture_default_str();
  app.add_option("--seconds", seconds, "Per measurement")->capture_default_str();
  app.add_option("--concurrency", concurrency_list, "Requests in flight")
      ->capture_default_str();
  app.add_option("--accounts", accounts, "Accounts the writes spread over")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--channels", channels,
                 "Connections to the server; requests take them in turn")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--warmup", warmup_seconds,
                 "Seconds each method runs unmeasured before the first window "
                 "of each concurrency (the channel's flow-control windows and "
                 "the server's caches warm up)")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--rounds", rounds,
                 "Windows per method: methods take turns, each measured for "
                 "seconds/rounds per window")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--methods", methods,
                 "Which to measure: info (GetServerInfo: no disk, tiny "
                 "messages), get (GetPurchaseOrder: no disk, the answer "
                 "CreatePurchaseOrder gives), get-invoice (GetInvoice: reads "
                 "the log, writes nothing, the answer RecordInvoice gives), "
                 "invoice "
                 "(RecordInvoice), create (CreatePurchaseOrder), batch "
                 "(BatchRecordInvoices at each --batch-sizes, items of "
                 "consecutive accounts)")
      ->delimiter(',')
      ->check(CLI::IsMember(
          {"info", "get", "get-invoice", "invoice", "create", "batch"}))
      ->capture_default_str();
  app.add_option("--batch-sizes", batch_sizes,
                 "Invoices per BatchRecordInvoices call, for method batch")
      ->capture_default_str();
  app.add_option("--account-size", account_size,
                 "small: each account has one purchase order of 3 lines; "
                 "full: 100 purchase orders of 100 lines each (the domain's "
                 "limits, where the biggest users' invoices land), all of "
                 "which fit the invoices sent")
      ->check(CLI::IsMember({"small", "full"}))
      ->capture_default_str();
  app.add_option("--server-pid", server_pid,
                 "The server's process id, if it runs on this machine: "
                 "report the CPU time each request cost it (from /proc)")
      ->check(CLI::PositiveNumber);
  poledger::ClientTls tls;
  poledger::AddTlsOptions(&app, &tls);
  CLI11_PARSE(app, argc, argv);
  auto credentials = poledger::ClientCredentials(tls);
  if (!credentials.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string(credentials.status().message()).c_str());
    return 2;
  }

  // One connection per channel (a local subchannel pool each); requests
  // take the channels in turn.
  std::vector<std::unique_ptr<v1::AdminService::Stub>> admins;
  std::vector<std::unique_ptr<v1::PurchaseOrderService::Stub>> po_stubs;
  std::vector<std::unique_ptr<v1::InvoiceService::Stub>> invoice_stubs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(server, *credentials, args);
    admins.push_back(v1::AdminService::NewStub(channel));
    po_stubs.push_back(v1::PurchaseOrderService::NewStub(channel));
    invoice_stubs.push_back(v1::InvoiceService::NewStub(channel));
  }
  auto admin_of = [&](int64_t seq) { return admins[seq % channels].get(); };
  auto pos_of = [&](int64_t seq) { return po_stubs[seq % channels].get(); };
  auto invoices_of = [&](int64_t seq) {
    return invoice_stubs[seq % channels].get();
  };
  v1::PurchaseOrderService::Stub* pos = po_stubs[0].get();
  const std::string run = absl::StrCat("lg", absl::ToUnixMillis(absl::Now()));
  auto account = [&](int64_t i) { return absl::StrCat(run, "-", i % accounts); };

  auto wanted = [&](const char* name) {
    return std::find(methods.begin(), methods.end(), name) != methods.end();
  };
  // Set up one purchase order per account so invoices match (or 100 of 100
  // lines each, --account-size=full), and one invoice per account for
  // GetInvoice to read.
  const bool full = account_size == "full";
  for (int a = 0; a < accounts; ++a) {
    grpc::Status s;
    for (int p = 0; p < (full ? 100 : 1) && s.ok(); ++p) {
      grpc::ClientContext ctx;
      v1::CreatePurchaseOrderRequest req;
      req.set_account_id(account(a));
      *req.mutable_purchase_order() =
          full ? LoadPurchaseOrder(p == 0 ? "base" : absl::StrCat("full-", p),
                                   100)
               : LoadPurchaseOrder("base");
      v1::PurchaseOrder out;
      Route(&ctx, req);
      s = pos->CreatePurchaseOrder(&ctx, req, &out);
    }
    if (s.ok() && wanted("get-invoice")) {
      grpc::ClientContext invoice_ctx;
      v1::RecordInvoiceRequest invoice_req;
      invoice_req.set_account_id(account(a));
      FillLoadInvoice("base", a, invoice_req.mutable_invoice());
      v1::Invoice recorded;
      Route(&invoice_ctx, invoice_req);
      s = invoice_stubs[0]->RecordInvoice(&invoice_ctx, invoice_req, &recorded);
    }
    if (!s.ok()) {
      std::fprintf(stderr, "setup failed: %s\n", s.error_message().c_str());
      return 1;
    }
  }

  const absl::Duration duration = absl::Seconds(seconds);
  // CPU columns: microseconds of CPU time (user + system, all threads) per
  // request, of this process and of the server ("-": no --server-pid).
  // And the bytes of an answer, on average.
  std::printf("%-22s %5s %12s %10s %10s %7s %9s %9s %9s\n", "method", "conc",
              "req/s", "p50 us", "p99 us", "errors", "cli cpu", "srv cpu",
              "answer B");
  for (absl::string_view c : absl::StrSplit(concurrency_list, ',')) {
    int concurrency = 0;
    if (!absl::SimpleAtoi(c, &concurrency) || concurrency < 1) {
      std::fprintf(stderr, "--concurrency: bad value '%s'\n",
                   std::string(c).c_str());
      return 2;
    }
    std::map<std::string, Issue> issues;
    issues["info"] = [&](int64_t seq, std::function<void(bool)> done) {
      Send<v1::GetServerInfoResponse>(
          std::make_unique<v1::GetServerInfoRequest>(), std::move(done),
          [&](auto... args) { admin_of(seq)->async()->GetServerInfo(args...); });
    };
    issues["get"] = [&](int64_t seq, std::function<void(bool)> done) {
      auto req = std::make_unique<v1::GetPurchaseOrderRequest>();
      req->set_account_id(account(seq));
      req->set_purchase_order_id("base");
      Send<v1::PurchaseOrder>(std::move(req), std::move(done), [&](auto... args) {
        pos_of(seq)->async()->GetPurchaseOrder(args...);
      });
    };
    issues["get-invoice"] = [&](int64_t seq, std::function<void(bool)> done) {
      auto req = std::make_unique<v1::GetInvoiceRequest>();
      req->set_account_id(account(seq));
      req->set_invoice_id("base");
      Send<v1::Invoice>(std::move(req), std::move(done), [&](auto... args) {
        invoices_of(seq)->async()->GetInvoice(args...);
      });
    };
    issues["invoice"] = [&](int64_t seq, std::function<void(bool)> done) {
      auto req = std::make_unique<v1::RecordInvoiceRequest>();
      req->set_account_id(account(seq));
      FillLoadInvoice(absl::StrCat("c", concurrency, "-", seq), seq,
                      req->mutable_invoice());
      Send<v1::Invoice>(std::move(req), std::move(done), [&](auto... args) {
        invoices_of(seq)->async()->RecordInvoice(args...);
      });
    };
    issues["create"] = [&](int64_t seq, std::function<void(bool)> done) {
      auto req = std::make_unique<v1::CreatePurchaseOrderRequest>();
      // Fresh ids spread over many accounts, to stay below the limit of
      // 100 active purchase orders per account.
      req->set_account_id(absl::StrCat(run, "-create-", seq % (accounts * 50)));
      *req->mutable_purchase_order() =
          LoadPurchaseOrder(absl::StrCat("po-", concurrency, "-", seq));
      Send<v1::PurchaseOrder>(std::move(req), std::move(done), [&](auto... args) {
        pos_of(seq)->async()->CreatePurchaseOrder(args...);
      });
    };
    std::vector<int> sizes;
    for (absl::string_view b : absl::StrSplit(batch_sizes, ',')) {
      int size = 0;
      if (!absl::SimpleAtoi(b, &size) || size < 1 || size > 1000) {
        std::fprintf(stderr, "--batch-sizes: 1 to 1000, not '%s'\n",
                     std::string(b).c_str());
        return 2;
      }
      sizes.push_back(size);
      const std::string name = absl::StrCat("batch-", size);
      issues[name] = [&, size](int64_t seq, std::function<void(bool)> done) {
        auto req = std::make_unique<v1::BatchRecordInvoicesRequest>();
        for (int k = 0; k < size; ++k) {
          const int64_t item = seq * size + k;
          v1::RecordInvoiceRequest* r = req->add_requests();
          r->set_account_id(account(item));
          FillLoadInvoice(absl::StrCat("b", concurrency, "-", size, "-", item),
                          item, r->mutable_invoice());
        }
        auto* ctx = new grpc::ClientContext;
        v1::BatchRecordInvoicesRequest* raw = req.release();
        auto* resp = new v1::BatchRecordInvoicesResponse;
        invoices_of(seq)->async()->BatchRecordInvoices(
            ctx, raw, resp, [=](grpc::Status status) {
              bool ok = status.ok() && resp->results_size() == size;
              if (status.ok()) {
                answer_bytes += static_cast<int64_t>(resp->ByteSizeLong());
              }
              for (const auto& r : resp->results()) {
                if (r.has_error()) {
                  ok = false;
                  NoteError(grpc::Status(
                      static_cast<grpc::StatusCode>(r.error().code()),
                      r.error().message()));
                }
              }
              NoteError(status);
              delete ctx;
              delete raw;
              delete resp;
              done(ok);
            });
      };
    }
    // Methods take turns in short windows, so that a machine whose speed
    // drifts (other tenants, frequency) shifts every method alike and the
    // same-run ratios stay meaningful.
    std::map<std::string, Samples> samples;
    for (int r = warmup_seconds > 0 ? -1 : 0; r < rounds; ++r) {
      // Round -1 is the warm-up: its figures are forgotten after it, its
      // request numbers go on (so that no invoice id repeats).
      if (r == 0) {
        for (auto& [name, warm] : samples) warm = Samples{.next_seq = warm.next_seq};
      }
      const absl::Duration window = r < 0 ? absl::Seconds(warmup_seconds)
                                          : duration / rounds;
      std::map<std::string, Samples>& into = samples;
      for (const std::string& m : methods) {
        if (m == "batch") {
          for (int size : sizes) {
            const std::string name = absl::StrCat("batch-", size);
            Run(concurrency, window, issues[name], server_pid, &into[name]);
          }
          continue;
        }
        if (issues.count(m) == 0) continue;
        Run(concurrency, window, issues[m], server_pid, &into[m]);
      }
    }
    // Rows in a fixed order, whatever order --methods named them in.
    const std::vector<std::pair<std::string, std::string>> rows = {
        {"info", "GetServerInfo"},
        {"get", "GetPurchaseOrder"},
        {"get-invoice", "GetInvoice"},
        {"invoice", "RecordInvoice"},
        {"create", "CreatePurchaseOrder"}};
    std::map<std::string, Figures> figures;
    for (const auto& [m, name] : rows) {
      if (!wanted(m.c_str())) continue;
      const Figures& f = figures[m] = Summarize(samples[m]);
      auto cpu = [](double us) {
        return us < 0 ? std::string("-") : absl::StrFormat("%.1f", us);
      };
      std::printf("%-22s %5d %12.0f %10.0f %10.0f %7lld %9s %9s %9.0f\n",
                  name.c_str(), concurrency, f.per_second, f.p50_us, f.p99_us,
                  static_cast<long long>(f.errors),
                  cpu(f.client_cpu_us).c_str(), cpu(f.server_cpu_us).c_str(),
                  f.answer_bytes);
      if (!f.first_error.empty()) {
        std::printf("  first error: %s\n", f.first_error.c_str());
      }
    }
    // Each write against the no-op, and against the read that answers
    // with the same message.
    auto ratios = [&](const std::string& base, const char* base_name,
                      const std::vector<std::pair<std::string, std::string>>&
                          writes) {
      if (!wanted(base.c_str()) || figures[base].per_second == 0) return;
      std::string line;
      for (const auto& [m, name] : writes) {
        if (!wanted(m.c_str())) continue;
        absl::StrAppendFormat(&line, " %s %.2fx", name,
                              figures[m].per_second / figures[base].per_second);
      }
      if (!line.empty()) {
        std::printf("ratio at %d to %s:%s\n", concurrency, base_name,
                    line.c_str());
      }
    };
    // Batches: a row per size, per batch, and the invoices each carried.
    if (wanted("batch")) {
      for (int size : sizes) {
        const std::string name = absl::StrCat("batch-", size);
        const Figures& f = figures[name] = Summarize(samples[name]);
        std::printf(
            "%-22s %5d %12.0f %10.0f %10.0f %7lld %9.1f %9s %9.0f  (%.0f "
            "invoices/s; cpu and bytes per invoice)\n",
            absl::StrCat("BatchRecordInvoices/", size).c_str(), concurrency,
            f.per_second, f.p50_us, f.p99_us, static_cast<long long>(f.errors),
            f.client_cpu_us / size,
            f.server_cpu_us < 0
                ? "-"
                : absl::StrFormat("%.1f", f.server_cpu_us / size).c_str(),
            f.answer_bytes / size, f.per_second * size);
        if (!f.first_error.empty()) {
          std::printf("  first error: %s\n", f.first_error.c_str());
        }
        if (wanted("invoice") && figures["invoice"].per_second > 0) {
          std::printf(
              "ratio at %d: invoices/s in batches of %d to "
              "RecordInvoice %.2fx\n",
              concurrency, size,
              f.per_second * size / figures["invoice"].per_second);
        }
      }
    }
    ratios("info", "GetServerInfo",
           {{"invoice", "RecordInvoice"}, {"create", "CreatePurchaseOrder"}});
    ratios("get-invoice", "GetInvoice", {{"invoice", "RecordInvoice"}});
    ratios("get", "GetPurchaseOrder", {{"create", "CreatePurchaseOrder"}});
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace poledger

int main(int argc, char** argv) {
  // Debian's Abseil checks every Mutex (gRPC's too) for deadlock cycles
  // unless told not to; the server does the same (server_main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return poledger::Main(argc, argv);
}
