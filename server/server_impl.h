// PoledgerServer's parts (server.h), shared by the files that build, run
// and report on them: server.cc (start and stop), live_values.cc (what the
// metrics read) and server_options.cc (checks of the options).
#ifndef POLEDGER_SERVER_SERVER_IMPL_H_
#define POLEDGER_SERVER_SERVER_IMPL_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "eventstore/committed_store.h"
#include "eventstore/rocksdb_event_store.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server.h"
#include "ledger/clock.h"
#include "ledger/ledger.h"
#include "server/commit_tracker.h"
#include "server/follower.h"
#include "server/http_gateway.h"
#include "server/log.h"
#include "server/log_tail.h"
#include "server/metrics.h"
#include "server/replication_service.h"
#include "server/scrubber.h"
#include "server/server.h"
#include "server/services.h"
#include "server/shard_node.h"
#include "server/tls.h"
#include "server/write_deadline.h"

namespace poledger {

struct PoledgerServer::Impl {
  // First: it outlives the store and the gRPC server, which call into it.
  std::unique_ptr<ServerMetrics> metrics;
  // Health, which the store's callbacks set: declared before the store so
  // that it outlives it; closed_ once the listeners are gone.
  absl::Mutex health_mu;
  bool ready_ ABSL_GUARDED_BY(health_mu) = false;
  bool writable_ ABSL_GUARDED_BY(health_mu) = true;
  bool health_closed_ ABSL_GUARDED_BY(health_mu) = false;
  absl::Time write_failed_at ABSL_GUARDED_BY(health_mu);
  ServerOptions options;
  std::unique_ptr<Clock> clock;
  ManualClock* manual_clock = nullptr;
  std::unique_ptr<RocksDbEventStore> store;
  // In a replicated shard (a leader with sync followers, or a follower):
  // the store as clients may see it, through the committed position, and
  // the leader's count of its followers.
  std::unique_ptr<CommittedStore> committed;
  std::unique_ptr<CommitTracker> tracker;
  // Answers writes still waiting for followers at their deadline.
  std::unique_ptr<DeadlineTimer> deadline_timer;
  // What the ledger, the streams and every client read.
  EventStore* log() const {
    return committed != nullptr ? committed.get()
                                : static_cast<EventStore*>(store.get());
  }
  // The personal data keys, before the ledger that uses them.
  std::unique_ptr<PersonalData> personal_data;
  std::unique_ptr<Ledger> ledger;
  // A read replica's: destroyed before the ledger and the store it feeds.
  std::unique_ptr<Follower> follower;
  // A node of a shard with failover: likewise. shard_node_ptr is set once
  // it runs (the commit fence reads it from gRPC threads).
  std::unique_ptr<ShardNode> shard_node;
  std::atomic<ShardNode*> shard_node_ptr{nullptr};
  bool failover() const { return !options.etcd_endpoints.empty(); }
  std::unique_ptr<LogTail> tail;
  // Reads the store: stopped before it closes.
  std::unique_ptr<Scrubber> scrubber;
  ServiceContext context;
  absl::Notification shutting_down;
  absl::Notification shut_down;
  std::unique_ptr<PurchaseOrderServiceImpl> purchase_orders;
  std::unique_ptr<InvoiceServiceImpl> invoices;
  std::unique_ptr<NotificationServiceImpl> notifications;
  std::unique_ptr<EventLogServiceImpl> event_log;
  std::unique_ptr<AdminServiceImpl> admin;
  std::unique_ptr<ReplicationServiceImpl> replication;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<grpc::Server> health_server;
  std::unique_ptr<ServerTls> tls;
  // Calls into `server` on its in-process channel: stopped before it.
  std::unique_ptr<HttpGateway> http;
  int port = 0;
  int health_port = 0;

  // Health on every listener: SERVING once started, until shutdown, while
  // the store takes writes (reads and streams go on meanwhile). The
  // service kLeaderHealthService is SERVING only while, besides, this
  // server leads: a proxy sends writes where it passes.
  void SetReady(bool ready) {
    absl::MutexLock lock(&health_mu);
    ready_ = ready;
    PublishHealthLocked();
  }
  void SetWritable(bool writable) {
    absl::MutexLock lock(&health_mu);
    writable_ = writable;
    PublishHealthLocked();
  }
  // After shutdown the store may still report (its resume thread ends
  // with it): the listeners are gone by then.
  void CloseHealth() {
    absl::MutexLock lock(&health_mu);
    health_closed_ = true;
  }
  // After a role change.
  void PublishHealth() {
    absl::MutexLock lock(&health_mu);
    PublishHealthLocked();
  }
  void PublishHealthLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_mu) {
    if (health_closed_ || server == nullptr) return;
    const bool serving = ready_ && writable_;
    const bool leads = serving && context.role.is_leader();
    for (grpc::Server* s : {server.get(), health_server.get()}) {
      if (s == nullptr) continue;
      s->GetHealthCheckService()->SetServingStatus(serving);
      s->GetHealthCheckService()->SetServingStatus(kLeaderHealthService,
                                                   leads);
    }
  }
  // The store's on_write_health: one error line when writes stop, one
  // when they resume, and health NOT_SERVING in between.
  void OnWriteHealth(const absl::Status& s) {
    absl::Duration refused;
    {
      absl::MutexLock lock(&health_mu);
      if (!s.ok()) {
        write_failed_at = absl::Now();
      } else {
        refused = absl::Now() - write_failed_at;
      }
    }
    // A leader that cannot write lets a healthy follower take over (it
    // starts again as a follower, its elector afresh).
    if (!s.ok() && context.role.is_leader()) {
      if (ShardNode* node = shard_node_ptr.load(std::memory_order_acquire)) {
        node->GiveUp(absl::StrCat("the event log refuses writes: ",
                                  s.message()));
      }
    }
    if (!s.ok()) {
      log::Error("storage_failed",
                 absl::StrCat("the event log refuses writes: ", s.message()),
                 {{"cause", std::string(s.message())}});
    } else {
      log::Warning("storage_resumed",
                   absl::StrCat("the event log takes writes again after ",
                                absl::FormatDuration(refused)),
                   {{"refused_seconds", absl::ToDoubleSeconds(refused)}});
    }
    SetWritable(s.ok());
  }
  std::thread scheduler;
  absl::Mutex shutdown_mu;
  bool shutdown_started = false;
};

// What a metrics scrape reads of a running server.
LiveValues ReadLiveValues(const PoledgerServer::Impl& impl);

// --node-name, or this host's name and the port it serves.
std::string NodeName(const ServerOptions& options, int port);

}  // namespace poledger

#endif  // POLEDGER_SERVER_SERVER_IMPL_H_
