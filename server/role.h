// Role is what a server is in its shard right now, and under which term:
// the one answer that the services (who takes writes), the scheduler (who
// ticks), the metrics and GetServerInfo read. It changes at runtime (a
// follower promoted, a leader that steps down), each change with a reason
// that the server logs.
//
// A term numbers the leaderships of a shard: 0 for a server on its own, and
// under failover the term a leader was elected for.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_ROLE_H_
#define POLEDGER_SERVER_ROLE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace poledger {

enum class RoleKind {
  // Takes writes and runs the scheduler.
  kLeader,
  // A read replica: copies its leader's log, takes no writes.
  kReplica,
};

// "leader" or "replica": the word of GetServerInfo, metrics and logs.
absl::string_view RoleName(RoleKind kind);

struct RoleState {
  RoleKind kind = RoleKind::kLeader;
  uint64_t term = 0;
  // Where writes go: the leader's address ("" on the leader itself, or
  // while no leader is known).
  std::string leader;
};

class Role {
 public:
  // Called after every change, with the state before it and the reason,
  // under no lock of the Role's.
  using Observer = std::function<void(const RoleState& now,
                                      const RoleState& before,
                                      absl::string_view reason)>;

  explicit Role(RoleState initial = {}) : state_(std::move(initial)) {}

  RoleState state() const {
    absl::MutexLock lock(&mu_);
    return state_;
  }
  bool is_leader() const {
    absl::MutexLock lock(&mu_);
    return state_.kind == RoleKind::kLeader;
  }
  // Sets the state (and tells the observer, if it changed).
  void Set(RoleState next, absl::string_view reason);
  // Sets the observer; call before anything calls Set.
  void OnChange(Observer observer) { observer_ = std::move(observer); }

 private:
  mutable absl::Mutex mu_;
  RoleState state_ ABSL_GUARDED_BY(mu_);
  Observer observer_;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_ROLE_H_
