#include "eventstore/rocksdb_event_store.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "eventstore/record_format.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/cache.h"
#include "rocksdb/write_batch.h"

namespace poledger {

namespace rf = record_format;

namespace {

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

absl::string_view ToView(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace

// One Append call waiting in the group-commit queue.
struct RocksDbEventStore::Writer {
  Writer(const AppendRequest* r, Hash d) : request(r), digest(d) {
    for (const StreamAppend& s : r->streams) {
      for (const NewEvent& e : s.events) bytes += e.payload.size() + 64;
    }
  }

  const AppendRequest* const request;
  const Hash digest;
  size_t bytes = 0;
  bool done = false;
  absl::StatusOr<AppendResult> result;
  // Set when an earlier writer of the same group carries the same request.
  Writer* duplicate_of = nullptr;
  absl::CondVar cv;
};

RocksDbEventStore::RocksDbEventStore(RocksDbEventStoreOptions options,
                                     std::unique_ptr<rocksdb::DB> db)
    : options_(std::move(options)), db_(std::move(db)) {}

RocksDbEventStore::~RocksDbEventStore() {
  Close();
  db_->Close().PermitUncheckedError();
}

absl::StatusOr<std::unique_ptr<RocksDbEventStore>> RocksDbEventStore::Open(
    const RocksDbEventStoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("path: must not be empty");
  }
  if (options.snapshots_to_keep < 1) {
    return absl::InvalidArgumentError("snapshots_to_keep: must be >= 1");
  }
  rocksdb::Options db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.paranoid_checks = true;
  db_options.max_background_jobs = 2;
  db_options.write_buffer_size = 64u << 20;
  if (options.env != nullptr) db_options.env = options.env;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.block_size = 16 * 1024;
  db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      options.read_only
          ? rocksdb::DB::OpenForReadOnly(db_options, options.path, &raw)
          : rocksdb::DB::Open(db_options, options.path, &raw);
  if (!s.ok()) {
    if (s.IsInvalidArgument() && !options.create_if_missing) {
      return absl::NotFoundError(
          absl::StrCat("no event log at ", options.path, ": ", s.ToString()));
    }
    return FromRocks(s, absl::StrCat("opening event log at ", options.path));
  }
  std::unique_ptr<RocksDbEventStore> store(
      new RocksDbEventStore(options, std::unique_ptr<rocksdb::DB>(raw)));
  RETURN_IF_ERROR(store->Recover());
  return store;
}

absl::Status RocksDbEventStore::Recover() {
  std::string format;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), rf::MetaFormatKey(), &format);
  if (s.IsNotFound()) {
    if (!options_.read_only) {
      rocksdb::WriteOptions wo;
      wo.sync = options_.sync;
      RETURN_IF_ERROR(FromRocks(
          db_->Put(wo, rf::MetaFormatKey(), rf::EncodeFixed64(1).substr(4)),
          "writing format marker"));
    }
  } else if (!s.ok()) {
    return FromRocks(s, "reading format marker");
  } else if (format != rf::EncodeFixed64(1).substr(4)) {
    return absl::FailedPreconditionError(
        "event log has an unknown format version");
  }

  // Head: the last log key.
  LogHead head;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    it->SeekForPrev(rf::LogKey(std::numeric_limits<uint64_t>::max()));
    if (it->Valid() && !it->key().empty() && it->key()[0] == rf::kLogPrefix) {
      ASSIGN_OR_RETURN(head.position, rf::ParseLogKey(ToView(it->key())));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "locating the log head"));
  }
  if (head.position > 0) {
    if (options_.verify_on_open) {
      ASSIGN_OR_RETURN(LogHead verified, VerifyLog());
      if (verified.position != head.position) {
        return absl::DataLossError(absl::StrCat(
            "event log record at position ", verified.position + 1,
            ": missing"));
      }
      head = verified;
    } else {
      const uint64_t from = head.position > 1 ? head.position - 1 : 1;
      ASSIGN_OR_RETURN(std::vector<RecordedEvent> tail,
                       ReadRange(from, head.position, 2));
      if (tail.empty() || tail.back().position != head.position) {
        return absl::DataLossError("event log head record is unreadable");
      }
      head.hash = tail.back().hash;
    }
  }

  absl::flat_hash_map<std::string, uint64_t> versions;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    const std::string prefix(1, rf::kVersionPrefix);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      absl::StatusOr<uint64_t> v = rf::DecodeFixed64(ToView(it->value()));
      if (!v.ok() || *v == 0) {
        return absl::DataLossError(absl::StrCat(
            "stream version entry for \"", ToView(it->key()).substr(1),
            "\" is malformed"));
      }
      versions[std::string(ToView(it->key()).substr(1))] = *v;
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "reading stream versions"));
  }
  absl::MutexLock lock(&mu_);
  versions_ = std::move(versions);
  absl::MutexLock head_lock(&head_mu_);
  head_ = head;
  return absl::OkStatus();
}

absl::StatusOr<LogHead> RocksDbEventStore::VerifyLog() const {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  ro.readahead_size = 2u << 20;
  const std::string upper(1, rf::kLogPrefix + 1);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  LogHead head;
  for (it->Seek(rf::LogKey(1)); it->Valid(); it->Next()) {
    absl::StatusOr<uint64_t> position = rf::ParseLogKey(ToView(it->key()));
    if (!position.ok()) {
      return absl::DataLossError(absl::StrCat(
          "event log record at position ", head.position + 1,
          ": malformed key"));
    }
    if (*position != head.position + 1) {
      return absl::DataLossError(absl::StrCat(
          "event log record at position ", head.position + 1, ": missing"));
    }
    ASSIGN_OR_RETURN(RecordedEvent r, rf::DecodeRecordValue(
                                          *position, ToView(it->value()), true));
    if (r.prev_hash != head.hash) {
      return absl::DataLossError(
          absl::StrCat("event log record at position ", *position,
                       ": chain link broken (previous hash does not match)"));
    }
    head = LogHead{r.position, r.hash};
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "verifying the event log"));
  return head;
}

absl::StatusOr<AppendResult> RocksDbEventStore::Append(
    const AppendRequest& request) {
  if (options_.read_only) {
    return absl::FailedPreconditionError("event store is open read-only");
  }
  RETURN_IF_ERROR(rf::ValidateAppendRequest(request));
  Writer w(&request, rf::RequestContentDigest(request));
  absl::MutexLock lock(&mu_);
  writers_.push_back(&w);
  while (!w.done && &w != writers_.front()) w.cv.Wait(&mu_);
  if (w.done) return std::move(w.result);

  // This writer leads: commit everything queued behind it, up to a size.
  std::vector<Writer*> group;
  size_t bytes = 0;
  for (Writer* x : writers_) {
    if (!group.empty() && bytes + x->bytes > options_.max_group_commit_bytes) {
      break;
    }
    group.push_back(x);
    bytes += x->bytes;
  }
  CommitGroup(group);
  for (size_t i = 0; i < group.size(); ++i) {
    Writer* x = writers_.front();
    writers_.pop_front();
    if (x != &w) {
      x->done = true;
      x->cv.Signal();
    }
  }
  if (!writers_.empty()) writers_.front()->cv.Signal();
  return std::move(w.result);
}

void RocksDbEventStore::CommitGroup(const std::vector<Writer*>& group) {
  {
    absl::MutexLock head_lock(&head_mu_);
    if (closed_) {
      for (Writer* x : group) {
        x->result = absl::UnavailableError("event store is closed");
      }
      return;
    }
  }
  if (!background_error_.ok()) {
    for (Writer* x : group) x->result = background_error_;
    return;
  }
  rf::BatchPlanner planner(Head(), [this](const std::string& id)
                                       ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                         auto it = versions_.find(id);
                                         return it == versions_.end()
                                                    ? uint64_t{0}
                                                    : it->second;
                                       });
  rocksdb::WriteBatch batch;
  absl::flat_hash_map<absl::string_view, Writer*> group_requests;
  std::vector<Writer*> planned;
  for (Writer* x : group) {
    const std::string& request_id = x->request->metadata.request_id;
    if (!request_id.empty()) {
      auto seen = group_requests.find(request_id);
      if (seen != group_requests.end()) {
        if (seen->second->digest != x->digest) {
          x->result = absl::AlreadyExistsError(absl::StrCat(
              "request id \"", request_id,
              "\" was already committed with different content"));
        } else {
          x->duplicate_of = seen->second;
        }
        continue;
      }
      std::string stored;
      rocksdb::Status s =
          db_->Get(rocksdb::ReadOptions(), rf::RequestKey(request_id), &stored);
      if (s.ok()) {
        absl::StatusOr<rf::RequestEntry> entry = rf::DecodeRequestValue(stored);
        if (!entry.ok()) {
          x->result = entry.status();
        } else if (entry->content_digest != x->digest) {
          x->result = absl::AlreadyExistsError(absl::StrCat(
              "request id \"", request_id,
              "\" was already committed with different content"));
        } else {
          entry->result.deduplicated = true;
          x->result = std::move(entry->result);
        }
        continue;
      }
      if (!s.IsNotFound()) {
        x->result = FromRocks(s, "reading the request index");
        continue;
      }
    }
    AppendResult result;
    absl::StatusOr<std::vector<RecordedEvent>> records =
        planner.Plan(*x->request, &result);
    if (!records.ok()) {
      x->result = records.status();
      continue;
    }
    for (const RecordedEvent& r : *records) {
      batch.Put(rf::LogKey(r.position), rf::EncodeRecordValue(r));
      batch.Put(rf::StreamKey(r.stream_id, r.stream_version),
                rf::EncodeFixed64(r.position));
    }
    if (!request_id.empty()) {
      batch.Put(rf::RequestKey(request_id),
                rf::EncodeRequestValue({x->digest, result}));
      group_requests[request_id] = x;
    }
    x->result = std::move(result);
    planned.push_back(x);
  }
  if (!planned.empty()) {
    for (const auto& [stream_id, version] : planner.planned_versions()) {
      batch.Put(rf::VersionKey(stream_id), rf::EncodeFixed64(version));
    }
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    // Other appenders only queue meanwhile; readers never need mu_.
    mu_.Unlock();
    rocksdb::Status s = db_->Write(wo, &batch);
    mu_.Lock();
    if (!s.ok()) {
      background_error_ = FromRocks(
          s, "writing to the event log failed; the store refuses all writes "
             "until reopened");
      if (background_error_.code() == absl::StatusCode::kNotFound ||
          background_error_.code() == absl::StatusCode::kInvalidArgument) {
        background_error_ = absl::InternalError(background_error_.message());
      }
      for (Writer* x : planned) x->result = background_error_;
    } else {
      for (const auto& [stream_id, version] : planner.planned_versions()) {
        versions_[stream_id] = version;
      }
      absl::MutexLock head_lock(&head_mu_);
      head_ = planner.head();
    }
  }
  for (Writer* x : group) {
    if (x->duplicate_of == nullptr) continue;
    x->result = x->duplicate_of->result;
    if (x->result.ok()) x->result->deduplicated = true;
  }
}

absl::StatusOr<std::vector<RecordedEvent>> RocksDbEventStore::ReadRange(
    uint64_t from, uint64_t to, size_t limit) const {
  std::vector<RecordedEvent> out;
  if (from > to || limit == 0) return out;
  rocksdb::ReadOptions ro;
  const std::string upper = rf::LogKey(to + 1);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  if (limit > 64) ro.readahead_size = 1u << 20;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  uint64_t expected = from;
  for (it->Seek(rf::LogKey(from)); it->Valid() && out.size() < limit;
       it->Next(), ++expected) {
    absl::StatusOr<uint64_t> position = rf::ParseLogKey(ToView(it->key()));
    if (!position.ok() || *position != expected) {
      return absl::DataLossError(absl::StrCat(
          "event log record at position ", expected, ": missing"));
    }
    ASSIGN_OR_RETURN(RecordedEvent r,
                     rf::DecodeRecordValue(expected, ToView(it->value()),
                                           options_.verify_reads));
    if (options_.verify_reads && !out.empty() &&
        r.prev_hash != out.back().hash) {
      return absl::DataLossError(
          absl::StrCat("event log record at position ", expected,
                       ": chain link broken (previous hash does not match)"));
    }
    out.push_back(std::move(r));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
  if (out.size() < limit && expected <= to) {
    return absl::DataLossError(absl::StrCat("event log record at position ",
                                            expected, ": missing"));
  }
  return out;
}

absl::StatusOr<std::vector<RecordedEvent>> RocksDbEventStore::ReadForward(
    uint64_t from, size_t limit) const {
  const uint64_t head = Head().position;
  return ReadRange(std::max<uint64_t>(from, 1), head, limit);
}

absl::StatusOr<std::vector<RecordedEvent>> RocksDbEventStore::ReadBackward(
    uint64_t from, size_t limit) const {
  const uint64_t head = Head().position;
  const uint64_t to = std::min(from, head);
  if (to == 0 || limit == 0) return std::vector<RecordedEvent>();
  const uint64_t start = to >= limit ? to - limit + 1 : 1;
  ASSIGN_OR_RETURN(std::vector<RecordedEvent> out,
                   ReadRange(start, to, to - start + 1));
  std::reverse(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::vector<RecordedEvent>> RocksDbEventStore::ReadStream(
    const std::string& stream_id, uint64_t from_version, size_t limit) const {
  std::vector<RecordedEvent> out;
  const uint64_t head = Head().position;
  const std::string prefix = rf::StreamKeyPrefix(stream_id);
  std::vector<std::string> keys;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    uint64_t expected = std::max<uint64_t>(from_version, 1);
    for (it->Seek(rf::StreamKey(stream_id, expected));
         it->Valid() && it->key().starts_with(prefix) && keys.size() < limit;
         it->Next(), ++expected) {
      absl::StatusOr<uint64_t> position =
          rf::DecodeFixed64(ToView(it->value()));
      if (!position.ok()) {
        return absl::DataLossError(absl::StrCat(
            "stream index of \"", stream_id, "\" at version ", expected,
            ": malformed"));
      }
      if (*position > head) break;  // Not yet published.
      keys.push_back(rf::LogKey(*position));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "reading a stream index"));
  }
  if (keys.empty()) return out;
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<std::string> values;
  std::vector<rocksdb::Status> statuses =
      db_->MultiGet(rocksdb::ReadOptions(), slices, &values);
  uint64_t expected_version = std::max<uint64_t>(from_version, 1);
  for (size_t i = 0; i < keys.size(); ++i, ++expected_version) {
    const uint64_t position = *rf::ParseLogKey(keys[i]);
    if (statuses[i].IsNotFound()) {
      return absl::DataLossError(absl::StrCat("event log record at position ",
                                              position, ": missing"));
    }
    RETURN_IF_ERROR(FromRocks(statuses[i], "reading the event log"));
    ASSIGN_OR_RETURN(RecordedEvent r,
                     rf::DecodeRecordValue(position, values[i],
                                           options_.verify_reads));
    if (r.stream_id != stream_id || r.stream_version != expected_version) {
      return absl::DataLossError(absl::StrCat(
          "event log record at position ", position,
          ": does not match the stream index of \"", stream_id, "\""));
    }
    out.push_back(std::move(r));
  }
  return out;
}

LogHead RocksDbEventStore::Head() const {
  absl::MutexLock lock(&head_mu_);
  return head_;
}

uint64_t RocksDbEventStore::StreamVersion(const std::string& stream_id) const {
  absl::MutexLock lock(&mu_);
  auto it = versions_.find(stream_id);
  return it == versions_.end() ? 0 : it->second;
}

uint64_t RocksDbEventStore::WaitForPosition(uint64_t after,
                                            absl::Time deadline) const {
  absl::MutexLock lock(&head_mu_);
  auto ready = [this, after]() ABSL_SHARED_LOCKS_REQUIRED(head_mu_) {
    return closed_ || head_.position > after;
  };
  head_mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  return head_.position;
}

absl::Status RocksDbEventStore::SaveSnapshot(const Snapshot& snapshot) {
  if (options_.read_only) {
    return absl::FailedPreconditionError("event store is open read-only");
  }
  if (snapshot.blob.size() > kMaxSnapshotBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot.blob: ", snapshot.blob.size(),
                     " bytes exceeds the limit of ", kMaxSnapshotBytes));
  }
  const uint64_t head = Head().position;
  if (snapshot.position > head) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot.position: ", snapshot.position, " is past the head ", head));
  }
  rocksdb::WriteBatch batch;
  batch.Put(rf::SnapshotKey(snapshot.position), snapshot.blob);
  // Delete all but the newest snapshots_to_keep (counting this one).
  {
    std::vector<uint64_t> older;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    const std::string prefix(1, rf::kSnapshotPrefix);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      absl::StatusOr<uint64_t> p = rf::ParseSnapshotKey(ToView(it->key()));
      if (p.ok() && *p < snapshot.position) older.push_back(*p);
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "listing snapshots"));
    const size_t keep_older = static_cast<size_t>(options_.snapshots_to_keep - 1);
    for (size_t i = 0; i + keep_older < older.size(); ++i) {
      batch.Delete(rf::SnapshotKey(older[i]));
    }
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Write(wo, &batch), "saving a snapshot");
}

absl::StatusOr<std::optional<Snapshot>> RocksDbEventStore::LoadLatestSnapshot()
    const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(rf::SnapshotKey(std::numeric_limits<uint64_t>::max()));
  if (!it->Valid() || it->key().empty() ||
      it->key()[0] != rf::kSnapshotPrefix) {
    RETURN_IF_ERROR(FromRocks(it->status(), "loading a snapshot"));
    return std::optional<Snapshot>();
  }
  ASSIGN_OR_RETURN(uint64_t position, rf::ParseSnapshotKey(ToView(it->key())));
  return std::optional<Snapshot>(
      Snapshot{position, std::string(ToView(it->value()))});
}

void RocksDbEventStore::Close() {
  absl::MutexLock lock(&head_mu_);
  closed_ = true;
}

}  // namespace poledger
