#include "server/role.h"

#include <utility>

namespace poledger {

absl::string_view RoleName(RoleKind kind) {
  switch (kind) {
    case RoleKind::kLeader:
      return "leader";
    case RoleKind::kReplica:
      return "replica";
  }
  return "unknown";
}

void Role::Set(RoleState next, absl::string_view reason) {
  RoleState before;
  {
    absl::MutexLock lock(&mu_);
    before = state_;
    if (before.kind == next.kind && before.term == next.term &&
        before.leader == next.leader) {
      return;
    }
    state_ = next;
  }
  if (observer_) observer_(next, before, reason);
}

}  // namespace poledger
