#include "server/elector.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace poledger {

std::string LogRank::ToString() const {
  if (term == 0) return absl::StrCat(position);
  return absl::StrCat(position, " in term ", term);
}

Elector::Elector(Coordinator* coordinator, const Clock* clock,
                 ElectorOptions options)
    : coordinator_(coordinator), clock_(clock), options_(std::move(options)) {}

bool Elector::MayAcknowledge() const {
  absl::MutexLock lock(&mu_);
  return view_.leads && clock_->Now() - renewed_ < options_.fence_after;
}

void Elector::GiveUp(std::string why) {
  absl::MutexLock lock(&mu_);
  give_up_ = std::move(why);
}

ElectorView Elector::Become(bool leads, uint64_t term, std::string node,
                            std::string address, std::string why) {
  absl::MutexLock lock(&mu_);
  const bool changed = view_.leads != leads || view_.term != term ||
                       view_.leader_node != node;
  view_.leads = leads;
  view_.term = term;
  view_.leader_node = std::move(node);
  view_.leader_address = std::move(address);
  view_.change = "";
  ElectorView out = view_;
  if (changed) out.change = std::move(why);
  return out;
}

ElectorView Elector::Tick(LogRank durable_head) {
  const absl::Time now = clock_->Now();
  // Only candidates publish: a read replica's head must not hold back an
  // election it cannot win.
  if (options_.may_lead) {
    (void)coordinator_->PublishHead(options_.me.node, durable_head);
  }
  ElectorView current = view();
  if (current.leads) {
    std::string give_up;
    absl::Time renewed;
    {
      absl::MutexLock lock(&mu_);
      give_up = give_up_;
      renewed = renewed_;
    }
    if (!give_up.empty()) {
      (void)coordinator_->Resign();
      return Become(false, current.term, "", "",
                    absl::StrCat("gave the leadership up: ", give_up));
    }
    if (now - last_renew_attempt_ >= options_.renew_every) {
      last_renew_attempt_ = now;
      const absl::Status renewed_now = coordinator_->Renew();
      if (renewed_now.ok()) {
        absl::MutexLock lock(&mu_);
        renewed_ = now;
        renewed = now;
      } else if (absl::IsNotFound(renewed_now)) {
        return Become(false, current.term, "", "",
                      absl::StrCat("lost the lease: ", renewed_now.message()));
      }
    }
    if (now - renewed >= options_.fence_after) {
      (void)coordinator_->Resign();
      return Become(false, current.term, "", "",
                    absl::StrCat("could not renew the lease for ",
                                 absl::FormatDuration(now - renewed)));
    }
    return Become(true, current.term, options_.me.node, options_.me.address,
                  "");
  }
  absl::StatusOr<std::optional<Leadership>> leader = coordinator_->Leader();
  if (!leader.ok()) return current;  // Unknown: as it was.
  if (leader->has_value()) {
    nobody_since_.reset();
    const Leadership& l = **leader;
    last_leader_ = l.node;
    return Become(false, l.term, l.node, l.address,
                  absl::StrCat("following ", l.node, " (", l.address,
                               ") in term ", l.term));
  }
  if (!nobody_since_.has_value()) nobody_since_ = now;
  ElectorView nobody =
      Become(false, current.term, "", "", "nobody leads the shard");
  if (!options_.may_lead || now - *nobody_since_ < options_.settle) {
    return nobody;
  }
  // Only the most advanced node that is not the lost leader campaigns
  // (ties: the smaller name).
  absl::StatusOr<std::map<std::string, LogRank>> heads =
      coordinator_->Heads();
  if (!heads.ok()) return nobody;
  for (const auto& [node, head] : *heads) {
    if (node == options_.me.node || node == last_leader_) continue;
    if (head > durable_head ||
        (head == durable_head && node < options_.me.node)) {
      return nobody;
    }
  }
  absl::StatusOr<Leadership> led = coordinator_->Campaign(
      {options_.me, options_.lease, durable_head, last_leader_});
  if (!led.ok()) return nobody;
  {
    absl::MutexLock lock(&mu_);
    renewed_ = now;
  }
  last_renew_attempt_ = now;
  nobody_since_.reset();
  return Become(true, led->term, led->node, led->address,
                absl::StrCat("elected in term ", led->term, " at head ",
                             durable_head.ToString()));
}

}  // namespace poledger
