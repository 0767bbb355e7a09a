// CommitTracker is the leader's count of its followers: each follower
// reports the last position it stores durably, and a record is committed
// once the leader and `sync_followers` of its synchronous followers store
// it. With more synchronous followers than needed, the fastest ones count,
// so one that falls behind or goes away is replaced at once; with fewer,
// the commit waits (never falling back to the leader alone).
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_COMMIT_TRACKER_H_
#define POLEDGER_SERVER_COMMIT_TRACKER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace poledger {

// One follower as the leader sees it (GetServerInfo, metrics).
struct FollowerProgress {
  std::string node;
  std::string peer;  // Its address, as the leader sees the connection.
  bool synchronous = false;
  uint64_t durable_position = 0;
  absl::Time last_ack = absl::InfinitePast();
};

class CommitTracker {
 public:
  // `on_committed` is called with each new committed position, on the
  // thread whose acknowledgement advanced it, under no lock of the
  // tracker's.
  CommitTracker(int sync_followers,
                std::function<void(uint64_t)> on_committed);

  int sync_followers() const { return sync_followers_; }

  // A follower's stream opened; returns its id for Ack and Leave.
  int Join(const FollowerProgress& follower);
  // The follower `id` stores through `durable_position`.
  void Ack(int id, uint64_t durable_position, absl::Time now);
  // Its stream ended.
  void Leave(int id);

  uint64_t committed() const;
  std::vector<FollowerProgress> followers() const;
  // Why `position` is not committed: how many synchronous followers it
  // needs, and where each connected one stands.
  std::string Shortfall(uint64_t position, absl::Time now) const;

 private:
  // The position that sync_followers_ synchronous followers store.
  uint64_t QuorumLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const int sync_followers_;
  const std::function<void(uint64_t)> on_committed_;
  mutable absl::Mutex mu_;
  int next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int, FollowerProgress> followers_ ABSL_GUARDED_BY(mu_);
  uint64_t committed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_COMMIT_TRACKER_H_
