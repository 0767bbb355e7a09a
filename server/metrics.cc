#include "server/metrics.h"

#include <chrono>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace poledger {
namespace {

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

// gRPC's status codes are absl's, number for number.
std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace

// The values read at scrape time: a registry of gauges set from LiveValues
// just before it is collected.
class LiveCollectable final : public prometheus::Collectable {
 public:
  LiveCollectable()
      : registry_(std::make_shared<prometheus::Registry>()),
        head_(Gauge("poledger_log_head_position",
                    "Position of the last record of the event log")),
        write_failed_(Gauge("poledger_eventstore_write_failed",
                            "1 while the store refuses every append: after a "
                            "full disk until space is freed, after another "
                            "I/O error until the server restarts")),
        write_failures_(prometheus::BuildCounter()
                            .Name("poledger_eventstore_write_failures_total")
                            .Help("Times the store started refusing writes, "
                                  "by cause (no_space, io_error, corruption, "
                                  "other)")
                            .Register(*registry_)),
        write_resumes_(prometheus::BuildCounter()
                           .Name("poledger_eventstore_write_resumes_total")
                           .Help("Times the store took writes again by itself "
                                 "after a full disk")
                           .Register(*registry_)
                           .Add({})),
        streams_refused_(prometheus::BuildCounter()
                             .Name("poledger_streams_refused_total")
                             .Help("Streams refused because their caller "
                                   "already had --max-streams-per-identity "
                                   "open")
                             .Register(*registry_)
                             .Add({})),
        streams_ended_(prometheus::BuildCounter()
                           .Name("poledger_streams_ended_total")
                           .Help("Streams the server ended: why=revoked (a "
                                 "policy reload took the caller's access), "
                                 "why=certificate_expired")
                           .Register(*registry_)),
        scrub_passes_(prometheus::BuildCounter()
                          .Name("poledger_scrub_passes_total")
                          .Help("Background scrubs of the whole log finished")
                          .Register(*registry_)
                          .Add({})),
        scrub_failures_(prometheus::BuildCounter()
                            .Name("poledger_scrub_failures_total")
                            .Help("Background scrubs that found the log "
                                  "damaged (the error line names the "
                                  "position)")
                            .Register(*registry_)
                            .Add({})),
        scrub_ok_(Gauge("poledger_scrub_last_ok",
                        "1 if the last scrub found the whole log intact, 0 "
                        "if it found a break (absent before the first)")),
        scrub_through_(Gauge("poledger_scrub_verified_through_position",
                             "The position the last scrub verified through")),
        scrub_time_(Gauge("poledger_scrub_last_finished_timestamp_seconds",
                          "When the last scrub finished (Unix time)")),
        log_suppressed_(prometheus::BuildCounter()
                            .Name("poledger_log_lines_suppressed_total")
                            .Help("Log lines left out by the repeat limit "
                                  "(a few a second for each event, method, "
                                  "code, reason and caller), by event")
                            .Register(*registry_)),
        snapshot_position_(Gauge("poledger_snapshot_position",
                                 "Log position of the last saved snapshot")),
        snapshot_age_events_(Gauge("poledger_snapshot_age_events",
                                   "Events appended since the last snapshot")),
        snapshot_age_seconds_(Gauge("poledger_snapshot_age_seconds",
                                    "Seconds since the last snapshot was "
                                    "saved")),
        snapshot_duration_(Gauge("poledger_snapshot_duration_seconds",
                                 "How long the last snapshot took")),
        accounts_(Gauge("poledger_accounts", "Accounts the ledger holds")),
        open_streams_(Gauge("poledger_open_streams",
                            "SubscribeEvents and SubscribeNotifications calls "
                            "open")),
        slowest_stream_lag_(Gauge(
            "poledger_stream_slowest_lag_events",
            "Records the slowest SubscribeEvents or SubscribeNotifications "
            "call is behind the log's head (written, or of no use to it)")),
        accounts_loaded_(Gauge("poledger_accounts_loaded",
                               "1 once every account is loaded after the "
                               "start (they load after SERVING)")),
        invoices_in_memory_(Gauge(
            "poledger_invoices_in_memory",
            "Invoice and credit memo entries held in memory: those changed "
            "since the last snapshot and those read back since (the rest are "
            "on disk)")),
        committed_position_(Gauge(
            "poledger_committed_position",
            "In a replicated shard: the last position durable on the leader "
            "and its --sync-followers (what clients may see)")),
        uncommitted_(Gauge("poledger_uncommitted_records",
                           "In a replicated shard: records stored here and not "
                           "committed yet")),
        commit_waits_(prometheus::BuildCounter()
                          .Name("poledger_commit_waits_total")
                          .Help("Appends that waited for their followers once "
                                "durable here")
                          .Register(*registry_)
                          .Add({})),
        commit_wait_seconds_(prometheus::BuildCounter()
                                 .Name("poledger_commit_wait_seconds_total")
                                 .Help("How long appends waited for their "
                                       "followers once durable here, in all")
                                 .Register(*registry_)
                                 .Add({})),
        sync_followers_(prometheus::BuildGauge()
                            .Name("poledger_sync_followers")
                            .Help("A leader with --sync-followers: synchronous "
                                  "followers needed per write, and connected")
                            .Register(*registry_)),
        takeovers_(prometheus::BuildCounter()
                       .Name("poledger_takeovers_total")
                       .Help("Times this node took over its shard's "
                             "leadership (automatic failover) since it "
                             "started")
                       .Register(*registry_)
                       .Add({})),
        term_(Gauge("poledger_term",
                    "The shard's leadership this server knows of (0: a "
                    "server on its own)")),
        role_(prometheus::BuildGauge()
                  .Name("poledger_role")
                  .Help("1 for what this server is in its shard now "
                        "(leader, replica), 0 for the others")
                  .Register(*registry_)),
        scheduler_lag_(Gauge("poledger_scheduler_lag_seconds",
                             "How far the clock is past the oldest expiry or "
                             "reminder still due (0: none overdue)")),
        replication_lag_events_(
            prometheus::BuildGauge()
                .Name("poledger_replication_lag_events")
                .Help("A read replica: records its leader has that it has "
                      "not copied yet")
                .Register(*registry_)),
        replication_lag_seconds_(
            prometheus::BuildGauge()
                .Name("poledger_replication_lag_seconds")
                .Help("A read replica: seconds since it last held its "
                      "leader's head (0 while it does)")
                .Register(*registry_)),
        replication_following_(
            prometheus::BuildGauge()
                .Name("poledger_replication_following")
                .Help("A read replica: 1 while a stream from its leader is "
                      "open")
                .Register(*registry_)),
        purchase_orders_(prometheus::BuildGauge()
                             .Name("poledger_purchase_orders")
                             .Help("Purchase orders by status")
                             .Register(*registry_)),
        streams_by_method_(prometheus::BuildGauge()
                               .Name("poledger_open_streams_by_method")
                               .Help("Streams open, by method")
                               .Register(*registry_)) {}

  void Set(std::function<LiveValues()> live) {
    absl::MutexLock lock(&mu_);
    live_ = std::move(live);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::MutexLock lock(&mu_);
    if (!live_) return {};
    const LiveValues v = live_();
    head_.Set(static_cast<double>(v.head_position));
    write_failed_.Set(v.write_failed ? 1 : 0);
    for (const char* cause : {"no_space", "io_error", "corruption", "other"}) {
      auto it = v.write_failures_by_cause.find(cause);
      CountTo(write_failures_.Add({{"cause", cause}}),
              it == v.write_failures_by_cause.end() ? 0 : it->second);
    }
    CountTo(write_resumes_, v.write_resumes);
    CountTo(scrub_passes_, v.scrub.passes);
    CountTo(scrub_failures_, v.scrub.failures);
    if (v.scrub.passes > 0) {
      scrub_ok_.Set(v.scrub.result.ok() ? 1 : 0);
      scrub_through_.Set(static_cast<double>(v.scrub.verified_through));
      scrub_time_.Set(absl::ToDoubleSeconds(v.scrub.finished -
                                            absl::UnixEpoch()));
    }
    CountTo(streams_refused_, v.streams_refused);
    CountTo(streams_ended_.Add({{"why", "revoked"}}), v.streams_revoked);
    CountTo(streams_ended_.Add({{"why", "certificate_expired"}}),
            v.streams_expired);
    for (const auto& [event, n] : v.log_lines_suppressed) {
      CountTo(log_suppressed_.Add({{"event", event}}), n);
    }
    snapshot_position_.Set(static_cast<double>(v.snapshot_position));
    snapshot_age_events_.Set(
        static_cast<double>(v.head_position - v.snapshot_position));
    snapshot_age_seconds_.Set(v.snapshot_age_seconds);
    snapshot_duration_.Set(v.snapshot_duration_seconds);
    accounts_.Set(static_cast<double>(v.accounts));
    open_streams_.Set(static_cast<double>(v.open_streams));
    scheduler_lag_.Set(v.scheduler_lag_seconds);
    term_.Set(static_cast<double>(v.term));
    CountTo(takeovers_, v.takeovers);
    if (v.replicated) {
      committed_position_.Set(static_cast<double>(v.committed_position));
      uncommitted_.Set(static_cast<double>(v.uncommitted_records));
      CountTo(commit_waits_, v.commit_waits);
      if (v.commit_wait_seconds > commit_wait_seconds_.Value()) {
        commit_wait_seconds_.Increment(v.commit_wait_seconds -
                                       commit_wait_seconds_.Value());
      }
    }
    if (v.sync_followers_needed > 0) {
      sync_followers_.Add({{"state", "needed"}})
          .Set(v.sync_followers_needed);
      sync_followers_.Add({{"state", "connected"}})
          .Set(v.sync_followers_connected);
    }
    for (const char* role : {"leader", "replica"}) {
      role_.Add({{"role", role}}).Set(v.role == role ? 1 : 0);
    }
    slowest_stream_lag_.Set(static_cast<double>(v.slowest_stream_lag_events));
    accounts_loaded_.Set(v.accounts_loaded ? 1 : 0);
    invoices_in_memory_.Set(static_cast<double>(v.invoices_in_memory));
    if (!v.replication_leader.empty()) {
      const std::map<std::string, std::string> leader = {
          {"leader", v.replication_leader}};
      replication_lag_events_.Add(leader).Set(
          static_cast<double>(v.replication_lag_events));
      replication_lag_seconds_.Add(leader).Set(v.replication_lag_seconds);
      replication_following_.Add(leader).Set(v.replication_following ? 1 : 0);
    }
    for (const auto& [method, n] : v.open_streams_by_method) {
      streams_by_method_.Add({{"method", method}}).Set(static_cast<double>(n));
    }
    for (const char* status : {"ACTIVE", "SUSPENDED", "EXPIRED"}) {
      auto it = v.purchase_orders_by_status.find(status);
      purchase_orders_.Add({{"status", status}})
          .Set(it == v.purchase_orders_by_status.end()
                   ? 0
                   : static_cast<double>(it->second));
    }
    return registry_->Collect();
  }

 private:
  // Counters the server keeps itself, brought up to its count.
  static void CountTo(prometheus::Counter& counter, uint64_t total) {
    const double now = static_cast<double>(total);
    if (now > counter.Value()) counter.Increment(now - counter.Value());
  }

  prometheus::Gauge& Gauge(const char* name, const char* help) {
    return prometheus::BuildGauge()
        .Name(name)
        .Help(help)
        .Register(*registry_)
        .Add({});
  }

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& head_;
  prometheus::Gauge& write_failed_;
  prometheus::Family<prometheus::Counter>& write_failures_;
  prometheus::Counter& write_resumes_;
  prometheus::Counter& streams_refused_;
  prometheus::Family<prometheus::Counter>& streams_ended_;
  prometheus::Counter& scrub_passes_;
  prometheus::Counter& scrub_failures_;
  prometheus::Gauge& scrub_ok_;
  prometheus::Gauge& scrub_through_;
  prometheus::Gauge& scrub_time_;
  prometheus::Family<prometheus::Counter>& log_suppressed_;
  prometheus::Gauge& snapshot_position_;
  prometheus::Gauge& snapshot_age_events_;
  prometheus::Gauge& snapshot_age_seconds_;
  prometheus::Gauge& snapshot_duration_;
  prometheus::Gauge& accounts_;
  prometheus::Gauge& open_streams_;
  prometheus::Gauge& slowest_stream_lag_;
  prometheus::Gauge& accounts_loaded_;
  prometheus::Gauge& invoices_in_memory_;
  prometheus::Gauge& committed_position_;
  prometheus::Gauge& uncommitted_;
  prometheus::Counter& commit_waits_;
  prometheus::Counter& commit_wait_seconds_;
  prometheus::Family<prometheus::Gauge>& sync_followers_;
  prometheus::Counter& takeovers_;
  prometheus::Gauge& term_;
  prometheus::Family<prometheus::Gauge>& role_;
  prometheus::Gauge& scheduler_lag_;
  prometheus::Family<prometheus::Gauge>& replication_lag_events_;
  prometheus::Family<prometheus::Gauge>& replication_lag_seconds_;
  prometheus::Family<prometheus::Gauge>& replication_following_;
  prometheus::Family<prometheus::Gauge>& purchase_orders_;
  prometheus::Family<prometheus::Gauge>& streams_by_method_;
  mutable absl::Mutex mu_;
  std::function<LiveValues()> live_ ABSL_GUARDED_BY(mu_);
};

struct ServerMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry =
      std::make_shared<prometheus::Registry>();
  std::shared_ptr<LiveCollectable> live = std::make_shared<LiveCollectable>();
  std::unique_ptr<prometheus::Exposer> exposer;
  absl::Mutex exposer_mu;

  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter()
          .Name("poledger_grpc_requests_total")
          .Help("gRPC calls finished, by method and status code")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& latency =
      prometheus::BuildHistogram()
          .Name("poledger_grpc_request_duration_seconds")
          .Help("gRPC call latency, from the request's arrival to its status")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& in_flight =
      prometheus::BuildGauge()
          .Name("poledger_grpc_in_flight_requests")
          .Help("gRPC calls in progress, by method")
          .Register(*registry);
  prometheus::Counter& appends =
      prometheus::BuildCounter()
          .Name("poledger_eventstore_appends_total")
          .Help("Append requests committed to the event log")
          .Register(*registry)
          .Add({});
  prometheus::Counter& events = prometheus::BuildCounter()
                                    .Name("poledger_eventstore_events_total")
                                    .Help("Records appended to the event log")
                                    .Register(*registry)
                                    .Add({});
  prometheus::Counter& bytes =
      prometheus::BuildCounter()
          .Name("poledger_eventstore_written_bytes_total")
          .Help("Bytes of the write batches committed (log, indexes)")
          .Register(*registry)
          .Add({});
  prometheus::Counter& failures =
      prometheus::BuildCounter()
          .Name("poledger_eventstore_commit_failures_total")
          .Help("Group commits whose write or sync failed")
          .Register(*registry)
          .Add({});
  prometheus::Histogram& batch =
      prometheus::BuildHistogram()
          .Name("poledger_eventstore_commit_batch_appends")
          .Help("Append requests per group commit")
          .Register(*registry)
          .Add({}, prometheus::Histogram::BucketBoundaries{
                       1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024});
  prometheus::Histogram& commit_seconds =
      prometheus::BuildHistogram()
          .Name("poledger_eventstore_commit_duration_seconds")
          .Help("Write and WAL sync of one group commit")
          .Register(*registry)
          .Add({}, LatencyBuckets());
};

namespace {

// Counts one call: in flight from its start; at its end, its latency and
// its status code.
class CallInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(ServerMetrics::Impl* m, std::string method)
      : m_(m),
        method_(std::move(method)),
        start_(std::chrono::steady_clock::now()),
        in_flight_(m->in_flight.Add({{"method", method_}})) {
    in_flight_.Increment();
  }

  ~CallInterceptor() override {
    in_flight_.Decrement();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
            .count();
    m_->latency.Add({{"method", method_}}, LatencyBuckets()).Observe(seconds);
    m_->requests.Add({{"method", method_}, {"code", CodeName(code_)}})
        .Increment();
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      code_ = methods->GetSendStatus().error_code();
    }
    methods->Proceed();
  }

 private:
  ServerMetrics::Impl* const m_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
  prometheus::Gauge& in_flight_;
  // A call that ends without a status (the client went away) counts as
  // CANCELLED.
  grpc::StatusCode code_ = grpc::StatusCode::CANCELLED;
};

class Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(ServerMetrics::Impl* m) : m_(m) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    std::string method = info->method() != nullptr ? info->method() : "";
    if (!method.empty() && method.front() == '/') method.erase(0, 1);
    return new CallInterceptor(m_, std::move(method));
  }

 private:
  ServerMetrics::Impl* const m_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Start(
    const std::string& listen) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->exposer = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "--metrics-listen: cannot listen on ", listen, ": ", e.what()));
  }
  impl->exposer->RegisterCollectable(impl->registry);
  impl->exposer->RegisterCollectable(impl->live);
  return std::unique_ptr<ServerMetrics>(new ServerMetrics(std::move(impl)));
}

ServerMetrics::ServerMetrics(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

ServerMetrics::~ServerMetrics() { StopServing(); }

int ServerMetrics::port() const {
  absl::MutexLock lock(&impl_->exposer_mu);
  if (impl_->exposer == nullptr) return 0;
  const std::vector<int> ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void ServerMetrics::SetLive(std::function<LiveValues()> live) {
  impl_->live->Set(std::move(live));
}

void ServerMetrics::StopServing() {
  std::unique_ptr<prometheus::Exposer> exposer;
  {
    absl::MutexLock lock(&impl_->exposer_mu);
    exposer = std::move(impl_->exposer);
  }
  exposer.reset();  // Joins its threads: no scrape runs after this.
  impl_->live->Set(nullptr);
}

void ServerMetrics::OnCommit(const CommitStats& stats) {
  if (!stats.ok) {
    impl_->failures.Increment();
    return;
  }
  impl_->appends.Increment(stats.appends);
  impl_->events.Increment(static_cast<double>(stats.events));
  impl_->bytes.Increment(static_cast<double>(stats.bytes));
  impl_->batch.Observe(stats.appends);
  impl_->commit_seconds.Observe(stats.write_seconds);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ServerMetrics::NewInterceptorFactory() {
  return std::make_unique<Factory>(impl_.get());
}

}  // namespace poledger
