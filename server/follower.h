// Follower makes a server a read replica: it copies its leader's log
// through EventLogService.SubscribeEvents into the local store
// (EventStore::Replicate: same positions, same hashes, each record checked)
// and applies the copies to the ledger (Ledger::ApplyReplicated), so that
// every read and stream of the replica answers what the leader answered a
// moment before.
//
// At every connection it first checks that the two logs agree: the leader's
// hash at the replica's head must be the replica's (GetLogDigest). If it is
// not, or the leader's log is shorter, the follower stops for good with
// DATA_LOSS naming the first position where the logs differ (found by
// bisection) and calls on_fatal. Anything else (the leader down,
// restarting, a broken stream) is retried with backoff, resuming after the
// replica's head: nothing is copied twice and nothing is skipped.
//
// Thread safety: status() may be called from any thread.
#ifndef POLEDGER_SERVER_FOLLOWER_H_
#define POLEDGER_SERVER_FOLLOWER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "eventstore/event_store.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace poledger {

class Ledger;

enum class FollowerState {
  kConnecting,  // No stream from the leader (yet, or again).
  kFollowing,   // Copying the leader's log.
  kStopped,     // For good: the logs differ, or the copy did not apply.
};

// "connecting", "following" or "stopped".
const char* FollowerStateName(FollowerState state);

// Where a replica stands (GetServerInfo's Replication, the metrics).
struct ReplicationStatus {
  std::string leader;
  FollowerState state = FollowerState::kConnecting;
  uint64_t leader_head = 0;
  uint64_t lag_events = 0;
  absl::Duration lag = absl::ZeroDuration();
  std::string last_error;
};

struct FollowerOptions {
  // The leader's address, and the channel to it (with the client TLS
  // options: its identity needs the log access of the leader's policy).
  std::string leader;
  std::shared_ptr<grpc::Channel> channel;
  // Called once, on the follower's thread, when it stops for good.
  std::function<void(const absl::Status&)> on_fatal;
  // Records copied and applied together at most.
  size_t batch_records = 1000;
};

class Follower {
 public:
  // Starts following. `store` and `ledger` must outlive the follower; the
  // ledger must be open on `store`.
  Follower(EventStore* store, Ledger* ledger, FollowerOptions options);
  // Stops (as Stop).
  ~Follower();

  // Ends the stream and joins the threads. Idempotent.
  void Stop();

  ReplicationStatus status() const;

 private:
  // Connects, checks agreement and copies until the stream ends; returns
  // why it ended.
  absl::Status Session();
  // DATA_LOSS naming the first position where the leader's log differs
  // from the store's, or OK if the store's log is a prefix of the leader's.
  absl::Status CheckAgreement();
  // The thread that stores and applies what the session queues.
  void ApplyLoop();
  // Blocks until the queue is empty and nothing is being applied.
  void WaitUntilApplied();
  void Fail(const absl::Status& status);
  bool stopping() const { return stop_.HasBeenNotified(); }

  EventStore* const store_;
  Ledger* const ledger_;
  const FollowerOptions options_;
  absl::Notification stop_;

  mutable absl::Mutex mu_;
  std::deque<RecordedEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool applying_ ABSL_GUARDED_BY(mu_) = false;
  // Set when the follower stops for good.
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  // The call to the leader in progress (Stop and Fail cancel it).
  grpc::ClientContext* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  FollowerState state_ ABSL_GUARDED_BY(mu_) = FollowerState::kConnecting;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  uint64_t leader_head_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time caught_up_at_ ABSL_GUARDED_BY(mu_) = absl::Now();

  std::thread session_thread_;
  std::thread apply_thread_;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_FOLLOWER_H_
