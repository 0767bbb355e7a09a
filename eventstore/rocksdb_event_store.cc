#include "eventstore/rocksdb_event_store.h"

#include <semaphore.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <limits>
#include <thread>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/thread_name.h"
#include "eventstore/info_log.h"
#include "eventstore/record_format.h"
#include "eventstore/rocks_status.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"

namespace poledger {

namespace rf = record_format;

namespace {

// Memtable insert hints (record_format.h has the key grammar): log keys
// arrive in position order, so all of them share one hint; a stream's keys
// arrive in version order, so each stream keeps its own hint, keyed by 'S',
// the length and the stream id. Other keys (requests, snapshot parts) come
// in no order and are inserted without a hint, as a wrong hint costs more
// than none.
class InsertHintPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "poledger.InsertHintPrefix"; }

  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), PrefixLength(key));
  }

  bool InDomain(const rocksdb::Slice& key) const override {
    return PrefixLength(key) != 0;
  }

 private:
  // 0 when `key` has no hint prefix.
  static size_t PrefixLength(const rocksdb::Slice& key) {
    if (key.empty()) return 0;
    if (key[0] == record_format::kLogPrefix) return 1;
    if (key[0] == record_format::kSnapshotPrefix) {
      // A part under another (an account's invoice): that one's parts.
      const void* nul = std::memchr(key.data(), '\0', key.size());
      return nul == nullptr
                 ? 0
                 : static_cast<const char*>(nul) - key.data() + 1;
    }
    if (key[0] != record_format::kStreamPrefix || key.size() < 5) return 0;
    uint32_t len = 0;
    for (int i = 1; i <= 4; ++i) len = (len << 8) | static_cast<uint8_t>(key[i]);
    return key.size() >= 5 + size_t{len} ? 5 + size_t{len} : 0;
  }
};


// Puts `parts` into `batch` in key order: the memtable's skip list then
// inserts each part next to the one before (its remembered splice) instead
// of searching for its place. In the ledger's order (accounts and invoice
// ids from hash sets), those searches were most of a snapshot's cost; the
// unsorted parts that appends save raised the commit thread's share of the
// server's CPU from 18% to 28% under 4 x 500 batches. Parts of one key keep
// their order (a stable sort), so the last one put stays.
void PutPartsInKeyOrder(std::vector<const SnapshotPart*> parts,
                        rocksdb::WriteBatch& batch) {
  std::stable_sort(parts.begin(), parts.end(),
                   [](const SnapshotPart* a, const SnapshotPart* b) {
                     return a->key < b->key;
                   });
  for (const SnapshotPart* part : parts) {
    batch.Put(record_format::SnapshotKey(part->key), part->blob);
  }
}

// The cause of a write failure, for metrics.
std::string CauseOf(const rocksdb::Status& s) {
  if (s.IsNoSpace()) return "no_space";
  if (s.IsCorruption()) return "corruption";
  if (s.IsIOError()) return "io_error";
  return "other";
}

absl::string_view ToView(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace

// One Append call waiting in the group-commit queue. A writer sleeps on its
// own semaphore, so waking it costs one futex wake and no lock hand-off, and
// the wake-ups of a group spread over a tree of writers rather than running
// one by one on the leader's thread.
struct RocksDbEventStore::Writer {
  enum class State { kWaiting, kLeader, kDone };
  // Each woken writer wakes this many more: wide enough that a group is
  // awake within three hops, narrow enough that no thread does much.
  static constexpr size_t kWakeFanout = 8;

  Writer(const AppendRequest* r, Hash d) : request(r), digest(d) {
    sem_init(&wakeup, /*pshared=*/0, /*value=*/0);
  }
  ~Writer() { sem_destroy(&wakeup); }

  // Blocks until the writer is made leader or its append is done.
  State Wait() {
    while (sem_wait(&wakeup) != 0) {
      // EINTR: a signal handler ran; keep waiting.
    }
    return state.load(std::memory_order_acquire);
  }

  // glibc's sem_post does not touch the semaphore once the waiter can
  // return, so the writer may destroy itself as soon as it wakes.
  void Wake(State next) {
    state.store(next, std::memory_order_release);
    sem_post(&wakeup);
  }

  // Wakes the writers this one is responsible for once its append is done.
  void WakeChildren() {
    for (Writer* child : children) {
      if (child != nullptr) child->Wake(State::kDone);
    }
  }

  const AppendRequest* const request;
  const Hash digest;
  // Asynchronous appends: the writer owns its request, is completed through
  // `done` and deleted by whoever completes it.
  std::unique_ptr<AppendRequest> owned_request;
  AppendCallback done;
  // Written by the leader before Wake(kDone); read by the writer after.
  absl::StatusOr<AppendResult> result;
  Writer* children[kWakeFanout] = {};
  // Set when an earlier writer of the same group carries the same request.
  Writer* duplicate_of = nullptr;
  // Replicate: the copied records (and no request).
  const std::vector<RecordedEvent>* copied = nullptr;

  std::atomic<State> state{State::kWaiting};
  sem_t wakeup;
};

// RocksDB's background errors (a flush or compaction that failed, a WAL
// write) reach the store through this listener, which also turns off
// RocksDB's own recovery: without an SstFileManager it never ends and
// keeps DB::Resume busy, and the store resumes by itself (ResumeLoop).
class RocksDbEventStore::ErrorListener final : public rocksdb::EventListener {
 public:
  void Attach(RocksDbEventStore* store) {
    absl::MutexLock lock(&mu_);
    store_ = store;
  }

  void OnBackgroundError(rocksdb::BackgroundErrorReason reason,
                         rocksdb::Status* error) override {
    if (error == nullptr || error->ok()) return;
    const char* what = "a background write";
    switch (reason) {
      case rocksdb::BackgroundErrorReason::kFlush:
        what = "flushing the memtable";
        break;
      case rocksdb::BackgroundErrorReason::kCompaction:
        what = "compacting";
        break;
      case rocksdb::BackgroundErrorReason::kWriteCallback:
      case rocksdb::BackgroundErrorReason::kMemTable:
        what = "writing to the event log";
        break;
      default:
        break;
    }
    absl::MutexLock lock(&mu_);
    if (store_ != nullptr) store_->FailWrites(*error, what);
  }

  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason,
                            rocksdb::Status, bool* auto_recovery) override {
    *auto_recovery = false;
  }

 private:
  // Held while calling the store, so Attach(nullptr) waits for a call.
  absl::Mutex mu_;
  RocksDbEventStore* store_ ABSL_GUARDED_BY(mu_) = nullptr;
};

RocksDbEventStore::RocksDbEventStore(RocksDbEventStoreOptions options,
                                     std::unique_ptr<rocksdb::DB> db)
    : options_(std::move(options)), db_(std::move(db)) {}

RocksDbEventStore::~RocksDbEventStore() {
  Close();
  {
    absl::MutexLock lock(&commit_mu_);
    stopping_ = true;
  }
  if (commit_thread_.joinable()) commit_thread_.join();
  std::thread resume;
  {
    absl::MutexLock lock(&mu_);
    resume_stopping_ = true;
    resume = std::move(resume_thread_);
  }
  if (resume.joinable()) resume.join();
  if (listener_ != nullptr) listener_->Attach(nullptr);
  db_->Close().PermitUncheckedError();
}

absl::StatusOr<std::unique_ptr<RocksDbEventStore>> RocksDbEventStore::Open(
    const RocksDbEventStoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("path: must not be empty");
  }
  rocksdb::Options db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.paranoid_checks = true;
  db_options.max_background_jobs = 2;
  db_options.write_buffer_size = 64u << 20;
  // One thread writes at a time (the group-commit leader), so RocksDB's own
  // write-thread machinery only costs: no concurrent memtable inserts, no
  // spinning. Log keys, and each stream's keys, arrive in order: insert
  // hints make their memtable inserts cheap.
  db_options.allow_concurrent_memtable_write = false;
  db_options.enable_write_thread_adaptive_yield = false;
  db_options.memtable_insert_with_hint_prefix_extractor =
      std::make_shared<InsertHintPrefix>();
  // A Bloom filter over the memtable's whole keys: the lookup of a key that
  // is not there (a new invoice's id) no longer walks the skip list.
  db_options.memtable_whole_key_filtering = true;
  db_options.memtable_prefix_bloom_size_ratio = 0.02;
  if (options.env != nullptr) db_options.env = options.env;
  std::shared_ptr<InfoLog> info_log;
  if (!options.read_only && options.secondary_path.empty()) {
    // RocksDB's own LOG file aborts the process on the line after a write
    // that found the disk full; ours drops the line instead.
    std::error_code ignored;
    if (options.create_if_missing) {
      std::filesystem::create_directories(options.path, ignored);
    }
    if (std::filesystem::is_directory(options.path, ignored)) {
      info_log = InfoLog::Open(options.path);
      db_options.info_log = info_log;
    }
  }
  auto listener = std::make_shared<ErrorListener>();
  db_options.listeners.push_back(listener);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.block_size = 16 * 1024;
  // A lookup of a key that is not there (every new invoice's id, see
  // Ledger::LoadInvoicesFor) skips the files a Bloom filter rules out.
  // Filters and indexes live in the block cache, so the memory they take
  // is bounded with it rather than growing with the data; partitioned, so
  // that a lookup reads a few KB of them, not a whole file's filter (a
  // 64 MB file's is ~600 KB: reading those through a full cache made
  // lookups the writers' main cost).
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.metadata_block_size = 4096;
  table.cache_index_and_filter_blocks = true;
  table.pin_top_level_index_and_filter = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s;
  RocksDbEventStoreOptions effective = options;
  if (!options.secondary_path.empty()) {
    effective.read_only = true;
    db_options.max_open_files = -1;  // Required of secondary instances.
    s = rocksdb::DB::OpenAsSecondary(db_options, options.path,
                                     options.secondary_path, &raw);
    if (s.ok()) s = raw->TryCatchUpWithPrimary();
  } else if (options.read_only) {
    s = rocksdb::DB::OpenForReadOnly(db_options, options.path, &raw);
  } else {
    s = rocksdb::DB::Open(db_options, options.path, &raw);
  }
  if (!s.ok()) {
    if (s.IsInvalidArgument() && !options.create_if_missing) {
      return absl::NotFoundError(
          absl::StrCat("no event log at ", options.path, ": ", s.ToString()));
    }
    return FromRocks(s, absl::StrCat("opening event log at ", options.path));
  }
  std::unique_ptr<RocksDbEventStore> store(
      new RocksDbEventStore(effective, std::unique_ptr<rocksdb::DB>(raw)));
  store->listener_ = listener;
  listener->Attach(store.get());
  RETURN_IF_ERROR(store->Recover());
  if (info_log != nullptr) {
    store->open_check_.recovery_skipped = info_log->first_corruption();
  }
  return store;
}

absl::Status RocksDbEventStore::Recover() {
  // A log of format 1 (records of one event) is a log of format 2: the
  // marker moves on with the first write, so that a server that reads
  // only format 1 refuses the log rather than misreading it.
  const std::string current = rf::EncodeFixed64(rf::kLogFormat).substr(4);
  std::string format;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), rf::MetaFormatKey(), &format);
  if (!s.ok() && !s.IsNotFound()) {
    return FromRocks(s, "reading format marker");
  }
  if (s.ok() && format != current &&
      format != rf::EncodeFixed64(rf::kLogFormatOneEventRecords).substr(4)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "event log has an unknown format version (this server reads formats ",
        rf::kLogFormatOneEventRecords, " and ", rf::kLogFormat, ")"));
  }
  if (format != current && !options_.read_only) {
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    RETURN_IF_ERROR(FromRocks(db_->Put(wo, rf::MetaFormatKey(), current),
                              "writing format marker"));
  }

  // Head: the last log key.
  LogHead head;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    it->SeekForPrev(rf::LogKey(std::numeric_limits<uint64_t>::max()));
    if (it->Valid() && !it->key().empty() && it->key()[0] == rf::kLogPrefix) {
      ASSIGN_OR_RETURN(head.position, rf::ParseLogKey(ToView(it->key())));
      // The last record's first position: the head is its last event.
      absl::StatusOr<uint32_t> count = rf::RecordEventCount(ToView(it->value()));
      if (!count.ok()) {
        return absl::DataLossError(absl::StrCat(
            "event log record at position ", head.position, ": ",
            count.status().message()));
      }
      head.position += *count - 1;
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "locating the log head"));
  }
  if (head.position > 0) {
    if (options_.verify_on_open) {
      LogHead start;
      if (options_.verify_from_mark) {
        absl::StatusOr<LogHead> mark = TrustedMark(head.position);
        if (mark.ok()) start = *mark;
      }
      ASSIGN_OR_RETURN(LogHead verified, VerifyFrom(start));
      if (verified.position != head.position) {
        return absl::DataLossError(absl::StrCat(
            "event log record at position ", verified.position + 1,
            ": missing"));
      }
      open_check_ =
          OpenCheck{start.position + 1, head.position - start.position};
      head = verified;
      if (!options_.read_only) RETURN_IF_ERROR(WriteVerifiedMark(head));
    } else {
      std::vector<RecordedEvent> tail;
      RETURN_IF_ERROR(ReadRecordHolding(head.position, true, &tail));
      if (tail.empty() || tail.back().position != head.position) {
        return absl::DataLossError("event log head record is unreadable");
      }
      head.hash = tail.back().hash;
    }
  }

  // Each stream's version is its last stream key: visit one key per stream
  // by jumping past each stream's keys.
  absl::flat_hash_map<std::string, uint64_t> versions;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    const std::string prefix(1, rf::kStreamPrefix);
    std::string stream_id;
    uint64_t version = 0;
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);) {
      absl::Status parsed =
          rf::ParseStreamKey(ToView(it->key()), &stream_id, &version);
      if (!parsed.ok()) {
        return absl::DataLossError(
            absl::StrCat("stream index key is malformed: ", parsed.message()));
      }
      const std::string past_end =
          rf::StreamKey(stream_id, std::numeric_limits<uint64_t>::max());
      it->SeekForPrev(past_end);
      if (!it->Valid() ||
          !rf::ParseStreamKey(ToView(it->key()), &stream_id, &version).ok() ||
          version == 0) {
        return absl::DataLossError(absl::StrCat(
            "stream index of \"", stream_id, "\" is malformed"));
      }
      versions[stream_id] = version;
      it->Seek(past_end);
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
  return VerifyFrom(LogHead());
}

absl::StatusOr<LogHead> RocksDbEventStore::TrustedMark(uint64_t head) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), rf::MetaVerifiedKey(), &value);
  if (s.IsNotFound()) return absl::NotFoundError("no verified-through mark");
  RETURN_IF_ERROR(FromRocks(s, "reading the verified-through mark"));
  ASSIGN_OR_RETURN(rf::VerifiedMark mark, rf::DecodeVerifiedMark(value));
  if (mark.position == 0 || mark.position > head) {
    return absl::DataLossError(
        absl::StrCat("the verified-through mark names position ", mark.position,
                     " of a log whose head is ", head));
  }
  std::vector<RecordedEvent> record;
  RETURN_IF_ERROR(ReadRecordHolding(mark.position, true, &record));
  if (record.back().position != mark.position) {
    return absl::DataLossError(
        absl::StrCat("the verified-through mark names position ", mark.position,
                     ", inside the record of position ",
                     record.front().position));
  }
  if (record.back().hash != mark.hash) {
    return absl::DataLossError(
        absl::StrCat("the verified-through mark at position ", mark.position,
                     " names another hash than the record there"));
  }
  return LogHead{mark.position, mark.hash};
}

absl::StatusOr<uint64_t> RocksDbEventStore::CommittedMark() const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), rf::MetaCommittedKey(), &value);
  if (s.IsNotFound()) return 0;
  RETURN_IF_ERROR(FromRocks(s, "reading the committed mark"));
  return rf::DecodeFixed64(value);
}

absl::Status RocksDbEventStore::SaveCommittedMark(uint64_t position) {
  if (options_.read_only) {
    return absl::FailedPreconditionError("the event log is open read-only");
  }
  if (position > Head().position) {
    return absl::InvalidArgumentError(
        absl::StrCat("committed mark ", position, " is past the head ",
                     Head().position));
  }
  return FromRocks(db_->Put(rocksdb::WriteOptions(), rf::MetaCommittedKey(),
                            rf::EncodeFixed64(position)),
                   "saving the committed mark");
}

absl::Status RocksDbEventStore::CheckVerifiedMark() const {
  absl::StatusOr<LogHead> mark = TrustedMark(Head().position);
  if (absl::IsNotFound(mark.status())) return absl::OkStatus();
  return mark.status();
}

bool RocksDbEventStore::write_failed() const {
  absl::MutexLock lock(&mu_);
  return !background_error_.ok();
}

WriteHealth RocksDbEventStore::write_health() const {
  absl::MutexLock lock(&mu_);
  WriteHealth h;
  h.status = background_error_;
  h.resumes_by_itself = resumable_;
  h.failures = failures_;
  h.recoveries = recoveries_;
  h.failures_by_cause = failures_by_cause_;
  return h;
}

void RocksDbEventStore::FailWritesLocked(const rocksdb::Status& error,
                                         absl::string_view what) {
  if (!background_error_.ok()) return;
  ++failures_;
  ++failures_by_cause_[CauseOf(error)];
  resumable_ = error.IsNoSpace() && !options_.read_only;
  const std::string message = absl::StrCat(
      what, " failed (", error.ToString(), "): ",
      resumable_ ? "the file system is full; writes resume by themselves "
                   "once space is freed"
                 : "the store refuses all writes until the server is "
                   "restarted");
  // Whatever RocksDB says, a write that cannot be made is UNAVAILABLE: the
  // request was not applied, and may be retried elsewhere or later.
  background_error_ = absl::UnavailableError(message);
  if (resumable_ && !resume_thread_.joinable() && !resume_stopping_) {
    resume_thread_ = std::thread([this] {
      SetCurrentThreadName("pl-resume");
      ResumeLoop();
    });
  }
}

void RocksDbEventStore::FailWrites(const rocksdb::Status& error,
                                   absl::string_view what) {
  {
    absl::MutexLock lock(&mu_);
    FailWritesLocked(error, what);
  }
  ReportWriteHealth();
}

void RocksDbEventStore::ReportWriteHealth() {
  absl::MutexLock report(&report_mu_);
  absl::Status now;
  {
    absl::MutexLock lock(&mu_);
    now = background_error_;
  }
  if (now.ok() != reported_failed_) return;  // Nothing changed.
  reported_failed_ = !now.ok();
  if (options_.on_write_health) options_.on_write_health(now);
}

uint64_t RocksDbEventStore::FreeBytes() const {
  struct statvfs fs;
  if (statvfs(options_.path.c_str(), &fs) != 0) {
    return std::numeric_limits<uint64_t>::max();  // Unknown: let it try.
  }
  return uint64_t{fs.f_bavail} * fs.f_frsize;
}

void RocksDbEventStore::ResumeLoop() {
  // A try that fails (the flush finds no room yet) waits twice as long
  // before the next, up to kMaxResumeBackoff intervals, unless the free
  // space grows meanwhile.
  constexpr int kMaxResumeBackoff = 16;
  int backoff = 1;
  uint64_t free_at_last_try = 0;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return resume_stopping_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&woken),
                           options_.resume_interval * backoff);
      if (resume_stopping_) return;
      if (background_error_.ok() || !resumable_) {
        backoff = 1;
        continue;
      }
    }
    const uint64_t free_bytes = FreeBytes();
    if (free_bytes < kResumeMarginBytes) continue;
    if (free_bytes > free_at_last_try + kResumeMarginBytes) backoff = 1;
    free_at_last_try = free_bytes;
    // Flushes the memtables and starts a new WAL: what a failed write
    // left in the old WAL was never applied, and is never replayed.
    if (!db_->Resume().ok()) {
      backoff = std::min(backoff * 2, kMaxResumeBackoff);
      continue;
    }
    backoff = 1;
    {
      absl::MutexLock lock(&mu_);
      background_error_ = absl::OkStatus();
      resumable_ = false;
      ++recoveries_;
    }
    ReportWriteHealth();
  }
}

uint64_t RocksDbEventStore::VerifiedMarkPosition() const {
  std::string value;
  if (!db_->Get(rocksdb::ReadOptions(), rf::MetaVerifiedKey(), &value).ok()) {
    return 0;
  }
  absl::StatusOr<rf::VerifiedMark> mark = rf::DecodeVerifiedMark(value);
  return mark.ok() ? mark->position : 0;
}

absl::Status RocksDbEventStore::WriteVerifiedMark(const LogHead& head) {
  if (head.position == 0) return absl::OkStatus();
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Put(wo, rf::MetaVerifiedKey(),
                            rf::EncodeVerifiedMark({head.position, head.hash})),
                   "writing the verified-through mark");
}

absl::StatusOr<LogHead> RocksDbEventStore::VerifyFrom(LogHead start) const {
  return VerifyAfter(start, std::numeric_limits<uint64_t>::max(),
                     std::numeric_limits<size_t>::max());
}

absl::StatusOr<LogHead> RocksDbEventStore::VerifyAfter(LogHead start,
                                                       uint64_t through,
                                                       size_t limit) const {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  ro.readahead_size = 2u << 20;
  const std::string upper =
      through == std::numeric_limits<uint64_t>::max()
          ? std::string(1, rf::kLogPrefix + 1)
          : rf::LogKey(through + 1);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  LogHead head = start;
  size_t checked = 0;
  std::vector<RecordedEvent> record;
  for (it->Seek(rf::LogKey(start.position + 1)); it->Valid() && checked < limit;
       it->Next(), ++checked) {
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
    record.clear();
    RETURN_IF_ERROR(
        rf::DecodeRecordValue(*position, ToView(it->value()), true, &record));
    if (record.back().position > through) break;
    if (record.front().prev_hash != head.hash) {
      return absl::DataLossError(
          absl::StrCat("event log record at position ", *position,
                       ": chain link broken (previous hash does not match)"));
    }
    head = LogHead{record.back().position, record.back().hash};
  }
  RETURN_IF_ERROR(FromRocks(
      it->status(), absl::StrCat("verifying the event log after position ",
                                 head.position)));
  return head;
}

absl::StatusOr<AppendResult> RocksDbEventStore::Append(
    const AppendRequest& request) {
  if (options_.read_only) {
    return absl::FailedPreconditionError("event store is open read-only");
  }
  RETURN_IF_ERROR(rf::ValidateAppendRequest(request));
  Writer w(&request, rf::IdempotencyDigest(request));
  if (!Enqueue(&w) && w.Wait() == Writer::State::kDone) {
    w.WakeChildren();
    return std::move(w.result);
  }
  Lead(&w);
  return std::move(w.result);
}

absl::Status RocksDbEventStore::Replicate(
    const std::vector<RecordedEvent>& records) {
  if (options_.read_only) {
    return absl::FailedPreconditionError("event store is open read-only");
  }
  if (records.empty()) return absl::OkStatus();
  // One copy per group: a copy that continues the previous one's request
  // finds it committed.
  absl::MutexLock replicate_lock(&replicate_mu_);
  Writer w(nullptr, Hash{});
  w.copied = &records;
  if (!Enqueue(&w) && w.Wait() == Writer::State::kDone) {
    w.WakeChildren();
    return w.result.status();
  }
  Lead(&w);
  return w.result.status();
}

absl::Status RocksDbEventStore::PlanCopy(
    rf::BatchPlanner& planner, const std::vector<RecordedEvent>& records,
    rocksdb::WriteBatch& batch) {
  const LogHead head = planner.head();
  ASSIGN_OR_RETURN(std::vector<rf::PlannedRecord> planned,
                   planner.Copy(records));
  // The head's append, if these records continue it (its request entry
  // grows to cover them).
  std::vector<RecordedEvent> earlier;
  const std::string& first_request = records.front().request_id;
  if (!first_request.empty() && head.position > 0) {
    std::string stored;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(),
                                 rf::RequestKey(first_request), &stored);
    if (s.ok()) {
      ASSIGN_OR_RETURN(rf::RequestEntry entry, rf::DecodeRequestValue(stored));
      if (entry.result.last_position == head.position) {
        ASSIGN_OR_RETURN(
            earlier,
            ReadRange(entry.result.first_position, head.position,
                      head.position - entry.result.first_position + 1));
      }
    } else if (!s.IsNotFound()) {
      return FromRocks(s, "reading the request index");
    }
  }
  std::vector<std::pair<std::string, uint64_t>> stream_entries;
  for (const rf::PlannedRecord& r : planned) {
    batch.Put(rf::LogKey(r.first_position()), r.value);
    rf::AppendStreamEntries(r.events, &stream_entries);
  }
  for (const auto& [key, position] : stream_entries) {
    batch.Put(key, rf::EncodeFixed64(position));
  }
  for (const auto& [id, entry] : rf::RebuildRequestEntries(earlier, records)) {
    batch.Put(rf::RequestKey(id), rf::EncodeRequestValue(entry));
  }
  return absl::OkStatus();
}

void RocksDbEventStore::AppendAsync(AppendRequest request, AppendCallback done) {
  if (options_.read_only) {
    done(absl::FailedPreconditionError("event store is open read-only"));
    return;
  }
  if (absl::Status valid = rf::ValidateAppendRequest(request); !valid.ok()) {
    done(std::move(valid));
    return;
  }
  auto owned = std::make_unique<AppendRequest>(std::move(request));
  const Hash digest = rf::IdempotencyDigest(*owned);
  Writer* w = new Writer(owned.get(), digest);
  w->owned_request = std::move(owned);
  w->done = std::move(done);
  if (Enqueue(w)) RequestCommitThread();
}

bool RocksDbEventStore::Enqueue(Writer* w) {
  absl::MutexLock lock(&queue_mu_);
  writers_.push_back(w);
  if (leader_active_) return false;
  leader_active_ = true;
  return true;
}

void RocksDbEventStore::RequestCommitThread() {
  absl::MutexLock lock(&commit_mu_);
  ++lead_requests_;
  if (!commit_thread_.joinable()) {
    commit_thread_ = std::thread([this] {
      SetCurrentThreadName("pl-commit");
      CommitLoop();
    });
  }
}

void RocksDbEventStore::CommitLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&commit_mu_);
      commit_mu_.Await(absl::Condition(
          +[](RocksDbEventStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->commit_mu_) {
            return s->lead_requests_ > 0 || s->stopping_;
          },
          this));
      if (lead_requests_ == 0) return;  // Stopping, nothing left to lead.
      --lead_requests_;
    }
    Lead(nullptr);
  }
}

void RocksDbEventStore::Lead(Writer* self) {
  for (;;) {
    // Commit everything queued; writers that arrive meanwhile queue up for
    // the next group.
    std::vector<Writer*> group;
    {
      absl::MutexLock lock(&queue_mu_);
      group.assign(writers_.begin(), writers_.end());
    }
    bool report = false;
    {
      absl::MutexLock lock(&mu_);
      CommitGroup(group);
      report = std::exchange(report_pending_, false);
    }
    if (report) ReportWriteHealth();
    Writer* next = nullptr;
    {
      absl::MutexLock lock(&queue_mu_);
      writers_.erase(writers_.begin(), writers_.begin() + group.size());
      if (writers_.empty()) {
        leader_active_ = false;
      } else {
        next = writers_.front();
      }
    }
    // Hand over leadership first so the next group's write overlaps the
    // completions of this one. A blocked appender leads its own group; the
    // commit thread leads groups that start with an asynchronous append, so
    // no caller of Append leads more than once.
    bool keep_leading = false;
    if (next != nullptr) {
      if (next->done == nullptr) {
        next->Wake(Writer::State::kLeader);
      } else if (self == nullptr) {
        keep_leading = true;
      } else {
        RequestCommitThread();
      }
    }
    // Blocked appenders wake in a tree: this thread wakes members 0..F-1 and
    // member j wakes members F(j+1) .. F(j+1)+F-1 (F = kWakeFanout).
    std::vector<Writer*> blocked;
    std::vector<Writer*> callbacks;
    for (Writer* w : group) {
      if (w == self) continue;
      (w->done == nullptr ? blocked : callbacks).push_back(w);
    }
    constexpr size_t kF = Writer::kWakeFanout;
    for (size_t j = 0; j < blocked.size(); ++j) {
      for (size_t c = 0; c < kF; ++c) {
        const size_t child = kF * (j + 1) + c;
        if (child < blocked.size()) blocked[j]->children[c] = blocked[child];
      }
    }
    for (size_t j = 0; j < std::min(blocked.size(), kF); ++j) {
      blocked[j]->Wake(Writer::State::kDone);
    }
    for (Writer* w : callbacks) {
      w->done(std::move(w->result));
      delete w;
    }
    if (!keep_leading) return;
  }
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
  // The stream index's entries (key, position), put after the records in
  // key order: the memtable then inserts each next to the one before (the
  // records' own keys ascend already). Each key is in the group once.
  std::vector<std::pair<std::string, uint64_t>> stream_entries;
  // The parts the appends save, put last in key order too.
  std::vector<const SnapshotPart*> saved_parts;
  absl::flat_hash_map<absl::string_view, Writer*> group_requests;
  std::vector<Writer*> planned;
  for (Writer* x : group) {
    if (x->copied != nullptr) {
      if (absl::Status copy = PlanCopy(planner, *x->copied, batch);
          !copy.ok()) {
        x->result = copy;
      } else {
        AppendResult copied;
        copied.first_position = x->copied->front().position;
        copied.last_position = x->copied->back().position;
        x->result = std::move(copied);
        planned.push_back(x);
      }
      continue;
    }
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
    absl::StatusOr<rf::PlannedRecord> record =
        planner.Plan(*x->request, &result);
    if (!record.ok()) {
      x->result = record.status();
      continue;
    }
    batch.Put(rf::LogKey(record->first_position()), record->value);
    rf::AppendStreamEntries(record->events, &stream_entries);
    for (const SnapshotPart& part : x->request->saved_parts) {
      saved_parts.push_back(&part);
    }
    for (const KeyEntry& key : x->request->keys) {
      batch.Put(rf::KeyKey(key.id), key.value);
      batch.Put(rf::KeyIndexKey(record->first_position(), key.id), "");
    }
    if (!request_id.empty()) {
      batch.Put(rf::RequestKey(request_id),
                rf::EncodeRequestValue({x->digest, result}));
      group_requests[request_id] = x;
    }
    x->result = std::move(result);
    planned.push_back(x);
  }
  std::sort(stream_entries.begin(), stream_entries.end());
  for (const auto& [key, position] : stream_entries) {
    batch.Put(key, rf::EncodeFixed64(position));
  }
  PutPartsInKeyOrder(std::move(saved_parts), batch);
  if (!planned.empty()) {
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    // Other appenders only queue meanwhile; readers never need mu_.
    const uint64_t before = Head().position;
    const absl::Time write_started = absl::Now();
    mu_.Unlock();
    rocksdb::Status s = db_->Write(wo, &batch);
    mu_.Lock();
    if (options_.on_commit) {
      CommitStats stats;
      stats.appends = static_cast<int>(planned.size());
      stats.events = s.ok() ? planner.head().position - before : 0;
      stats.bytes = batch.GetDataSize();
      stats.write_seconds = absl::ToDoubleSeconds(absl::Now() - write_started);
      stats.ok = s.ok();
      options_.on_commit(stats);
    }
    if (!s.ok()) {
      FailWritesLocked(s, "writing to the event log");
      report_pending_ = true;
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

absl::Status RocksDbEventStore::ReadRecordHolding(
    uint64_t position, bool verify, std::vector<RecordedEvent>* out) const {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(rf::LogKey(position));
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
  absl::StatusOr<uint64_t> first =
      it->Valid() ? rf::ParseLogKey(ToView(it->key()))
                  : absl::NotFoundError("no record");
  std::vector<RecordedEvent> record;
  if (first.ok()) {
    RETURN_IF_ERROR(
        rf::DecodeRecordValue(*first, ToView(it->value()), verify, &record));
  }
  if (record.empty() || record.back().position < position) {
    return absl::DataLossError(absl::StrCat("event log record at position ",
                                            position, ": missing"));
  }
  *out = std::move(record);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RecordedEvent>> RocksDbEventStore::ReadRange(
    uint64_t from, uint64_t to, size_t limit) const {
  if (from > to || limit == 0) return std::vector<RecordedEvent>();
  const auto missing = [](uint64_t position) {
    return absl::DataLossError(absl::StrCat("event log record at position ",
                                            position, ": missing"));
  };
  // Collect the raw records first (from the one holding `from`), then
  // decode (and verify) them; large reads decode on two threads, since
  // hashing dominates their cost.
  std::vector<std::pair<uint64_t, std::string>> values;
  size_t events = 0;
  {
    rocksdb::ReadOptions ro;
    const std::string upper = rf::LogKey(to + 1);
    rocksdb::Slice upper_slice(upper);
    ro.iterate_upper_bound = &upper_slice;
    if (limit > 64) ro.readahead_size = 1u << 20;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
    uint64_t expected = from;
    for (it->SeekForPrev(rf::LogKey(from)); it->Valid() && events < limit;
         it->Next()) {
      absl::StatusOr<uint64_t> first = rf::ParseLogKey(ToView(it->key()));
      absl::StatusOr<uint32_t> count =
          rf::RecordEventCount(ToView(it->value()));
      if (!first.ok() || !count.ok() ||
          (values.empty() ? *first > from || *first + *count <= from
                          : *first != expected)) {
        return missing(expected);
      }
      expected = *first + *count;
      events += std::min(expected - 1, to) - std::max(*first, from) + 1;
      values.emplace_back(*first, std::string(it->value().data(),
                                              it->value().size()));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
    if (events < limit && expected <= to) return missing(expected);
  }
  std::vector<std::vector<RecordedEvent>> records(values.size());
  auto decode = [&](size_t begin, size_t end) -> absl::Status {
    for (size_t i = begin; i < end; ++i) {
      RETURN_IF_ERROR(rf::DecodeRecordValue(values[i].first, values[i].second,
                                            options_.verify_reads,
                                            &records[i]));
    }
    return absl::OkStatus();
  };
  constexpr size_t kParallelDecodeMin = 1024;
  if (options_.verify_reads && events >= kParallelDecodeMin &&
      values.size() > 1) {
    const size_t half = values.size() / 2;
    absl::Status second;
    std::thread helper([&] { second = decode(half, values.size()); });
    absl::Status first = decode(0, half);
    helper.join();
    RETURN_IF_ERROR(first);
    RETURN_IF_ERROR(second);
  } else {
    RETURN_IF_ERROR(decode(0, values.size()));
  }
  std::vector<RecordedEvent> out;
  out.reserve(std::min(events, limit));
  for (size_t i = 0; i < records.size(); ++i) {
    if (options_.verify_reads && i > 0 &&
        records[i].front().prev_hash != records[i - 1].back().hash) {
      return absl::DataLossError(absl::StrCat(
          "event log record at position ", records[i].front().position,
          ": chain link broken (previous hash does not match)"));
    }
    for (RecordedEvent& e : records[i]) {
      if (e.position < from || e.position > to || out.size() == limit) continue;
      out.push_back(std::move(e));
    }
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
  from_version = std::max<uint64_t>(from_version, 1);
  // Each index entry names the record holding the stream's versions up to
  // its key's (record_format.h): the first entry at or past from_version
  // holds it.
  std::vector<std::string> keys;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions()));
    uint64_t covered = from_version - 1;
    std::string id;
    uint64_t version = 0;
    for (it->Seek(rf::StreamKey(stream_id, from_version));
         it->Valid() && it->key().starts_with(prefix) &&
         covered - from_version + 1 < limit;
         it->Next()) {
      absl::StatusOr<uint64_t> position =
          rf::DecodeFixed64(ToView(it->value()));
      if (!position.ok() ||
          !rf::ParseStreamKey(ToView(it->key()), &id, &version).ok() ||
          version <= covered) {
        return absl::DataLossError(absl::StrCat(
            "stream index of \"", stream_id, "\" after version ", covered,
            ": malformed"));
      }
      if (*position > head) break;  // Not yet published.
      keys.push_back(rf::LogKey(*position));
      covered = version;
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "reading a stream index"));
  }
  if (keys.empty()) return out;
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<std::string> values;
  std::vector<rocksdb::Status> statuses =
      db_->MultiGet(rocksdb::ReadOptions(), slices, &values);
  uint64_t expected_version = from_version;
  std::vector<RecordedEvent> record;
  for (size_t i = 0; i < keys.size() && out.size() < limit; ++i) {
    const uint64_t position = *rf::ParseLogKey(keys[i]);
    if (statuses[i].IsNotFound()) {
      return absl::DataLossError(absl::StrCat("event log record at position ",
                                              position, ": missing"));
    }
    RETURN_IF_ERROR(FromRocks(statuses[i], "reading the event log"));
    record.clear();
    RETURN_IF_ERROR(rf::DecodeRecordValue(position, values[i],
                                          options_.verify_reads, &record));
    const size_t before = out.size();
    for (RecordedEvent& r : record) {
      if (r.stream_id != stream_id || r.stream_version < expected_version ||
          out.size() == limit) {
        continue;
      }
      if (r.stream_version != expected_version) break;
      ++expected_version;
      out.push_back(std::move(r));
    }
    if (out.size() == before) {
      return absl::DataLossError(absl::StrCat(
          "event log record at position ", position,
          ": does not match the stream index of \"", stream_id, "\""));
    }
  }
  return out;
}

absl::StatusOr<std::optional<AppendResult>> RocksDbEventStore::FindRequest(
    const std::string& request_id) const {
  if (request_id.empty()) return std::optional<AppendResult>();
  std::string stored;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), rf::RequestKey(request_id), &stored);
  if (s.IsNotFound()) return std::optional<AppendResult>();
  RETURN_IF_ERROR(FromRocks(s, "reading the request index"));
  ASSIGN_OR_RETURN(rf::RequestEntry entry, rf::DecodeRequestValue(stored));
  // Only what the published head covers counts as committed.
  if (entry.result.last_position > Head().position) {
    return std::optional<AppendResult>();
  }
  entry.result.deduplicated = true;
  return std::optional<AppendResult>(std::move(entry.result));
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

absl::Status RocksDbEventStore::SaveSnapshotParts(
    uint64_t position, const std::vector<SnapshotPart>& parts) {
  if (options_.read_only) {
    return absl::FailedPreconditionError("event store is open read-only");
  }
  // One saver at a time, so that the saved position only grows.
  absl::MutexLock lock(&snapshot_mu_);
  ASSIGN_OR_RETURN(uint64_t saved, SavedSnapshotPosition(nullptr));
  RETURN_IF_ERROR(
      rf::ValidateSnapshotParts(position, Head().position, saved, parts));
  std::vector<const SnapshotPart*> sorted;
  sorted.reserve(parts.size());
  size_t bytes = 64;
  for (const SnapshotPart& part : parts) {
    sorted.push_back(&part);
    bytes += part.key.size() + part.blob.size() + 16;
  }
  rocksdb::WriteBatch batch(bytes);
  PutPartsInKeyOrder(std::move(sorted), batch);
  batch.Put(rf::MetaSnapshotKey(), rf::EncodeFixed64(position));
  // Every published record is synced and was sealed by this store: the
  // verified-through mark moves up to the head.
  const LogHead head = Head();
  if (head.position > 0) {
    batch.Put(rf::MetaVerifiedKey(),
              rf::EncodeVerifiedMark({head.position, head.hash}));
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Write(wo, &batch), "saving a snapshot");
}

absl::StatusOr<uint64_t> RocksDbEventStore::SavedSnapshotPosition(
    const rocksdb::Snapshot* view) const {
  rocksdb::ReadOptions ro;
  ro.snapshot = view;
  std::string value;
  rocksdb::Status s = db_->Get(ro, rf::MetaSnapshotKey(), &value);
  if (s.IsNotFound()) return uint64_t{0};
  RETURN_IF_ERROR(FromRocks(s, "reading the snapshot position"));
  if (value.size() != 8) {
    return absl::DataLossError("the snapshot position is not 8 bytes");
  }
  return rf::DecodeFixed64(value);
}

absl::StatusOr<uint64_t> RocksDbEventStore::ReadSnapshotParts(
    const SnapshotPartFilter& filter, const SnapshotPartVisitor& visit) const {
  // One view: the position and the parts as one save left them. A
  // secondary instance has no snapshots, and its view only moves when it
  // catches up with the primary, which it does not do meanwhile.
  const rocksdb::Snapshot* view =
      options_.secondary_path.empty() ? db_->GetSnapshot() : nullptr;
  auto release = absl::MakeCleanup([&] {
    if (view != nullptr) db_->ReleaseSnapshot(view);
  });
  ASSIGN_OR_RETURN(uint64_t position, SavedSnapshotPosition(view));
  rocksdb::ReadOptions ro;
  ro.snapshot = view;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  // A family's keys share the family's key as a prefix, and sort together.
  const std::string prefix = filter.family.empty()
                                 ? std::string(1, rf::kSnapshotPrefix)
                                 : rf::SnapshotKey(filter.family);
  it->Seek(prefix);
  while (it->Valid() && it->key().starts_with(prefix)) {
    ASSIGN_OR_RETURN(absl::string_view key,
                     rf::ParseSnapshotKey(ToView(it->key())));
    const size_t nul = key.find('\0');
    if (filter.top_level_only && nul != key.npos) {
      // Past the parts under this one: they all start with "parent\0".
      it->Seek(rf::SnapshotKey(absl::StrCat(key.substr(0, nul), "\x01")));
      continue;
    }
    if (rf::SnapshotKeySelected(filter, key)) {
      RETURN_IF_ERROR(visit(key, ToView(it->value())));
    }
    it->Next();
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the snapshot"));
  return position;
}

absl::StatusOr<std::optional<std::string>> RocksDbEventStore::ReadSnapshotPart(
    absl::string_view key) const {
  std::string blob;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), rf::SnapshotKey(key), &blob);
  if (s.IsNotFound()) return std::nullopt;
  RETURN_IF_ERROR(FromRocks(s, "reading a snapshot part"));
  return blob;
}

absl::StatusOr<LogHead> RocksDbEventStore::Checkpoint(
    const std::string& dir) const {
  std::error_code error;
  if (std::filesystem::exists(dir, error)) {
    return absl::AlreadyExistsError(
        absl::StrCat(dir, " exists; a backup goes to a new directory"));
  }
  rocksdb::Checkpoint* raw = nullptr;
  RETURN_IF_ERROR(
      FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  RETURN_IF_ERROR(FromRocks(checkpoint->CreateCheckpoint(dir), "checkpoint"));
  RocksDbEventStoreOptions options;
  options.path = dir;
  options.create_if_missing = false;
  options.read_only = true;
  options.verify_on_open = true;
  options.env = options_.env;
  ASSIGN_OR_RETURN(std::unique_ptr<RocksDbEventStore> copy,
                   RocksDbEventStore::Open(options));
  const LogHead head = copy->Head();
  copy->Close();
  return head;
}

void RocksDbEventStore::Close() {
  LogHead head;
  {
    absl::MutexLock lock(&head_mu_);
    if (closed_) return;
    closed_ = true;
    head = head_;
  }
  bool healthy = false;
  {
    absl::MutexLock lock(&mu_);
    healthy = background_error_.ok();
  }
  // A clean close: the next open checks only what comes after.
  if (!options_.read_only && healthy) (void)WriteVerifiedMark(head);
}

}  // namespace poledger
