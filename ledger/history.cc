// Rebuilding an account's past from the log alone: its state at a
// position, a purchase order's changes, the position at a time (ledger.h).
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/errors.h"
#include "ledger/ledger.h"

namespace poledger {

namespace {

// Replays the account's events from its first, in order, into `state`:
// stops before an event for which `stop_before` is true, and calls
// `applied` after each one. DATA_LOSS if an event does not decode or apply.
absl::Status ReplayAccount(
    const EventStore& store, const std::string& account_id,
    core::AccountState& state,
    const std::function<bool(const RecordedEvent&)>& stop_before,
    const std::function<void(const RecordedEvent&, const core::AccountState&)>&
        applied) {
  uint64_t next_version = 1;
  for (;;) {
    ASSIGN_OR_RETURN(
        std::vector<RecordedEvent> records,
        store.ReadStream(AccountStream(account_id), next_version, 1024));
    if (records.empty()) return absl::OkStatus();
    for (const RecordedEvent& r : records) {
      if (stop_before(r)) return absl::OkStatus();
      RETURN_IF_ERROR(ApplyRecord(state, r, nullptr).status());
      next_version = r.stream_version + 1;
      applied(r, state);
    }
  }
}

}  // namespace

absl::StatusOr<core::AccountState> RebuildAccountAt(
    const EventStore& store, const std::string& account_id, uint64_t position) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  core::AccountState state;
  state.account_id = account_id;
  RETURN_IF_ERROR(ReplayAccount(
      store, account_id, state,
      [position](const RecordedEvent& r) { return r.position > position; },
      [](const RecordedEvent&, const core::AccountState&) {}));
  return state;
}

absl::StatusOr<PurchaseOrderHistory> PurchaseOrderChanges(
    const EventStore& store, const std::string& account_id,
    const std::string& purchase_order_id, size_t limit) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  core::AccountState state;
  state.account_id = account_id;
  std::deque<PurchaseOrderChange> changes;
  bool truncated = false;
  bool existed = false;
  RETURN_IF_ERROR(ReplayAccount(
      store, account_id, state, [](const RecordedEvent&) { return false; },
      [&](const RecordedEvent& r, const core::AccountState& now) {
        // The purchase order's version is that of the last event that
        // touched it; a deletion takes it out of the state.
        auto it = now.purchase_orders.find(purchase_order_id);
        const bool exists = it != now.purchase_orders.end();
        if ((exists && it->second.version == r.stream_version) ||
            (existed && !exists)) {
          if (changes.size() == limit) {
            changes.pop_front();
            truncated = true;
          }
          changes.push_back({r.position, r.timestamp, r.event_type, r.actor});
        }
        existed = exists;
      }));
  if (changes.empty() && !truncated) {
    return absl::NotFoundError(
        absl::StrCat("purchase order ", core::Quote(purchase_order_id),
                     " has no history in account ", core::Quote(account_id)));
  }
  PurchaseOrderHistory out;
  out.changes.assign(changes.begin(), changes.end());
  out.truncated = truncated;
  return out;
}

absl::StatusOr<uint64_t> AccountPositionAt(const EventStore& store,
                                           const std::string& account_id,
                                           absl::Time time) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  uint64_t position = 0;
  uint64_t version = 1;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                     store.ReadStream(AccountStream(account_id), version, 1024));
    if (records.empty()) return position;
    for (const RecordedEvent& r : records) {
      if (r.timestamp > time) return position;
      position = r.position;
      version = r.stream_version + 1;
    }
  }
}

}  // namespace poledger
