// RocksDbEventStore is the durable EventStore: an embedded RocksDB database
// laid out as record_format.h describes.
//
// Writes use group commit: concurrent appends queue up; the first blocked
// Append in the queue becomes the leader (asynchronous appends are led by a
// commit thread of the store's own), plans every waiting append against one
// consistent view (expected versions, positions, hash chain), writes them as
// one WriteBatch, syncs the WAL once and answers them all. A group holds
// every append queued when its leader starts, so its size is bounded by the
// number of concurrent callers.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_EVENTSTORE_ROCKSDB_EVENT_STORE_H_
#define POLEDGER_EVENTSTORE_ROCKSDB_EVENT_STORE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "eventstore/event_store.h"

namespace rocksdb {
class DB;
class WriteBatch;
class Snapshot;
class Env;
class Status;
}  // namespace rocksdb

namespace poledger {
namespace record_format {
class BatchPlanner;
}  // namespace record_format

// What one group commit wrote (for metrics).
struct CommitStats {
  int appends = 0;           // Append requests committed together.
  uint64_t events = 0;       // Records they added.
  uint64_t bytes = 0;        // Size of the write batch.
  double write_seconds = 0;  // The RocksDB write, WAL sync included.
  bool ok = true;
};

struct RocksDbEventStoreOptions {
  // Directory of the database. Required.
  std::string path;

  // Creates the directory and an empty log if none exists. When false, Open
  // on a missing log fails with NOT_FOUND.
  // Default: true
  bool create_if_missing = true;

  // Syncs the WAL before an append is acknowledged (once per group commit).
  // With false a process crash still loses nothing acknowledged, but a
  // machine or power failure can lose the most recent appends.
  // Default: true
  bool sync = true;

  // Open reads every record and checks its hash and chain link, so a
  // damaged log is refused before anything is served. Costs one sequential
  // read of the whole log at open. With false, Open checks only the last two
  // records; reads still verify what they return.
  // Default: true
  bool verify_on_open = true;

  // With verify_on_open: check only the records after the verified-through
  // mark (and the mark's own record, whose hash the mark holds), so that a
  // restart costs the records appended since the last snapshot or clean
  // close, not the whole log. A missing or damaged mark means every record.
  // With false, every record (the old behaviour; poledger-audit verify
  // always checks every record and the mark).
  // The mark moves to the head after an open's verification, at every saved
  // snapshot and at Close.
  // Default: true
  bool verify_from_mark = true;

  // Reads recompute each returned record's hash and check chain links
  // between consecutive records (DATA_LOSS on a mismatch). Costs one SHA-256
  // per record read.
  // Default: true
  bool verify_reads = true;

  // Size of RocksDB's block cache for reads.
  // Default: 64 MiB
  size_t block_cache_bytes = 64u << 20;

  // Open the database without writing anything: Append and SaveSnapshotParts
  // fail with FAILED_PRECONDITION. For audit tools on a copy (checkpoint) of
  // a live data directory.
  // Default: false
  bool read_only = false;

  // Non-empty: open as a secondary instance of a live database (the server's
  // data directory), keeping the secondary's own files here. Safe while the
  // primary runs; reads see the primary as of Open. Implies read_only.
  // Default: ""
  std::string secondary_path;

  // Called after every group commit, on the committing thread and under
  // the store's lock: it must be quick and must not call the store.
  // Default: none
  std::function<void(const CommitStats&)> on_commit;

  // RocksDB environment; nullptr uses the default. Not owned; must outlive
  // the store. Tests pass one that injects I/O failures.
  // Default: nullptr
  rocksdb::Env* env = nullptr;

  // Called when the store starts refusing writes (with the refusal) and
  // when it takes them again (with OK), on a thread of the store's or of
  // RocksDB's and under no lock of the store's: it may log and set health,
  // and must not block on the store. Calls come in the order the changes
  // happen and never twice in a row with the same outcome.
  // Default: none
  std::function<void(const absl::Status&)> on_write_health;

  // After a full disk (ENOSPC on a write, a flush, a compaction or a
  // snapshot) the store refuses writes and tries to resume (RocksDB's
  // DB::Resume: flush the memtables, start a new WAL) this often once the
  // file system has kResumeMarginBytes free, backing off up to 16 times
  // this while tries fail and the free space does not grow: writes come
  // back by themselves once space is freed, with no restart. Shorter
  // notices freed space sooner; a try that fails costs a flush attempt. Other I/O errors (a failed
  // sync, a failed read) are sticky: nobody knows what reached the disk,
  // so only a restart (which replays the WAL) takes writes again.
  // Default: 1 s
  absl::Duration resume_interval = absl::Seconds(1);
};

// What the store knows of its own writability (for health and metrics).
struct WriteHealth {
  // OK, or the refusal every append gets now.
  absl::Status status;
  // Whether the refusal ends by itself once space is freed (a full disk).
  bool resumes_by_itself = false;
  // Times the store started refusing writes, and times it resumed.
  uint64_t failures = 0;
  uint64_t recoveries = 0;
  // Failures by cause: "no_space", "io_error", "corruption", "other".
  std::map<std::string, uint64_t> failures_by_cause;
};

// Free space below which a full store does not even try to resume.
inline constexpr uint64_t kResumeMarginBytes = 1u << 20;

class RocksDbEventStore final : public EventStore {
 public:
  // Opens (or creates) the log at options.path, recovering head position,
  // chain hash and stream versions.
  // Errors: INVALID_ARGUMENT for bad options; NOT_FOUND if missing and
  // !create_if_missing; DATA_LOSS naming the first position whose record
  // fails its checksum, its chain link or is missing; UNAVAILABLE if RocksDB
  // cannot open the directory (e.g. another process holds its lock).
  static absl::StatusOr<std::unique_ptr<RocksDbEventStore>> Open(
      const RocksDbEventStoreOptions& options);

  ~RocksDbEventStore() override;

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
  // Keys beside the log (rocksdb_keys.cc).
  absl::StatusOr<std::optional<std::string>> ReadKey(
      absl::string_view id) const override;
  absl::Status PutKeys(uint64_t position,
                       const std::vector<KeyEntry>& keys) override;
  absl::Status VisitKeys(const KeyVisitor& visit) const override;
  absl::StatusOr<std::vector<KeyEntry>> KeysAddedIn(
      uint64_t first, uint64_t last) const override;
  void Close() override;

  // Walks the whole log checking every record's hash and chain link.
  // Returns the head, or DATA_LOSS naming the first broken position.
  absl::StatusOr<LogHead> VerifyLog() const;

  // Verifies up to `limit` records after `start` (a record known good: its
  // position and hash; position 0 for the log's start), none past
  // `through`: each one's hash and its link to the one before. Returns the
  // last record checked (`start` if none), or DATA_LOSS naming the first
  // broken position. Reads around the block cache. A background scrub
  // walks the log in such steps (server/scrubber.h).
  absl::StatusOr<LogHead> VerifyAfter(LogHead start, uint64_t through,
                                      size_t limit) const;

  // Checks the verified-through mark against the log: it passes its own
  // check, is not past the head, and names the hash of the record at its
  // position. OK without a mark. DATA_LOSS saying what differs.
  absl::Status CheckVerifiedMark() const;
  // The mark's position, 0 without one.
  uint64_t VerifiedMarkPosition() const;

  // The position of the saved snapshot (0: none).
  absl::StatusOr<uint64_t> SnapshotPosition() const {
    return SavedSnapshotPosition(nullptr);
  }

  // The committed mark (record_format.h): 0 without one. Saving it does not
  // sync; a mark lost in a crash leaves the one before, a lower bound still.
  // Saving fails with INVALID_ARGUMENT past the head.
  absl::StatusOr<uint64_t> CommittedMark() const;
  absl::Status SaveCommittedMark(uint64_t position);

  // True while the store refuses writes (see resume_interval).
  bool write_failed() const;
  WriteHealth write_health() const;

  // What Open checked: records from `from` to the head.
  struct OpenCheck {
    uint64_t from = 0;  // 0: nothing checked (empty log, or verify off).
    uint64_t records = 0;
    // What RocksDB's recovery skipped as damaged ("" nothing): the tail of
    // a WAL that ends in a torn record. With synced appends only a write
    // never acknowledged can be torn by a crash; anything else is damage.
    std::string recovery_skipped;
  };
  OpenCheck open_check() const { return open_check_; }

  // Writes a consistent copy of the database (log and snapshots) to `dir`,
  // which must not exist, while appends go on (RocksDB's Checkpoint: hard
  // links where `dir` is on the same file system, copies otherwise). Opens
  // the copy read-only, verifies its whole chain, and returns the head it
  // holds. A server started on `dir` serves that log.
  // Errors: ALREADY_EXISTS if `dir` exists; DATA_LOSS if the copy does not
  // verify; the file system's errors.
  absl::StatusOr<LogHead> Checkpoint(const std::string& dir) const;

 private:
  struct Writer;
  class ErrorListener;

  RocksDbEventStore(RocksDbEventStoreOptions options,
                    std::unique_ptr<rocksdb::DB> db);
  absl::Status Recover();
  // Verifies the records after `start` (a record already known good).
  absl::StatusOr<LogHead> VerifyFrom(LogHead start) const;
  // The record at the mark's position, if the mark is intact and it holds.
  absl::StatusOr<LogHead> TrustedMark(uint64_t head) const;
  // Moves the mark to `head` (synced).
  absl::Status WriteVerifiedMark(const LogHead& head);
  // Queues `w`; returns true if the caller must make sure someone leads.
  bool Enqueue(Writer* w);
  // Commits groups until the queue is empty or a blocked appender takes
  // over. `self` is the calling appender's writer, or nullptr for the commit
  // thread.
  void Lead(Writer* self);
  // Asks the commit thread (started on first use) to lead.
  void RequestCommitThread();
  void CommitLoop();
  // Starts refusing writes with `error` (a RocksDB failure while doing
  // `what`), unless already refusing; starts the resume thread for a full
  // disk. The caller then calls ReportWriteHealth, outside mu_.
  void FailWritesLocked(const rocksdb::Status& error, absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FailWritesLocked and ReportWriteHealth, for RocksDB's background errors.
  void FailWrites(const rocksdb::Status& error, absl::string_view what);
  // The resume thread: while the refusal is a full disk, tries DB::Resume
  // every resume_interval once the file system has room.
  void ResumeLoop();
  // Free bytes of the file system holding the log (max when unknown).
  uint64_t FreeBytes() const;
  // Calls on_write_health with the current state if it changed since the
  // last call.
  void ReportWriteHealth();
  // Plans, writes and publishes `group` (a prefix of writers_).
  void CommitGroup(const std::vector<Writer*>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plans a Replicate's records after `planner`'s and adds them, with
  // their request entries, to `batch`.
  absl::Status PlanCopy(record_format::BatchPlanner& planner,
                        const std::vector<RecordedEvent>& records,
                        rocksdb::WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The position of the saved snapshot as seen by `view` (nullptr: now).
  absl::StatusOr<uint64_t> SavedSnapshotPosition(
      const rocksdb::Snapshot* view) const;
  // Reads the record holding `position` (verified if `verify`) into `out`.
  absl::Status ReadRecordHolding(uint64_t position, bool verify,
                                 std::vector<RecordedEvent>* out) const;
  // Reads events [from, to] ascending, verifying them if configured.
  absl::StatusOr<std::vector<RecordedEvent>> ReadRange(uint64_t from,
                                                       uint64_t to,
                                                       size_t limit) const;

  // Constant after construction.
  const RocksDbEventStoreOptions options_;
  const std::unique_ptr<rocksdb::DB> db_;

  // The group-commit queue; its front is the current leader. Held only to
  // push, to take a group and to pop it.
  absl::Mutex queue_mu_;
  std::deque<Writer*> writers_ ABSL_GUARDED_BY(queue_mu_);
  // True while some thread leads (commits groups); only then may the queue
  // be non-empty without a leader being asked for.
  bool leader_active_ ABSL_GUARDED_BY(queue_mu_) = false;

  // The commit thread leads groups of asynchronous appends.
  absl::Mutex commit_mu_;
  int lead_requests_ ABSL_GUARDED_BY(commit_mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(commit_mu_) = false;
  std::thread commit_thread_;

  // Committed writer state. The leader holds mu_ while it plans a group and
  // publishes it, but not while RocksDB writes and syncs.
  mutable absl::Mutex mu_;
  // Committed version of every stream.
  absl::flat_hash_map<std::string, uint64_t> versions_ ABSL_GUARDED_BY(mu_);
  // While not OK every append fails with it: until a resume for a full
  // disk (resumable_), until reopened for any other failure.
  absl::Status background_error_ ABSL_GUARDED_BY(mu_);
  bool resumable_ ABSL_GUARDED_BY(mu_) = false;
  // Set by CommitGroup when it failed writes: report once mu_ is released.
  bool report_pending_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t recoveries_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, uint64_t> failures_by_cause_ ABSL_GUARDED_BY(mu_);
  std::thread resume_thread_ ABSL_GUARDED_BY(mu_);
  bool resume_stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Serialises on_write_health calls; the outcome last reported.
  absl::Mutex report_mu_;
  bool reported_failed_ ABSL_GUARDED_BY(report_mu_) = false;
  // Forwards RocksDB's background errors (flushes, compactions) here.
  std::shared_ptr<ErrorListener> listener_;

  // Serialises Replicate calls.
  absl::Mutex replicate_mu_;
  // Serialises SaveSnapshotParts calls.
  absl::Mutex snapshot_mu_;
  OpenCheck open_check_;

  // Published state, read by readers and waiters without touching mu_.
  mutable absl::Mutex head_mu_;
  LogHead head_ ABSL_GUARDED_BY(head_mu_);
  bool closed_ ABSL_GUARDED_BY(head_mu_) = false;
};

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_ROCKSDB_EVENT_STORE_H_
