// CommittedStore shows a log only through its committed position: the
// records that enough nodes of a replicated shard store durably that no
// failover can take them back. Everything that answers a client (the
// ledger, the streams, the audit reads) reads the log through it, so that
// nothing a client sees is ever taken back; replication reads the log
// itself.
//
// An append answers once its records are committed, not merely durable on
// this node: the leader's writes wait for their followers here. Who decides
// the committed position is outside: the leader's commit tracker (from its
// followers' acknowledgements) or a follower's leader (SetCommitted).
//
// Thread safety: safe for concurrent use, as every EventStore.
#ifndef POLEDGER_EVENTSTORE_COMMITTED_STORE_H_
#define POLEDGER_EVENTSTORE_COMMITTED_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "eventstore/event_store.h"

namespace poledger {

class CommittedStore : public EventStore {
 public:
  // Shows `log` (not owned; it must outlive this) through its head as it is
  // now: what a node stores when it starts is what it had committed or
  // copied from its leader, the only log of the shard until failover.
  explicit CommittedStore(EventStore* log);
  // Shows `log` through `committed` (capped at its head): a node of a shard
  // with failover, whose own tail may hold records no leader committed.
  CommittedStore(EventStore* log, uint64_t committed);

  // Raises the committed position to `position` (capped at the log's head;
  // it never goes down), answers the appends it covers and wakes the
  // readers waiting for it.
  void SetCommitted(uint64_t position);
  uint64_t committed() const;
  // Records durable here and not committed yet.
  uint64_t uncommitted() const;

  // Appends that waited for their commit once durable here, and how long
  // they waited in all (for the metrics).
  struct WaitStats {
    uint64_t waits = 0;
    absl::Duration waited = absl::ZeroDuration();
  };
  WaitStats wait_stats() const;

  // Answers every append still waiting for its commit with `error` (the
  // records stay in the log: committed later, or set aside by a rejoin).
  void FailWaiting(const absl::Status& error);

  // EventStore. Appends and copies go to the log; reads see the log
  // through the committed position only.
  absl::StatusOr<AppendResult> Append(const AppendRequest& request) override;
  void AppendAsync(AppendRequest request, AppendCallback done) override;
  absl::Status Replicate(const std::vector<RecordedEvent>& records) override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadForward(
      uint64_t from, size_t limit) const override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadBackward(
      uint64_t from, size_t limit) const override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadStream(
      const std::string& stream_id, uint64_t from_version,
      size_t limit) const override;
  // UNAVAILABLE if the request's first append is durable and not committed
  // yet: its outcome is not known until it is (retry).
  absl::StatusOr<std::optional<AppendResult>> FindRequest(
      const std::string& request_id) const override;
  LogHead Head() const override;
  // The log's (committed or not): writers need the next version.
  uint64_t StreamVersion(const std::string& stream_id) const override;
  uint64_t WaitForPosition(uint64_t after, absl::Time deadline) const override;
  absl::Status SaveSnapshotParts(
      uint64_t position, const std::vector<SnapshotPart>& parts) override;
  absl::StatusOr<uint64_t> ReadSnapshotParts(
      const SnapshotPartFilter& filter,
      const SnapshotPartVisitor& visit) const override;
  absl::StatusOr<std::optional<std::string>> ReadSnapshotPart(
      absl::string_view key) const override;
  absl::StatusOr<std::optional<std::string>> ReadKey(
      absl::string_view id) const override;
  absl::Status PutKeys(uint64_t position,
                       const std::vector<KeyEntry>& keys) override;
  absl::Status VisitKeys(const KeyVisitor& visit) const override;
  absl::StatusOr<std::vector<KeyEntry>> KeysAddedIn(
      uint64_t first, uint64_t last) const override;
  void Close() override;

 private:
  EventStore* const log_;
  mutable absl::Mutex mu_;
  uint64_t committed_ ABSL_GUARDED_BY(mu_);
  // The committed head whose hash Head() read last.
  mutable LogHead head_read_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Appends durable here, by last position, waiting for their commit
  // since `since`.
  struct Waiting {
    AppendResult result;
    AppendCallback done;
    absl::Time since;
  };
  std::multimap<uint64_t, Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  WaitStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_COMMITTED_STORE_H_
