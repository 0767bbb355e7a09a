#include "eventstore/committed_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace poledger {

CommittedStore::CommittedStore(EventStore* log)
    : log_(log), committed_(log->Head().position), head_read_(log->Head()) {}

CommittedStore::CommittedStore(EventStore* log, uint64_t committed)
    : log_(log), committed_(std::min(committed, log->Head().position)) {}

void CommittedStore::SetCommitted(uint64_t position) {
  position = std::min(position, log_->Head().position);
  std::vector<Waiting> answered;
  {
    absl::MutexLock lock(&mu_);
    if (position <= committed_) return;
    committed_ = position;
    const absl::Time now = absl::Now();
    auto end = waiting_.upper_bound(position);
    for (auto it = waiting_.begin(); it != end; ++it) {
      ++stats_.waits;
      stats_.waited += now - it->second.since;
      answered.push_back(std::move(it->second));
    }
    waiting_.erase(waiting_.begin(), end);
  }
  for (Waiting& w : answered) w.done(std::move(w.result));
}

uint64_t CommittedStore::committed() const {
  absl::MutexLock lock(&mu_);
  return committed_;
}

uint64_t CommittedStore::uncommitted() const {
  const uint64_t head = log_->Head().position;
  const uint64_t c = committed();
  return head > c ? head - c : 0;
}

CommittedStore::WaitStats CommittedStore::wait_stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void CommittedStore::FailWaiting(const absl::Status& error) {
  std::multimap<uint64_t, Waiting> failed;
  {
    absl::MutexLock lock(&mu_);
    failed.swap(waiting_);
  }
  for (auto& [position, w] : failed) w.done(error);
}

absl::StatusOr<AppendResult> CommittedStore::Append(
    const AppendRequest& request) {
  absl::Notification done;
  absl::StatusOr<AppendResult> out;
  AppendAsync(request, [&](absl::StatusOr<AppendResult> result) {
    out = std::move(result);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

void CommittedStore::AppendAsync(AppendRequest request, AppendCallback done) {
  log_->AppendAsync(std::move(request), [this, done = std::move(done)](
                                            absl::StatusOr<AppendResult> result) {
    if (!result.ok()) {
      done(std::move(result));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (closed_) {
        // Durable here, but its commit will not be seen: not acknowledged.
        result = absl::UnavailableError(
            "the server is stopping; the write may or may not be committed");
      } else if (result->last_position > committed_) {
        const uint64_t last = result->last_position;
        waiting_.emplace(last, Waiting{*std::move(result), done, absl::Now()});
        return;
      }
    }
    done(std::move(result));
  });
}

absl::Status CommittedStore::Replicate(
    const std::vector<RecordedEvent>& records) {
  return log_->Replicate(records);
}

absl::StatusOr<std::vector<RecordedEvent>> CommittedStore::ReadForward(
    uint64_t from, size_t limit) const {
  from = std::max<uint64_t>(from, 1);
  const uint64_t c = committed();
  if (from > c) return std::vector<RecordedEvent>();
  return log_->ReadForward(from,
                           static_cast<size_t>(std::min<uint64_t>(
                               limit, c - from + 1)));
}

absl::StatusOr<std::vector<RecordedEvent>> CommittedStore::ReadBackward(
    uint64_t from, size_t limit) const {
  const uint64_t c = committed();
  if (c == 0) return std::vector<RecordedEvent>();
  return log_->ReadBackward(std::min(from, c), limit);
}

absl::StatusOr<std::vector<RecordedEvent>> CommittedStore::ReadStream(
    const std::string& stream_id, uint64_t from_version, size_t limit) const {
  const uint64_t c = committed();
  absl::StatusOr<std::vector<RecordedEvent>> records =
      log_->ReadStream(stream_id, from_version, limit);
  if (!records.ok()) return records;
  auto past = std::find_if(records->begin(), records->end(),
                           [c](const RecordedEvent& r) { return r.position > c; });
  records->erase(past, records->end());
  return records;
}

absl::StatusOr<std::optional<AppendResult>> CommittedStore::FindRequest(
    const std::string& request_id) const {
  absl::StatusOr<std::optional<AppendResult>> found =
      log_->FindRequest(request_id);
  if (found.ok() && found->has_value() &&
      (*found)->last_position > committed()) {
    return absl::UnavailableError(absl::StrCat(
        "the first request with this id is stored at position ",
        (*found)->last_position,
        " and not committed yet; send it again shortly"));
  }
  return found;
}

LogHead CommittedStore::Head() const {
  // The hash is read when asked (digests), not at every commit; the last
  // one read is kept, and answered again if a read fails (an earlier head,
  // still a true one).
  const uint64_t position = committed();
  {
    absl::MutexLock lock(&mu_);
    if (head_read_.position == position) return head_read_;
  }
  absl::StatusOr<std::vector<RecordedEvent>> at = log_->ReadForward(position, 1);
  absl::MutexLock lock(&mu_);
  if (at.ok() && !at->empty() && at->front().position == position &&
      position > head_read_.position) {
    head_read_ = {position, at->front().hash};
  }
  return head_read_;
}

uint64_t CommittedStore::StreamVersion(const std::string& stream_id) const {
  return log_->StreamVersion(stream_id);
}

uint64_t CommittedStore::WaitForPosition(uint64_t after,
                                         absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  struct Args {
    const CommittedStore* self;
    uint64_t after;
  } args{this, after};
  mu_.AwaitWithDeadline(
      absl::Condition(
          +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return a->self->committed_ > a->after || a->self->closed_;
          },
          &args),
      deadline);
  return committed_;
}

absl::Status CommittedStore::SaveSnapshotParts(
    uint64_t position, const std::vector<SnapshotPart>& parts) {
  if (position > committed()) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot position ", position,
                     " is past the committed position ", committed()));
  }
  return log_->SaveSnapshotParts(position, parts);
}

absl::StatusOr<uint64_t> CommittedStore::ReadSnapshotParts(
    const SnapshotPartFilter& filter, const SnapshotPartVisitor& visit) const {
  return log_->ReadSnapshotParts(filter, visit);
}

absl::StatusOr<std::optional<std::string>> CommittedStore::ReadSnapshotPart(
    absl::string_view key) const {
  return log_->ReadSnapshotPart(key);
}

// Keys are not records: they are the log's own, committed or not.
absl::StatusOr<std::optional<std::string>> CommittedStore::ReadKey(
    absl::string_view id) const {
  return log_->ReadKey(id);
}

absl::Status CommittedStore::PutKeys(uint64_t position,
                                     const std::vector<KeyEntry>& keys) {
  return log_->PutKeys(position, keys);
}

absl::Status CommittedStore::VisitKeys(const KeyVisitor& visit) const {
  return log_->VisitKeys(visit);
}

absl::StatusOr<std::vector<KeyEntry>> CommittedStore::KeysAddedIn(
    uint64_t first, uint64_t last) const {
  return log_->KeysAddedIn(first, last);
}

void CommittedStore::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  FailWaiting(absl::UnavailableError(
      "the server is stopping; the write may or may not be committed"));
  log_->Close();
}

}  // namespace poledger
