// MemoryCoordinator is a Coordinator in memory, on a clock of the caller's
// (a ManualClock in tests: leases expire when the test moves time), for
// failover logic run deterministically. Several nodes share one
// MemoryArbiter, each through a MemoryCoordinator of its own (a lease
// belongs to the coordinator that took it), as nodes share one etcd.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_MEMORY_COORDINATOR_H_
#define POLEDGER_SERVER_MEMORY_COORDINATOR_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "ledger/clock.h"
#include "server/coordinator.h"

namespace poledger {

// The shared state: the leader key, its lease, the term, the heads.
class MemoryArbiter {
 public:
  // `clock` is not owned and must outlive the arbiter.
  explicit MemoryArbiter(const Clock* clock) : clock_(clock) {}

  // While down, every call answers UNAVAILABLE (etcd unreachable).
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }

 private:
  friend class MemoryCoordinator;

  absl::Status CheckUpLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the leader key if its lease ran out.
  void ExpireLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  absl::Mutex mu_;
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<Leadership> leader_ ABSL_GUARDED_BY(mu_);
  // The holder's lease: its id and when it runs out.
  uint64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time expires_ ABSL_GUARDED_BY(mu_);
  absl::Duration ttl_ ABSL_GUARDED_BY(mu_);
  uint64_t next_lease_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t term_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, LogRank> heads_ ABSL_GUARDED_BY(mu_);
};

class MemoryCoordinator : public Coordinator {
 public:
  // `arbiter` is not owned and must outlive the coordinator.
  explicit MemoryCoordinator(MemoryArbiter* arbiter) : arbiter_(arbiter) {}

  absl::StatusOr<Leadership> Campaign(const Candidacy& c) override;
  absl::Status Renew() override;
  absl::Status Resign() override;
  absl::StatusOr<std::optional<Leadership>> Leader() override;
  absl::StatusOr<uint64_t> Term() override;
  absl::Status PublishHead(const std::string& node, LogRank head) override;
  absl::StatusOr<std::map<std::string, LogRank>> Heads() override;

 private:
  MemoryArbiter* const arbiter_;
  absl::Mutex mu_;
  // The lease this coordinator took (0: none).
  uint64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_MEMORY_COORDINATOR_H_
