// ShardNode runs a node of a shard with automatic failover: it ticks the
// Elector (server/elector.h) on etcd and turns each decision into the
// node's role.
//
//   - Someone else leads: it follows them (a synchronous Follower to the
//     leader's advertised address), and publishes its log's rank.
//   - It is elected: it takes over. It stops following, serves its log to
//     the followers under the new term, and appends the term's record (the
//     new leader's first record, ledger/term_record.h). Once that record is
//     committed (so is every record before it, the stored tail that the
//     last leader had not said was committed included), the ledger applies
//     that tail and the node takes writes.
//   - It led and no longer may (its lease lost or not renewed in time, or
//     it gave up because its store refuses writes): it answers every write
//     still waiting for its followers UNAVAILABLE at once and asks for a
//     restart, so that it comes back as a follower from what its log holds,
//     nothing in memory carried over.
//   - Its log leaves the leader's: it records where (a rewind request in
//     the data directory) and asks for a restart; the server rewinds the
//     log before it opens it (PrepareRewind, eventstore/log_rewind.h).
//
// Acknowledgements are fenced: the leader's commit position advances only
// while MayAcknowledge (a lease renewed recently enough), so a leader that
// was paused or cut off answers nothing after its lease could have run out.
// Every committed advance is saved now and then as the log's committed mark,
// which a restarting node shows before any leader tells it again.
//
// Thread safety: MayAcknowledge, GiveUp and replication() from any thread.
#ifndef POLEDGER_SERVER_SHARD_NODE_H_
#define POLEDGER_SERVER_SHARD_NODE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "eventstore/committed_store.h"
#include "eventstore/rocksdb_event_store.h"
#include "ledger/ledger.h"
#include "server/coordinator.h"
#include "server/elector.h"
#include "server/follower.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace poledger {

struct ServiceContext;

struct ShardNodeOptions {
  // Its name and address, the lease and the other timings.
  ElectorOptions elector;
  // How often the elector ticks.
  absl::Duration tick = absl::Milliseconds(100);
  // How long the term record may wait for its commit before the node gives
  // the leadership up.
  absl::Duration take_over_timeout = absl::Seconds(10);
  // A channel to a leader's address (with the TLS of --follow-tls-*).
  std::function<std::shared_ptr<grpc::Channel>(const std::string&)> connect;
  // Asks the process to restart (the server then stops and starts again
  // as a follower). Called at most once, from the node's threads.
  std::function<void(const std::string& why)> restart;
  // Where a rewind request is written (RewindRequestPath of the data dir).
  std::string rewind_request;
};

// The parts of the server a node drives; none owned, all outlive it.
struct ShardNodeParts {
  RocksDbEventStore* store = nullptr;
  CommittedStore* committed = nullptr;
  Ledger* ledger = nullptr;
  ServiceContext* context = nullptr;
};

class ShardNode {
 public:
  // Starts ticking. `coordinator` is owned.
  ShardNode(std::unique_ptr<Coordinator> coordinator, ShardNodeParts parts,
            ShardNodeOptions options);
  // Stops (as Stop).
  ~ShardNode();

  // Stops ticking and following, and gives the leadership up if held.
  // Idempotent.
  void Stop();

  // Whether this node leads with a lease fresh enough to acknowledge.
  bool MayAcknowledge() const { return elector_.MayAcknowledge(); }

  // This node can no longer write (its store refuses writes): it resigns
  // at the next tick, so that a healthy follower takes over.
  void GiveUp(std::string why) { elector_.GiveUp(std::move(why)); }

  // Times this node took over the leadership since it started.
  uint64_t takeovers() const {
    return takeovers_.load(std::memory_order_relaxed);
  }

  // The follower's status while it follows (GetServerInfo's replication).
  ReplicationStatus replication() const;

 private:
  enum class Phase { kFollowing, kTakingOver, kLeading, kDone };

  void Loop();
  // One tick's work after the elector's decision.
  void Act(const ElectorView& view);
  LogRank Rank() const;
  void Follow(const ElectorView& view);
  void StopFollowing();
  void BeginTakeOver(uint64_t term);
  // Whether the take-over finished (the node leads now).
  bool FinishTakeOver(uint64_t term);
  // Leaves the leadership (or the take-over) and asks for a restart.
  void StepDown(const std::string& why);
  void Restart(const std::string& why);
  void SaveCommittedMark();

  const std::unique_ptr<Coordinator> coordinator_;
  const ShardNodeParts parts_;
  const ShardNodeOptions options_;
  Elector elector_;
  absl::Notification stop_;
  std::thread thread_;
  std::atomic<uint64_t> takeovers_{0};

  // Only the tick thread.
  Phase phase_ = Phase::kFollowing;
  absl::Time take_over_started_;
  uint64_t saved_mark_ = 0;

  mutable absl::Mutex mu_;
  std::unique_ptr<Follower> follower_ ABSL_GUARDED_BY(mu_);
  std::string following_ ABSL_GUARDED_BY(mu_);
  // The term record's append: unset while it waits for its commit.
  std::optional<absl::StatusOr<AppendResult>> term_record_ ABSL_GUARDED_BY(mu_);
  bool restarting_ ABSL_GUARDED_BY(mu_) = false;
};

// The path of a data directory's rewind request.
std::string RewindRequestPath(const std::string& data_dir);

// If `data_dir` holds a rewind request, rewinds its log to it (the tail
// set aside under data_dir/set-aside/) and removes the request. Call before
// the log is opened. OK if there is no request.
absl::Status PrepareRewind(const std::string& data_dir);

}  // namespace poledger

#endif  // POLEDGER_SERVER_SHARD_NODE_H_
