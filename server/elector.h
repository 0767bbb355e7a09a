// Elector decides, tick by tick, what this node is in its shard, from the
// Coordinator's leader key and the nodes' published heads:
//   - nobody leads: after `settle` (so that every live node has published
//     the head it will keep), the most advanced node that may lead
//     campaigns; it leads under the term the campaign returns;
//   - this node leads: it renews its lease every `renew_every`; it stops
//     acknowledging (MayAcknowledge) once its last successful renewal is
//     `fence_after` old, before the lease can run out at the arbiter, so
//     that a paused or cut-off leader never acknowledges alongside its
//     successor; a lost lease or GiveUp (it can no longer write) makes it
//     step down at once;
//   - someone else leads: it follows them.
//
// Pure decision logic on a Clock and a Coordinator: the server runs Tick
// on a thread; tests run it under a ManualClock against a
// MemoryCoordinator, where every interleaving can be replayed.
//
// Thread safety: Tick from one thread; MayAcknowledge, GiveUp and view
// from any.
#ifndef POLEDGER_SERVER_ELECTOR_H_
#define POLEDGER_SERVER_ELECTOR_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ledger/clock.h"
#include "server/coordinator.h"

namespace poledger {

struct ElectorOptions {
  // This node's name and address (the term is the arbiter's to give).
  Leadership me;
  // The leader key's lease.
  absl::Duration lease = absl::Seconds(10);
  // How often a leader renews it.
  absl::Duration renew_every = absl::Seconds(2);
  // A leader acknowledges nothing once its last successful renewal is this
  // old; must be under `lease` (the margin covers clock rate differences
  // and the renewal's own round trip).
  absl::Duration fence_after = absl::Seconds(8);
  // How long nobody must lead before this node compares heads and
  // campaigns.
  absl::Duration settle = absl::Seconds(1);
  // Whether this node may lead (a read replica only follows).
  bool may_lead = true;
};

// What the node is after a tick.
struct ElectorView {
  bool leads = false;
  uint64_t term = 0;
  // The leader's node name and address ("" while nobody is known to lead).
  std::string leader_node;
  std::string leader_address;
  // Why it changed at this tick ("" if it did not).
  std::string change;
};

class Elector {
 public:
  // `coordinator` and `clock` are not owned and must outlive the elector.
  Elector(Coordinator* coordinator, const Clock* clock,
          ElectorOptions options);

  // One step, with this node's durable head's rank (published for the
  // others).
  ElectorView Tick(LogRank durable_head);

  // Whether this node leads and its lease is fresh enough to acknowledge.
  bool MayAcknowledge() const;

  // This node can no longer write: it resigns at its next tick.
  void GiveUp(std::string why);

  ElectorView view() const {
    absl::MutexLock lock(&mu_);
    return view_;
  }

 private:
  // Sets the view; returns it with `change` set if it changed.
  ElectorView Become(bool leads, uint64_t term, std::string node,
                     std::string address, std::string why);

  Coordinator* const coordinator_;
  const Clock* const clock_;
  const ElectorOptions options_;

  // Only Tick's thread.
  std::optional<absl::Time> nobody_since_;
  std::string last_leader_;
  absl::Time last_renew_attempt_ = absl::InfinitePast();

  mutable absl::Mutex mu_;
  ElectorView view_ ABSL_GUARDED_BY(mu_);
  // When the last successful renewal (or the campaign) was sent.
  absl::Time renewed_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string give_up_ ABSL_GUARDED_BY(mu_);
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_ELECTOR_H_
