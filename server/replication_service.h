// The leader's side of ReplicationService.Replicate (replication.proto):
// one stream per follower, sending the log's records after the follower's
// head with the committed position, and passing the follower's
// acknowledgements to the commit tracker.
#ifndef POLEDGER_SERVER_REPLICATION_SERVICE_H_
#define POLEDGER_SERVER_REPLICATION_SERVICE_H_

#include <atomic>

#include "eventstore/committed_store.h"
#include "eventstore/event_store.h"
#include "poledger/v1/replication.grpc.pb.h"
#include "server/commit_tracker.h"
#include "server/services.h"

namespace poledger {

class ReplicationServiceImpl final : public v1::ReplicationService::Service {
 public:
  // Calls get UNAVAILABLE (STARTING) until Attach.
  explicit ReplicationServiceImpl(ServiceContext* ctx) : ctx_(ctx) {}

  // `log` is the node's own log; `committed` shows it through the committed
  // position and `tracker` counts the followers (both null when the leader
  // does not wait for followers: everything stored is committed). None is
  // owned; all must outlive the service's calls. Call once.
  void Attach(EventStore* log, CommittedStore* committed,
              CommitTracker* tracker) {
    committed_ = committed;
    tracker_ = tracker;
    log_.store(log, std::memory_order_release);
  }
  // Ends every stream within a second (before the server shuts down).
  void Stop() { stopping_ = true; }

  grpc::Status Replicate(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ReplicateResponse, v1::ReplicateRequest>*
          stream) override;

 private:
  uint64_t Committed(const EventStore& log) const {
    return committed_ != nullptr ? committed_->committed()
                                 : log.Head().position;
  }

  ServiceContext* const ctx_;
  // Set once by Attach, before log_ (which publishes them).
  std::atomic<EventStore*> log_{nullptr};
  CommittedStore* committed_ = nullptr;
  CommitTracker* tracker_ = nullptr;
  std::atomic<bool> stopping_{false};
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_REPLICATION_SERVICE_H_
