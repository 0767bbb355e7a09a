// InMemoryEventStore keeps the log in memory: nothing survives the process.
// It implements the full EventStore contract (positions, versions, hash
// chain, idempotency, waiting readers) and exists for fast tests, as an
// in-memory Env does for a storage engine.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_EVENTSTORE_MEMORY_EVENT_STORE_H_
#define POLEDGER_EVENTSTORE_MEMORY_EVENT_STORE_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "eventstore/event_store.h"
#include "eventstore/record_format.h"

namespace poledger {

class InMemoryEventStore final : public EventStore {
 public:
  InMemoryEventStore() = default;

  absl::StatusOr<AppendResult> Append(const AppendRequest& request) override;
  absl::Status Replicate(const std::vector<RecordedEvent>& records) override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadForward(
      uint64_t from, size_t limit) const override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadBackward(
      uint64_t from, size_t limit) const override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadStream(
      const std::string& stream_id, uint64_t from_version,
      size_t limit) const override;
  absl::StatusOr<std::optional<AppendResult>> FindRequest(
      const std::string& request_id) const override;
  LogHead Head() const override;
  uint64_t StreamVersion(const std::string& stream_id) const override;
  uint64_t WaitForPosition(uint64_t after, absl::Time deadline) const override;
  absl::Status SaveSnapshotParts(uint64_t position,
                                 const std::vector<SnapshotPart>& parts) override;
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
  // A planner of records after the head, with the streams' versions.
  record_format::BatchPlanner PlannerLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds planned records to the log and to their streams.
  void StoreLocked(std::vector<record_format::PlannedRecord>& records)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<RecordedEvent> log_ ABSL_GUARDED_BY(mu_);  // log_[p - 1].
  // Positions of each stream's records, by version - 1.
  absl::flat_hash_map<std::string, std::vector<uint64_t>> streams_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, record_format::RequestEntry> requests_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> snapshot_parts_ ABSL_GUARDED_BY(mu_);
  uint64_t snapshot_position_ ABSL_GUARDED_BY(mu_) = 0;
  // Keys beside the log, and the ids written under each position.
  std::map<std::string, std::string> keys_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<uint64_t, std::string>> key_index_ ABSL_GUARDED_BY(mu_);
  void PutKeysLocked(uint64_t position, const std::vector<KeyEntry>& keys)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_MEMORY_EVENT_STORE_H_
