#include "server/commit_tracker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace poledger {

CommitTracker::CommitTracker(int sync_followers,
                             std::function<void(uint64_t)> on_committed)
    : sync_followers_(sync_followers), on_committed_(std::move(on_committed)) {}

int CommitTracker::Join(const FollowerProgress& follower) {
  absl::MutexLock lock(&mu_);
  const int id = next_id_++;
  followers_[id] = follower;
  return id;
}

void CommitTracker::Ack(int id, uint64_t durable_position, absl::Time now) {
  uint64_t advanced = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = followers_.find(id);
    if (it == followers_.end()) return;
    it->second.durable_position =
        std::max(it->second.durable_position, durable_position);
    it->second.last_ack = now;
    const uint64_t quorum = QuorumLocked();
    if (quorum > committed_) advanced = committed_ = quorum;
  }
  if (advanced != 0 && on_committed_) on_committed_(advanced);
}

void CommitTracker::Leave(int id) {
  absl::MutexLock lock(&mu_);
  followers_.erase(id);
}

uint64_t CommitTracker::committed() const {
  absl::MutexLock lock(&mu_);
  return committed_;
}

std::vector<FollowerProgress> CommitTracker::followers() const {
  absl::MutexLock lock(&mu_);
  std::vector<FollowerProgress> out;
  for (const auto& [id, f] : followers_) out.push_back(f);
  return out;
}

std::string CommitTracker::Shortfall(uint64_t position, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> connected;
  for (const auto& [id, f] : followers_) {
    if (!f.synchronous) continue;
    connected.push_back(absl::StrCat(
        f.node, " stores through ", f.durable_position,
        f.last_ack == absl::InfinitePast()
            ? ", no acknowledgement yet"
            : absl::StrCat(", last acknowledged ",
                           absl::FormatDuration(absl::Trunc(
                               now - f.last_ack, absl::Milliseconds(1))),
                           " ago")));
  }
  return absl::StrCat(
      "position ", position, " is durable on the leader but not on ",
      sync_followers_, " synchronous follower(s): ",
      connected.empty() ? "none is connected"
                        : absl::StrJoin(connected, "; "));
}

uint64_t CommitTracker::QuorumLocked() const {
  if (sync_followers_ <= 0) return 0;
  std::vector<uint64_t> durable;
  for (const auto& [id, f] : followers_) {
    if (f.synchronous) durable.push_back(f.durable_position);
  }
  if (static_cast<int>(durable.size()) < sync_followers_) return 0;
  std::nth_element(durable.begin(), durable.begin() + (sync_followers_ - 1),
                   durable.end(), std::greater<uint64_t>());
  return durable[sync_followers_ - 1];
}

}  // namespace poledger
