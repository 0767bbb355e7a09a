#include "eventstore/memory_event_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace poledger {

absl::StatusOr<AppendResult> InMemoryEventStore::Append(
    const AppendRequest& request) {
  RETURN_IF_ERROR(record_format::ValidateAppendRequest(request));
  const Hash digest = record_format::IdempotencyDigest(request);
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("event store is closed");
  const std::string& request_id = request.metadata.request_id;
  if (!request_id.empty()) {
    auto it = requests_.find(request_id);
    if (it != requests_.end()) {
      if (it->second.content_digest != digest) {
        return absl::AlreadyExistsError(absl::StrCat(
            "request id \"", request_id,
            "\" was already committed with different content"));
      }
      AppendResult result = it->second.result;
      result.deduplicated = true;
      return result;
    }
  }
  record_format::BatchPlanner planner = PlannerLocked();
  AppendResult result;
  ASSIGN_OR_RETURN(record_format::PlannedRecord record,
                   planner.Plan(request, &result));
  std::vector<record_format::PlannedRecord> records;
  records.push_back(std::move(record));
  StoreLocked(records);
  for (const SnapshotPart& part : request.saved_parts) {
    snapshot_parts_[part.key] = part.blob;
  }
  PutKeysLocked(result.first_position, request.keys);
  if (!request_id.empty()) requests_[request_id] = {digest, result};
  return result;
}

absl::Status InMemoryEventStore::Replicate(
    const std::vector<RecordedEvent>& records) {
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("event store is closed");
  record_format::BatchPlanner planner = PlannerLocked();
  ASSIGN_OR_RETURN(std::vector<record_format::PlannedRecord> planned,
                   planner.Copy(records));
  // A run of the head's request id that these records continue.
  std::vector<RecordedEvent> earlier;
  if (!records.empty() && !records.front().request_id.empty()) {
    for (size_t p = log_.size();
         p > 0 && log_[p - 1].request_id == records.front().request_id; --p) {
      earlier.insert(earlier.begin(), log_[p - 1]);
    }
  }
  for (auto& [id, entry] :
       record_format::RebuildRequestEntries(earlier, records)) {
    requests_[id] = std::move(entry);
  }
  StoreLocked(planned);
  return absl::OkStatus();
}

record_format::BatchPlanner InMemoryEventStore::PlannerLocked() {
  LogHead head;
  if (!log_.empty()) head = LogHead{log_.back().position, log_.back().hash};
  return record_format::BatchPlanner(
      head, [this](const std::string& id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        auto it = streams_.find(id);
        return it == streams_.end() ? uint64_t{0} : it->second.size();
      });
}

void InMemoryEventStore::StoreLocked(
    std::vector<record_format::PlannedRecord>& records) {
  for (record_format::PlannedRecord& r : records) {
    for (RecordedEvent& e : r.events) {
      streams_[e.stream_id].push_back(e.position);
      log_.push_back(std::move(e));
    }
  }
}

absl::StatusOr<std::vector<RecordedEvent>> InMemoryEventStore::ReadForward(
    uint64_t from, size_t limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<RecordedEvent> out;
  for (uint64_t p = std::max<uint64_t>(from, 1);
       p <= log_.size() && out.size() < limit; ++p) {
    out.push_back(log_[p - 1]);
  }
  return out;
}

absl::StatusOr<std::vector<RecordedEvent>> InMemoryEventStore::ReadBackward(
    uint64_t from, size_t limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<RecordedEvent> out;
  for (uint64_t p = std::min<uint64_t>(from, log_.size());
       p >= 1 && out.size() < limit; --p) {
    out.push_back(log_[p - 1]);
  }
  return out;
}

absl::StatusOr<std::vector<RecordedEvent>> InMemoryEventStore::ReadStream(
    const std::string& stream_id, uint64_t from_version, size_t limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<RecordedEvent> out;
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return out;
  const std::vector<uint64_t>& positions = it->second;
  for (uint64_t v = std::max<uint64_t>(from_version, 1);
       v <= positions.size() && out.size() < limit; ++v) {
    out.push_back(log_[positions[v - 1] - 1]);
  }
  return out;
}

absl::StatusOr<std::optional<AppendResult>> InMemoryEventStore::FindRequest(
    const std::string& request_id) const {
  absl::MutexLock lock(&mu_);
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return std::optional<AppendResult>();
  AppendResult result = it->second.result;
  result.deduplicated = true;
  return std::optional<AppendResult>(std::move(result));
}

LogHead InMemoryEventStore::Head() const {
  absl::MutexLock lock(&mu_);
  if (log_.empty()) return LogHead{};
  return LogHead{log_.back().position, log_.back().hash};
}

uint64_t InMemoryEventStore::StreamVersion(const std::string& stream_id) const {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? 0 : it->second.size();
}

uint64_t InMemoryEventStore::WaitForPosition(uint64_t after,
                                             absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto ready = [this, after]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return closed_ || log_.size() > after;
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  return log_.size();
}

absl::Status InMemoryEventStore::SaveSnapshotParts(
    uint64_t position, const std::vector<SnapshotPart>& parts) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(record_format::ValidateSnapshotParts(
      position, log_.size(), snapshot_position_, parts));
  for (const SnapshotPart& part : parts) snapshot_parts_[part.key] = part.blob;
  snapshot_position_ = position;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> InMemoryEventStore::ReadSnapshotParts(
    const SnapshotPartFilter& filter, const SnapshotPartVisitor& visit) const {
  std::map<std::string, std::string> parts;
  uint64_t position;
  {
    absl::MutexLock lock(&mu_);
    parts = snapshot_parts_;
    position = snapshot_position_;
  }
  for (const auto& [key, blob] : parts) {
    if (record_format::SnapshotKeySelected(filter, key)) {
      RETURN_IF_ERROR(visit(key, blob));
    }
  }
  return position;
}

absl::StatusOr<std::optional<std::string>> InMemoryEventStore::ReadSnapshotPart(
    absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  auto it = snapshot_parts_.find(std::string(key));
  if (it == snapshot_parts_.end()) return std::nullopt;
  return it->second;
}

void InMemoryEventStore::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

void InMemoryEventStore::PutKeysLocked(uint64_t position,
                                       const std::vector<KeyEntry>& keys) {
  for (const KeyEntry& key : keys) {
    keys_[key.id] = key.value;
    if (position != 0) key_index_.emplace(position, key.id);
  }
}

absl::StatusOr<std::optional<std::string>> InMemoryEventStore::ReadKey(
    absl::string_view id) const {
  absl::MutexLock lock(&mu_);
  auto it = keys_.find(std::string(id));
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

absl::Status InMemoryEventStore::PutKeys(uint64_t position,
                                         const std::vector<KeyEntry>& keys) {
  RETURN_IF_ERROR(record_format::ValidateKeyList("keys", keys));
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("event store is closed");
  PutKeysLocked(position, keys);
  return absl::OkStatus();
}

absl::Status InMemoryEventStore::VisitKeys(const KeyVisitor& visit) const {
  std::map<std::string, std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    keys = keys_;
  }
  for (const auto& [id, value] : keys) RETURN_IF_ERROR(visit(id, value));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<KeyEntry>> InMemoryEventStore::KeysAddedIn(
    uint64_t first, uint64_t last) const {
  absl::MutexLock lock(&mu_);
  std::vector<KeyEntry> out;
  for (auto it = key_index_.lower_bound({first, ""});
       it != key_index_.end() && it->first <= last; ++it) {
    auto key = keys_.find(it->second);
    if (key != keys_.end()) out.push_back({key->first, key->second});
  }
  return out;
}

}  // namespace poledger
