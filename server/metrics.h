// Prometheus metrics of the server, served at /metrics by prometheus-cpp's
// exposer (--metrics-listen). Three kinds of values:
//   - per gRPC method: requests by status code, latency, calls in flight
//     (a server interceptor);
//   - per group commit of the event store: appends, events, bytes, batch
//     size, write-and-sync latency (the store's on_commit hook);
//   - read at each scrape: log head, snapshot position, age and duration,
//     the sticky write error, accounts and purchase orders by status, open
//     streams.
//
// Thread safety: every method is safe for concurrent use.
#ifndef POLEDGER_SERVER_METRICS_H_
#define POLEDGER_SERVER_METRICS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "eventstore/rocksdb_event_store.h"
#include "server/scrubber.h"
#include "grpcpp/support/server_interceptor.h"

namespace poledger {

// What a scrape reads from the server.
struct LiveValues {
  uint64_t head_position = 0;
  // 1 while the store refuses writes; the times it started to, by cause
  // (WriteHealth), and the times it resumed by itself.
  bool write_failed = false;
  std::map<std::string, uint64_t> write_failures_by_cause;
  uint64_t write_resumes = 0;
  // Streams refused for the per-caller limit; ended because their caller
  // lost its access (a policy reload) or its certificate expired.
  uint64_t streams_refused = 0;
  uint64_t streams_revoked = 0;
  uint64_t streams_expired = 0;
  // The background scrub's findings (passes == 0: none yet, or off).
  ScrubReport scrub;
  // Log lines left out by the repeat limit (log_limit.h), by event.
  std::map<std::string, uint64_t> log_lines_suppressed;
  uint64_t snapshot_position = 0;
  double snapshot_age_seconds = 0;  // Since it was saved; 0 without one.
  double snapshot_duration_seconds = 0;
  uint64_t accounts = 0;
  std::map<std::string, uint64_t> purchase_orders_by_status;
  uint64_t open_streams = 0;
  std::map<std::string, uint64_t> open_streams_by_method;
  // Records the slowest stream is behind the log's head.
  uint64_t slowest_stream_lag_events = 0;
  // Whether every account listed at start is loaded.
  bool accounts_loaded = false;
  // How far the clock is past the oldest expiry or reminder still due.
  double scheduler_lag_seconds = 0;
  // Invoice entries the ledger holds in memory (Ledger::InvoicesInMemory).
  uint64_t invoices_in_memory = 0;
  // What the server is in its shard ("leader", "replica") and its term.
  std::string role;
  uint64_t term = 0;
  // Times this node took over its shard's leadership (failover) since it
  // started.
  uint64_t takeovers = 0;
  // In a replicated shard (a leader with --sync-followers, or a follower):
  // the committed position, the records stored and not committed yet, and
  // the writes that waited for their commit (how many, how long in all).
  bool replicated = false;
  uint64_t committed_position = 0;
  uint64_t uncommitted_records = 0;
  uint64_t commit_waits = 0;
  double commit_wait_seconds = 0;
  // A leader with --sync-followers: how many synchronous followers each
  // write needs, and how many are connected.
  int sync_followers_needed = 0;
  int sync_followers_connected = 0;
  // A read replica's leader ("" on a leader: no replication samples), how
  // far behind it is, and whether a stream from the leader is open.
  std::string replication_leader;
  uint64_t replication_lag_events = 0;
  double replication_lag_seconds = 0;
  bool replication_following = false;
};

class ServerMetrics {
 public:
  // Listens at `listen` (host:port; port 0 picks one).
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Start(
      const std::string& listen);
  ~ServerMetrics();

  int port() const;

  // Sets what each scrape reads (until then those values are absent).
  void SetLive(std::function<LiveValues()> live);
  // Stops serving scrapes (before what SetLive reads goes away).
  void StopServing();

  // The event store's on_commit hook.
  void OnCommit(const CommitStats& stats);

  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  NewInterceptorFactory();

  struct Impl;

 private:
  explicit ServerMetrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_METRICS_H_
