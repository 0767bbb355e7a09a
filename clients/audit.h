// The auditor's operations on an event log, used by poledger-audit:
// verify the hash chain, export events as JSON lines, rebuild purchase
// orders as of a past point, and tell one purchase order's history.
//
// They read through the EventStore interface only, so they work on a live
// server's data directory opened as a RocksDB secondary instance, or online
// through RemoteEventStore.
//
// Thread safety: functions; a store must not be closed while they run.
#ifndef POLEDGER_CLIENTS_AUDIT_H_
#define POLEDGER_CLIENTS_AUDIT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "eventstore/rocksdb_event_store.h"
#include "ledger/personal_data.h"

namespace poledger {
namespace core {
struct Shard;
}  // namespace core

namespace audit {

// Opens `data_dir` read-only as a secondary instance (safe while a server
// runs), with the secondary's files in a fresh temporary directory that is
// removed when the store goes away.
absl::StatusOr<std::shared_ptr<RocksDbEventStore>> OpenDataDir(
    const std::string& data_dir);

struct VerifyReport {
  uint64_t records = 0;  // Records checked.
  LogHead head;          // Of the intact prefix.
  // Empty when every record and link is intact; else why the first broken
  // position (first_broken) fails.
  std::string problem;
  uint64_t first_broken = 0;
  // With a shard to check against: records of accounts another shard owns,
  // and the first of them ("position N: account \"A\" of shard S").
  uint64_t foreign_records = 0;
  std::string first_foreign;
};

// Walks the whole log checking each record's hash, the chain links between
// records and that positions have no gap. `progress(done, total)` is called
// now and then.
// With `shard`, also checks that every record's account belongs to it.
absl::StatusOr<VerifyReport> Verify(
    const EventStore& store,
    const std::function<void(uint64_t, uint64_t)>& progress = nullptr,
    const core::Shard* shard = nullptr);

// Returns "" if the intact log has a record at `position` whose hash is
// `digest_hex` (as GetLogDigest reported it then), else why not: the log
// is shorter than that, or the record there has another hash (the log was
// rewritten since that digest was kept).
std::string CheckPinnedDigest(const EventStore& store, const VerifyReport& report,
                              uint64_t position, const std::string& digest_hex);

struct SnapshotReport {
  uint64_t snapshot_position = 0;  // Where the saved parts claim to be.
  uint64_t head = 0;               // Last position compared.
  uint64_t accounts = 0;           // Accounts compared.
  uint64_t parts = 0;              // Saved parts checked.
  // Empty when the state loaded from the snapshot plus the log after it
  // equals the state rebuilt from the whole log, and each saved part is
  // its account's state at the version it records; else the differences
  // (at most 20).
  std::vector<std::string> problems;
};

// Loads the state as the server does at start (snapshot, then the rest of
// the log), rebuilds every account from the whole log alone, and compares
// the two account by account; also checks each saved part against its
// account's stream. A snapshot bug cannot hide from this.
absl::StatusOr<SnapshotReport> CheckSnapshot(EventStore& store);

struct ExportFilter {
  std::string account_id;
  std::string purchase_order_id;
  std::vector<std::string> event_types;
  uint64_t from_position = 1;
  uint64_t to_position = UINT64_MAX;
};

// Writes each matching event as one JSON object per line (the
// poledger.v1.Event message: position, stream, version, type, time, actor,
// hashes and decoded payload). Returns how many were written.
absl::StatusOr<uint64_t> Export(const EventStore& store,
                                const ExportFilter& filter, std::ostream& out);

// Writes `records` as Export does (a set-aside file's, for example).
absl::Status ExportRecords(const std::vector<RecordedEvent>& records,
                           std::ostream& out);

// Writes the purchase orders of `account_id` (or only `purchase_order_id`)
// as of log position `position`, as JSON (poledger.v1.PurchaseOrder, the
// same shape GetPurchaseOrderAt returns), one per line. NOT_FOUND if the
// named purchase order did not exist then.
// With `keys`, the contacts are opened (README "Personal data"); without,
// they show no fields.
absl::Status Replay(const EventStore& store, const std::string& account_id,
                    const std::string& purchase_order_id, uint64_t position,
                    const PersonalData* keys, std::ostream& out);

// The personal data keys of a data directory's `store` (nullptr: none, or
// a server's log), with the key in `key_file`; nullptr without one.
absl::StatusOr<std::unique_ptr<PersonalData>> OpenKeys(
    const EventStore* store, const std::string& key_file);

// Writes one purchase order's timeline: each change with its time, actor
// and what changed, and the line and PO balance after each invoice or
// credit memo.
absl::Status History(const EventStore& store, const std::string& account_id,
                     const std::string& purchase_order_id, std::ostream& out);

}  // namespace audit
}  // namespace poledger

#endif  // POLEDGER_CLIENTS_AUDIT_H_
