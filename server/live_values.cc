// What a metrics scrape reads of a running server: the store's head and
// health, the ledger's snapshot and accounts, the streams, the role and the
// replication.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/decide.h"
#include "server/log_limit.h"
#include "server/server_impl.h"

namespace poledger {

LiveValues ReadLiveValues(const PoledgerServer::Impl& impl) {
  LiveValues v;
  v.head_position = impl.store->Head().position;
  const WriteHealth health = impl.store->write_health();
  v.write_failed = !health.status.ok();
  v.write_failures_by_cause = health.failures_by_cause;
  v.write_resumes = health.recoveries;
  v.log_lines_suppressed = log::SuppressedLines();
  v.streams_refused = impl.context.streams_refused.load();
  v.streams_revoked = impl.context.streams_revoked.load();
  v.streams_expired = impl.context.streams_expired.load();
  if (impl.scrubber != nullptr) v.scrub = impl.scrubber->report();
  const Ledger::SnapshotInfo snapshot = impl.ledger->last_snapshot();
  v.snapshot_position = snapshot.position;
  if (snapshot.position > 0) {
    v.snapshot_age_seconds =
        absl::ToDoubleSeconds(absl::Now() - snapshot.saved_at);
    v.snapshot_duration_seconds = absl::ToDoubleSeconds(snapshot.took);
  }
  const std::vector<std::string> accounts = impl.ledger->AccountIds();
  v.accounts = accounts.size();
  v.invoices_in_memory = impl.ledger->InvoicesInMemory();
  std::optional<absl::Time> oldest_due;
  for (const std::string& account : accounts) {
    (void)impl.ledger->Read(account, [&](const core::AccountState& s) {
      const std::optional<absl::Time> due = core::NextDue(s);
      if (due.has_value() &&
          (!oldest_due.has_value() || *due < *oldest_due)) {
        oldest_due = due;
      }
      for (const auto& [id, po] : s.purchase_orders) {
        std::string status = v1::PurchaseOrderStatus_Name(po.status);
        if (absl::StartsWith(status, "PURCHASE_ORDER_STATUS_")) {
          status.erase(0, 22);
        }
        ++v.purchase_orders_by_status[status];
      }
    });
  }
  if (oldest_due.has_value()) {
    v.scheduler_lag_seconds = std::max(
        0.0,
        absl::ToDoubleSeconds(impl.ledger->clock()->Now() - *oldest_due));
  }
  v.open_streams = impl.tail->subscribers();
  v.slowest_stream_lag_events = impl.tail->MaxLag();
  v.accounts_loaded = impl.ledger->AllLoaded();
  const RoleState role = impl.context.role.state();
  v.role = std::string(RoleName(role.kind));
  v.term = role.term;
  if (impl.shard_node != nullptr) v.takeovers = impl.shard_node->takeovers();
  if (impl.committed != nullptr) {
    v.replicated = true;
    v.committed_position = impl.committed->committed();
    v.uncommitted_records = impl.committed->uncommitted();
    const CommittedStore::WaitStats waits = impl.committed->wait_stats();
    v.commit_waits = waits.waits;
    v.commit_wait_seconds = absl::ToDoubleSeconds(waits.waited);
  }
  if (impl.tracker != nullptr) {
    v.sync_followers_needed = impl.tracker->sync_followers();
    for (const FollowerProgress& f : impl.tracker->followers()) {
      if (f.synchronous) ++v.sync_followers_connected;
    }
  }
  if (impl.follower != nullptr) {
    const ReplicationStatus r = impl.follower->status();
    v.replication_leader = r.leader;
    v.replication_lag_events = r.lag_events;
    v.replication_lag_seconds = absl::ToDoubleSeconds(r.lag);
    v.replication_following = r.state == FollowerState::kFollowing;
  }
  v.open_streams_by_method["EventLogService.SubscribeEvents"] =
      static_cast<uint64_t>(impl.context.open_event_streams.load());
  v.open_streams_by_method["NotificationService.SubscribeNotifications"] =
      static_cast<uint64_t>(impl.context.open_notification_streams.load());
  return v;
}

}  // namespace poledger
