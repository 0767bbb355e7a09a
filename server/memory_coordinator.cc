#include "server/memory_coordinator.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace poledger {

absl::Status MemoryArbiter::CheckUpLocked() const {
  if (down_) return absl::UnavailableError("the coordinator is down");
  return absl::OkStatus();
}

void MemoryArbiter::ExpireLocked() {
  if (leader_.has_value() && clock_->Now() >= expires_) {
    leader_.reset();
    lease_ = 0;
  }
}

absl::StatusOr<Leadership> MemoryCoordinator::Campaign(const Candidacy& c) {
  const Leadership& me = c.me;
  const absl::Duration ttl = c.ttl;
  MemoryArbiter& a = *arbiter_;
  absl::MutexLock lock(&a.mu_);
  if (absl::Status up = a.CheckUpLocked(); !up.ok()) return up;
  a.ExpireLocked();
  if (a.leader_.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(a.leader_->node, " (", a.leader_->address,
                     ") leads in term ", a.leader_->term));
  }
  for (const auto& [node, head] : a.heads_) {
    if (node != me.node && node != c.lost_leader && head > c.head) {
      return absl::FailedPreconditionError(absl::StrCat(
          node, " is ahead: it stores through ", head.ToString(),
          ", this node ", c.head.ToString()));
    }
  }
  Leadership led = me;
  led.term = ++a.term_;
  a.leader_ = led;
  a.lease_ = a.next_lease_++;
  a.ttl_ = ttl;
  a.expires_ = a.clock_->Now() + ttl;
  absl::MutexLock mine(&mu_);
  lease_ = a.lease_;
  return led;
}

absl::Status MemoryCoordinator::Renew() {
  MemoryArbiter& a = *arbiter_;
  absl::MutexLock lock(&a.mu_);
  if (absl::Status up = a.CheckUpLocked(); !up.ok()) return up;
  a.ExpireLocked();
  absl::MutexLock mine(&mu_);
  if (lease_ == 0 || a.lease_ != lease_) {
    lease_ = 0;
    return absl::NotFoundError("this node's lease is gone");
  }
  a.expires_ = a.clock_->Now() + a.ttl_;
  return absl::OkStatus();
}

absl::Status MemoryCoordinator::Resign() {
  MemoryArbiter& a = *arbiter_;
  absl::MutexLock lock(&a.mu_);
  if (absl::Status up = a.CheckUpLocked(); !up.ok()) return up;
  absl::MutexLock mine(&mu_);
  if (lease_ != 0 && a.lease_ == lease_) {
    a.leader_.reset();
    a.lease_ = 0;
  }
  lease_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Leadership>> MemoryCoordinator::Leader() {
  MemoryArbiter& a = *arbiter_;
  absl::MutexLock lock(&a.mu_);
  if (absl::Status up = a.CheckUpLocked(); !up.ok()) return up;
  a.ExpireLocked();
  return a.leader_;
}

absl::StatusOr<uint64_t> MemoryCoordinator::Term() {
  MemoryArbiter& a = *arbiter_;
  absl::MutexLock lock(&a.mu_);
  if (absl::Status up = a.CheckUpLocked(); !up.ok()) return up;
  return a.term_;
}

absl::Status MemoryCoordinator::PublishHead(const std::string& node,
                                            LogRank head) {
  MemoryArbiter& a = *arbiter_;
  absl::MutexLock lock(&a.mu_);
  if (absl::Status up = a.CheckUpLocked(); !up.ok()) return up;
  a.heads_[node] = head;
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, LogRank>> MemoryCoordinator::Heads() {
  MemoryArbiter& a = *arbiter_;
  absl::MutexLock lock(&a.mu_);
  if (absl::Status up = a.CheckUpLocked(); !up.ok()) return up;
  return a.heads_;
}

}  // namespace poledger
