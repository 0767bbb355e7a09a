// Follower makes a server follow its leader: it copies the leader's log
// through ReplicationService.Replicate into the local store
// (EventStore::Replicate: same positions, same hashes, each record checked),
// acknowledges each batch once it is durable (so that a leader with
// --sync-followers can count it), and applies to the ledger the records the
// leader says are committed (Ledger::ApplyReplicated), so that every read
// and stream of the follower answers what the leader answered a moment
// before, and nothing that a failover could take back.
//
// A synchronous follower stores a record only once the leader says it is
// committed or that an append ends at or after it (whole_through), so that
// its log never ends inside an append: a follower promoted to leader
// commits whole appends only. A read replica stores committed records
// only, so that its log is a prefix of any later leader's: pointed at a
// proxy that reaches whoever leads, it follows across failovers. It refuses
// a leader of an older term than one it has seen.
//
// At every connection the leader checks that the follower's head is a
// record of its log. If it is not, the follower finds the first position
// where the logs differ (bisection over GetLogDigest) and stops: with
// on_diverged set (a node of a shard with failover, which rewinds its log
// and follows again), it calls that with the position; otherwise it stops
// for good with DATA_LOSS naming it and calls on_fatal. Anything else (the leader down,
// restarting, a broken stream) is retried with backoff, resuming after the
// follower's head: nothing is copied twice and nothing is skipped.
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
#include "eventstore/committed_store.h"
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
  // This node's name, as the leader reports its followers.
  std::string node;
  // Whether the leader may count this follower's acknowledgements toward
  // --sync-followers (a read replica's are not counted).
  bool synchronous = false;
  // Called once, on the follower's thread, when it stops for good.
  std::function<void(const absl::Status&)> on_fatal;
  // If set, called once instead of on_fatal when the logs differ, with the
  // first position where they do.
  std::function<void(uint64_t)> on_diverged;
  // The term of the node's own log (its last term record): a leader of an
  // older term is refused.
  uint64_t term = 0;
  // Records copied and applied together at most.
  size_t batch_records = 1000;
};

class Follower {
 public:
  // Starts following. `store` is the node's log and `committed` shows it
  // through the committed position; the ledger must be open on
  // `committed`. None is owned; all must outlive the follower.
  Follower(EventStore* store, CommittedStore* committed, Ledger* ledger,
           FollowerOptions options);
  // Stops (as Stop).
  ~Follower();

  // Ends the stream and joins the threads. Idempotent.
  void Stop();

  ReplicationStatus status() const;

 private:
  // Connects, checks agreement and copies until the stream ends; returns
  // why it ended.
  absl::Status Session();
  // The first position where the leader's log differs from the store's, or
  // 0 if the store's log is a prefix of the leader's.
  absl::StatusOr<uint64_t> FirstDifference();
  // The thread that stores and acknowledges what the session queues.
  void StoreLoop();
  // The thread that applies what is stored, up to the leader's commit (so
  // that storing the next copy does not wait for applying this one).
  void CommitLoop();
  // Applies to the ledger the stored records up to the leader's commit.
  absl::Status ApplyCommitted();
  // Tells the leader (if a stream is open) what is stored durably.
  void Acknowledge(uint64_t durable);
  // Blocks until the queue is empty and nothing is being applied.
  void WaitUntilApplied();
  void Fail(const absl::Status& status);
  bool stopping() const { return stop_.HasBeenNotified(); }

  EventStore* const store_;
  CommittedStore* const committed_;
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
  // What the leader last said is committed.
  uint64_t leader_committed_ ABSL_GUARDED_BY(mu_) = 0;
  // Records through here may be stored: committed, or ending an append.
  uint64_t storable_ ABSL_GUARDED_BY(mu_) = 0;
  // The highest term seen: in the log, or of a leader.
  uint64_t term_ ABSL_GUARDED_BY(mu_) = 0;
  // The store holds the log through `stored_`, the ledger through
  // `applied_` (never past the leader's commit).
  uint64_t stored_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  // Writes an acknowledgement on the session's stream (unset between
  // sessions); held while writing.
  absl::Mutex ack_mu_;
  std::function<bool(uint64_t)> ack_ ABSL_GUARDED_BY(ack_mu_);
  absl::Time caught_up_at_ ABSL_GUARDED_BY(mu_) = absl::Now();

  std::thread session_thread_;
  std::thread store_thread_;
  std::thread commit_thread_;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_FOLLOWER_H_
