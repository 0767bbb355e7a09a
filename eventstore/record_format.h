// The on-disk key and value layout of the event log, and the hashing and
// validation shared by every EventStore implementation.
//
// Grammar (all integers big-endian unless varint; one RocksDB column family):
//
//   key            := log_key | stream_key | request_key
//                   | snapshot_key | meta_key | snapshot_meta_key
//   log_key        := 'L' fixed64(position)              -> record_value
//   stream_key     := 'S' fixed32(len(stream_id)) stream_id fixed64(version)
//                                                        -> fixed64(position)
//   request_key    := 'R' request_id                     -> request_value
//   snapshot_key   := 'T' part_key                       -> part blob
//   meta_key       := 'M' "format"                       -> fixed32(2)
//   snapshot_meta_key := 'M' "snapshot"                  -> fixed64(position)
//   committed_key  := 'M' "committed"                    -> fixed64(position)
//
//   record_value   := 0x01 hash:32 hashed            (a record of one event)
//                   | 0x02 hash:32 hashed_many       (of n >= 2 events)
//   hashed         := prev_hash:32 fixed64(position) body
//   body           := varint64(stream_version) lp(stream_id) lp(event_type)
//                     lp(payload) lp(event_id) lp(request_id)
//                     lp(correlation_id) lp(actor) fixed64(timestamp_micros)
//   hashed_many    := prev_hash:32 fixed64(first_position) varint64(n)
//                     lp(request_id) lp(correlation_id) lp(actor)
//                     fixed64(timestamp_micros)
//                     varint64(s) stream{s} event{n}
//   stream         := lp(stream_id) varint64(first_version)
//   event          := varint64(stream_index) lp(event_type) lp(payload)
//                     lp(event_id_or_empty)
//   lp(x)          := varint64(len(x)) x
//   hash           := SHA-256(hashed | hashed_many)
//   request_value  := 0x01 content_digest:32 fixed64(first_position)
//                     fixed64(last_position) varint64(n) varint64(version)*n
//
// One append is one record, stored under the position of its first event;
// its events take the positions after it (first_position + i) and, within
// each stream, the versions after the stream's first_version in order. The
// metadata (request id, correlation id, actor, time) is the append's, shared
// by its events. An event id of "evt-" and its position is stored empty.
// A record of one event keeps format 1, so a log written before format 2
// (meta "format" 1: every record of one event) reads unchanged.
//
// The stream index holds one entry per stream and record: the key of the
// last version the record gives the stream, the value the record's first
// position. A seek to a stream's version finds the record holding it.
//
// timestamp_micros is microseconds since the Unix epoch as a two's-complement
// int64. prev_hash of the first record is 32 zero bytes. The position is
// stored in the value as well as the key, so a record moved to another key
// fails. A stream's current version is the version of its last stream_key.
// Keys of one kind sort by position (or stream, then version), so a prefix
// scan reads them in order.
//
// Thread safety: every function here is pure and thread-safe.
#ifndef POLEDGER_EVENTSTORE_RECORD_FORMAT_H_
#define POLEDGER_EVENTSTORE_RECORD_FORMAT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "eventstore/event_store.h"

namespace poledger {
namespace record_format {

inline constexpr char kLogPrefix = 'L';
inline constexpr char kStreamPrefix = 'S';
inline constexpr char kRequestPrefix = 'R';
inline constexpr char kSnapshotPrefix = 'T';
inline constexpr char kMetaPrefix = 'M';
inline constexpr char kKeyPrefix = 'K';       // Keys beside the log.
inline constexpr char kKeyIndexPrefix = 'k';  // Their positions.
inline constexpr uint8_t kRecordFormat = 1;      // One event.
inline constexpr uint8_t kManyRecordFormat = 2;  // Several events.
// The log format a store writes (meta "format"), and the one before it,
// which it reads and upgrades by writing the new number: format 1 is format
// 2 without records of several events.
inline constexpr uint32_t kLogFormat = 2;
inline constexpr uint32_t kLogFormatOneEventRecords = 1;
inline constexpr uint8_t kRequestFormat = 1;

std::string LogKey(uint64_t position);
// Returns the position of a log key; INVALID_ARGUMENT if malformed.
absl::StatusOr<uint64_t> ParseLogKey(absl::string_view key);
std::string StreamKey(absl::string_view stream_id, uint64_t version);
// The common prefix of every stream_key of `stream_id`.
std::string StreamKeyPrefix(absl::string_view stream_id);
// Splits a stream_key into its stream id and version; INVALID_ARGUMENT if
// malformed.
absl::Status ParseStreamKey(absl::string_view key, std::string* stream_id,
                            uint64_t* version);
std::string RequestKey(absl::string_view request_id);
std::string SnapshotKey(absl::string_view part_key);
// Returns the part key of a snapshot key (a view into `key`);
// INVALID_ARGUMENT if malformed.
absl::StatusOr<absl::string_view> ParseSnapshotKey(absl::string_view key);
std::string MetaSnapshotKey();
// The store keys of a key beside the log (KeyEntry) and of its index entry
// under `position`; ParseKeyKey returns the id (a view into `key`),
// INVALID_ARGUMENT if malformed.
std::string KeyKey(absl::string_view id);
absl::StatusOr<absl::string_view> ParseKeyKey(absl::string_view key);
std::string KeyIndexKey(uint64_t position, absl::string_view id);
// The position and id of an index entry; INVALID_ARGUMENT if malformed.
absl::Status ParseKeyIndexKey(absl::string_view key, uint64_t* position,
                              absl::string_view* id);
// INVALID_ARGUMENT naming `field`[i] and the reason unless every key's id
// is 1 to kMaxKeyIdBytes bytes and its own, and every value at most
// kMaxKeyValueBytes.
absl::Status ValidateKeyList(absl::string_view field,
                             const std::vector<KeyEntry>& keys);
// Whether `filter` selects the part whose key is `part_key`.
bool SnapshotKeySelected(const SnapshotPartFilter& filter,
                         absl::string_view part_key);

// Returns INVALID_ARGUMENT naming the part and the reason unless `parts`
// may be saved at `position` over a log whose head is `head` and whose
// saved snapshot is at `saved_position`.
absl::Status ValidateSnapshotParts(uint64_t position, uint64_t head,
                                   uint64_t saved_position,
                                   const std::vector<SnapshotPart>& parts);
// Returns INVALID_ARGUMENT naming `field`[i] and the reason unless every
// part's key is 1 to kMaxSnapshotKeyBytes bytes and its own, and every blob
// is within kMaxSnapshotBytes.
absl::Status ValidatePartList(absl::string_view field,
                              const std::vector<SnapshotPart>& parts);
std::string MetaFormatKey();

// The verified-through mark (key "Mverified"): every record up to
// `position` was checked at an open, or appended by a server that sealed it,
// and the record at `position` has hash `hash`. Stored as
//   fixed64(position) hash:32 check:32
// where check = SHA-256("poledger verified-through mark" position hash), so
// that a damaged mark is ignored rather than trusted.
struct VerifiedMark {
  uint64_t position = 0;
  Hash hash{};
};
std::string MetaVerifiedKey();
std::string EncodeVerifiedMark(const VerifiedMark& mark);
// DATA_LOSS if `value` is not a mark or its check does not match.
absl::StatusOr<VerifiedMark> DecodeVerifiedMark(absl::string_view value);

// The committed mark (key "Mcommitted"): every record up to its position was
// committed in a replicated shard (a lower bound, saved now and then), so a
// node that restarts shows them before any leader tells it again.
std::string MetaCommittedKey();

std::string EncodeFixed64(uint64_t value);
absl::StatusOr<uint64_t> DecodeFixed64(absl::string_view bytes);

// A record: the events of one append, in position order, sharing their
// hashes, metadata and record framing.
using RecordEvents = absl::Span<const RecordedEvent>;

// Encodes `record` (its first position, hashes and events) as a
// record_value. REQUIRES: a record as Decode gives or Seal seals.
std::string EncodeRecordValue(RecordEvents record);

// Decodes a record_value stored under `first_position`, appending its
// events (with their positions, stream versions and framing) to `out`.
// With `verify`, recomputes the record's hash: DATA_LOSS naming the
// position on a mismatch; DATA_LOSS also for any malformed value. On error
// `out` is as it was.
absl::Status DecodeRecordValue(uint64_t first_position,
                               absl::string_view value, bool verify,
                               std::vector<RecordedEvent>* out);

// A record of one event: Encode and Decode as above, for tools and tests
// that look at one record. Decoding a record of several events is
// FAILED_PRECONDITION.
inline std::string EncodeRecordValue(const RecordedEvent& alone) {
  return EncodeRecordValue(RecordEvents(&alone, 1));
}
absl::StatusOr<RecordedEvent> DecodeOneEventRecord(uint64_t position,
                                                   absl::string_view value,
                                                   bool verify);

// The number of events of a record_value, read from its header only;
// DATA_LOSS if it has none.
absl::StatusOr<uint32_t> RecordEventCount(absl::string_view value);

// Sets the framing of `record` (its events' positions must be consecutive)
// and every event's hash from its prev_hash, position and body; returns its
// record_value.
std::string SealRecord(absl::Span<RecordedEvent> record);
inline std::string SealRecord(RecordedEvent* alone) {
  return SealRecord(absl::Span<RecordedEvent>(alone, 1));
}

// Returns the hash a record must carry: SHA-256 of its hashed part.
Hash ComputeRecordHash(RecordEvents record);
inline Hash ComputeRecordHash(const RecordedEvent& alone) {
  return ComputeRecordHash(RecordEvents(&alone, 1));
}

// Calls `visit(first, count)` for each record of `events` (consecutive
// events of one log, in order): the events [first, first + count) of one
// record. Returns DATA_LOSS if an event's framing disagrees with where it
// is, or a record is cut at either end.
absl::Status ForEachRecord(
    absl::Span<const RecordedEvent> events,
    const std::function<absl::Status(size_t first, size_t count)>& visit);

// Whether `event` may come right after `head` in one chain: the first
// event of a record links to the head's hash, a later one shares it.
inline bool LinksTo(const RecordedEvent& event, const LogHead& head) {
  return event.position == event.record_first() ? event.prev_hash == head.hash
                                                : event.hash == head.hash;
}

// How many of `events` (consecutive events of one log, starting at a
// record's first) make whole records: a read cut by its limit ends inside
// the last record it reached.
size_t WholeRecordEvents(absl::Span<const RecordedEvent> events);

// The stream index entries of a record: (stream key of the last version it
// gives each stream, its first position), in the order the streams appear.
void AppendStreamEntries(RecordEvents record,
                         std::vector<std::pair<std::string, uint64_t>>* out);

// The stored outcome of a committed request id.
struct RequestEntry {
  Hash content_digest{};
  AppendResult result;
};
std::string EncodeRequestValue(const RequestEntry& entry);
absl::StatusOr<RequestEntry> DecodeRequestValue(absl::string_view value);

// Returns the digest of what makes two appends "the same request": streams,
// expected versions, event types and payloads (not metadata or event ids).
Hash RequestContentDigest(const AppendRequest& request);

// The digest the idempotency check compares: RequestContentDigest for a
// request with a request id, a zero Hash (never compared) without one.
inline Hash IdempotencyDigest(const AppendRequest& request) {
  return request.metadata.request_id.empty() ? Hash{}
                                             : RequestContentDigest(request);
}

// Returns INVALID_ARGUMENT naming the field and the reason if `request` is
// malformed (see EventStore::Append).
absl::Status ValidateAppendRequest(const AppendRequest& request);

// The request entries of copied records (EventStore::Replicate): each run
// of consecutive records that carry one non-empty request id is one append
// (a request id commits once), and its digest is RequestContentDigest of
// that append with exact expected versions, as the ledger appends. `earlier`
// holds the records just before `records` of a run that `records` continues
// (empty if none). Returns (request id, entry) pairs in log order.
std::vector<std::pair<std::string, RequestEntry>> RebuildRequestEntries(
    const std::vector<RecordedEvent>& earlier,
    const std::vector<RecordedEvent>& records);

// A planned record: its events and its encoded record_value.
struct PlannedRecord {
  std::vector<RecordedEvent> events;
  std::string value;

  uint64_t first_position() const { return events.front().position; }
};

// Plans appends on top of a committed log: checks expected versions, assigns
// positions and stream versions and links the hash chain. Plans accumulate,
// so one planner can lay out a whole group commit.
//
// Not thread-safe: use from one thread at a time.
class BatchPlanner {
 public:
  // `committed_version` returns a stream's committed version (0 if none).
  BatchPlanner(LogHead head,
               std::function<uint64_t(const std::string&)> committed_version);

  // Plans `request` as one record after every plan made so far. On
  // success the record is returned and becomes the basis of the next plan;
  // on ABORTED (a version mismatch) nothing changes.
  // REQUIRES: ValidateAppendRequest(request).ok().
  absl::StatusOr<PlannedRecord> Plan(const AppendRequest& request,
                                     AppendResult* result);

  // Plans events copied from another log (whole records) after every plan
  // so far, keeping their positions, framing and hashes. Errors (nothing
  // changes): FAILED_PRECONDITION unless the first is at the position after
  // the head; DATA_LOSS naming the position for a record that does not link
  // to the one before it, whose hash does not match its fields, that is cut
  // short, or that is not the next version of its stream; INVALID_ARGUMENT
  // for a field over the append limits.
  absl::StatusOr<std::vector<PlannedRecord>> Copy(
      const std::vector<RecordedEvent>& events);

  // The head and stream versions after every successful plan.
  const LogHead& head() const { return head_; }
  const absl::flat_hash_map<std::string, uint64_t>& planned_versions() const {
    return planned_versions_;
  }

 private:
  uint64_t VersionOf(const std::string& stream_id) const;

  LogHead head_;
  std::function<uint64_t(const std::string&)> committed_version_;
  absl::flat_hash_map<std::string, uint64_t> planned_versions_;
};

}  // namespace record_format
}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_RECORD_FORMAT_H_
