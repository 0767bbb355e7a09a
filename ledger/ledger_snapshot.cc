// The Ledger's snapshots: an exact cut of every changed account at one
// log position, saved while commands go on (copy on write: an account
// changed before the cut has saved it is saved first as it was), and the
// saved invoices evicted from memory after (ledger.h).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/thread_name.h"
#include "core/decide.h"
#include "core/errors.h"
#include "ledger/ledger.h"
#include "ledger/record_applier.h"
#include "poledger/v1/snapshot.pb.h"

namespace poledger {

void Ledger::SaveIntoCutLocked(Account* account) {
  if (cut_ == nullptr) return;
  // A snapshot in progress that has not saved this account yet saves it
  // now, as it is at the snapshot's position.
  absl::MutexLock cut_lock(&cut_->mu);
  auto unsaved = cut_->unsaved.find(account);
  if (unsaved != cut_->unsaved.end()) {
    AppendParts(*account, unsaved->second, cut_->copied);
    cut_->unsaved.erase(unsaved);
  }
}

void Ledger::MarkChanged(Account* account,
                         const std::vector<std::string>& invoices) {
  dirty_[account].insert(invoices.begin(), invoices.end());
}

size_t Ledger::AppendParts(const Account& account,
                           const absl::flat_hash_set<std::string>& invoices,
                           std::vector<SnapshotPart>& parts) {
  const core::AccountState& state = account.state;
  size_t bytes = 0;
  SnapshotPart& part = parts.emplace_back();
  part.key = state.account_id;
  v1::AccountSnapshot snapshot =
      core::ToSnapshot(state, core::SnapshotInvoices::kExclude);
  // Contacts as the log holds them: sealed, without their plain fields.
  for (v1::PurchaseOrderSnapshot& po : *snapshot.mutable_purchase_orders()) {
    PersonalData::StripPlainFields(*po.mutable_header()->mutable_contacts());
  }
  snapshot.SerializeToString(&part.blob);
  bytes += part.key.size() + part.blob.size();
  for (const std::string& id : invoices) {
    auto it = state.invoices.find(id);
    if (it == state.invoices.end()) continue;  // Its event failed.
    SnapshotPart& invoice = parts.emplace_back();
    invoice.key = InvoicePartKey(state.account_id, id);
    core::ToInvoiceSnapshot(id, it->second).SerializeToString(&invoice.blob);
    bytes += invoice.key.size() + invoice.blob.size();
  }
  return bytes;
}

absl::StatusOr<uint64_t> Ledger::CreateSnapshot() {
  absl::MutexLock snapshot_lock(&snapshot_mu_);
  const absl::Time started = absl::Now();
  // Every account first: one listed at Open and not loaded may have events
  // that no saved part holds (even its creation), and the snapshot must
  // not claim a position past them.
  if (absl::Status loaded = LoadAll(); !loaded.ok()) {
    if (options_.on_snapshot) {
      options_.on_snapshot(SnapshotInfo{0, absl::Now(), absl::Now() - started},
                           loaded);
    }
    return loaded;
  }
  // The cut: the accounts hold the state at applied_through_, and those
  // changed since the last snapshot are dirty. From here on, a command that
  // would change one of them before it is saved saves it first.
  Cut cut;
  DirtyAccounts all;
  std::vector<Account*> accounts;
  {
    absl::MutexLock apply_lock(&apply_mu_);
    cut.position = applied_through_;
    all.swap(dirty_);
    absl::MutexLock cut_lock(&cut.mu);
    cut.unsaved = all;
    accounts.reserve(all.size());
    for (const auto& [account, invoices] : all) accounts.push_back(account);
    cut_ = &cut;
  }
  // Saved in chunks of about kSnapshotChunkBytes; all but the last chunk
  // keep the previous position, so a failure part-way leaves a consistent
  // snapshot behind (an account's parts are saved together, and Load skips
  // the events a part already holds).
  constexpr size_t kSnapshotChunkBytes = 16u << 20;
  const uint64_t previous = last_snapshot_position_.load();
  std::vector<SnapshotPart> chunk;
  size_t chunk_bytes = 0;
  absl::Status saved;
  for (Account* account : accounts) {
    {
      absl::ReaderMutexLock state_lock(&account->state_mu);
      absl::MutexLock cut_lock(&cut.mu);
      auto unsaved = cut.unsaved.find(account);
      if (unsaved == cut.unsaved.end()) continue;  // Copied by a command.
      chunk_bytes += AppendParts(*account, unsaved->second, chunk);
      cut.unsaved.erase(unsaved);
    }
    if (chunk_bytes >= kSnapshotChunkBytes) {
      saved = store_->SaveSnapshotParts(previous, chunk);
      if (!saved.ok()) break;
      chunk.clear();
      chunk_bytes = 0;
    }
  }
  {
    absl::MutexLock apply_lock(&apply_mu_);
    cut_ = nullptr;
  }
  {
    absl::MutexLock cut_lock(&cut.mu);
    for (SnapshotPart& part : cut.copied) chunk.push_back(std::move(part));
  }
  if (saved.ok()) saved = store_->SaveSnapshotParts(cut.position, chunk);
  if (!saved.ok()) {
    // Their parts may not be saved: the next snapshot tries them again.
    {
      absl::MutexLock lock(&apply_mu_);
      for (auto& [account, invoices] : all) {
        dirty_[account].insert(invoices.begin(), invoices.end());
      }
    }
    if (options_.on_snapshot) {
      options_.on_snapshot(
          SnapshotInfo{cut.position, absl::Now(), absl::Now() - started},
          saved);
    }
    return saved;
  }
  last_snapshot_position_ = cut.position;
  // What it saved and nothing changed since is on disk now.
  EvictSavedInvoices();
  {
    absl::MutexLock lock(&snapshot_info_mu_);
    snapshot_info_ =
        SnapshotInfo{cut.position, absl::Now(), absl::Now() - started};
  }
  if (options_.on_snapshot) {
    options_.on_snapshot(last_snapshot(), absl::OkStatus());
  }
  return cut.position;
}

void Ledger::MaybeSnapshot(uint64_t position) {
  if (options_.snapshot_every_events == 0 ||
      position <
          last_snapshot_position_.load() + options_.snapshot_every_events) {
    return;
  }
  // In the background: a snapshot must not hold up the commits that call
  // this. Best effort: a failed snapshot only makes the next restart slower.
  absl::MutexLock lock(&snapshot_thread_mu_);
  if (snapshot_running_) return;
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  snapshot_running_ = true;
  snapshot_thread_ = std::thread([this] {
    SetCurrentThreadName("pl-snapshot");
    (void)CreateSnapshot();
    absl::MutexLock done_lock(&snapshot_thread_mu_);
    snapshot_running_ = false;
  });
}

Ledger::~Ledger() {
  stop_warm_up_.store(true, std::memory_order_relaxed);
  if (warm_up_thread_.joinable()) warm_up_thread_.join();
  {
    // Appends still in flight call back into this ledger.
    absl::MutexLock lock(&in_flight_mu_);
    in_flight_mu_.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &in_flight_));
  }
  {
    absl::MutexLock lock(&work_mu_);
    stopping_ = true;
  }
  for (std::thread& t : workers_) t.join();
  std::thread running;
  {
    absl::MutexLock lock(&snapshot_thread_mu_);
    running = std::move(snapshot_thread_);
  }
  if (running.joinable()) running.join();
}

}  // namespace poledger
