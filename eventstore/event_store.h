// EventStore is poledger's append-only, hash-chained event log.
//
// Every record has a global position (1, 2, 3, ... with no gap, assigned at
// commit), belongs to one stream and has a version within that stream (1, 2,
// 3, ... with no gap). Each record carries the SHA-256 of its predecessor and
// of itself, so any edit, reordering or removal of a stored record is
// detectable (see record_format.h).
//
// Implementations: RocksDbEventStore (durable, rocksdb_event_store.h) and
// InMemoryEventStore (memory_event_store.h, for fast tests). Both pass one
// conformance suite (tests/eventstore/conformance_test.cc).
//
// Thread safety: every method of an EventStore is safe to call concurrently
// from any number of threads.
#ifndef POLEDGER_EVENTSTORE_EVENT_STORE_H_
#define POLEDGER_EVENTSTORE_EVENT_STORE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace poledger {

// A SHA-256 digest.
using Hash = std::array<uint8_t, 32>;

// Returns the lowercase hex form of `hash`.
std::string HashToHex(const Hash& hash);

// Limits enforced on every append; anything larger is INVALID_ARGUMENT.
inline constexpr size_t kMaxStreamIdBytes = 256;
inline constexpr size_t kMaxEventTypeBytes = 128;
inline constexpr size_t kMaxPayloadBytes = 1 << 20;  // 1 MiB per event.
inline constexpr size_t kMaxMetadataFieldBytes = 256;  // ids and actor.
inline constexpr size_t kMaxEventsPerAppend = 10000;
// The payloads of one append together; an append is one record.
inline constexpr size_t kMaxAppendPayloadBytes = 64u << 20;
inline constexpr size_t kMaxSnapshotBytes = 256u << 20;  // 256 MiB a part.
inline constexpr size_t kMaxSnapshotKeyBytes = 256;

// The version a writer expects a stream to be at before its append.
class ExpectedVersion {
 public:
  // Any version, including a stream that does not exist yet.
  static constexpr ExpectedVersion Any() { return ExpectedVersion(kAnyRaw); }
  // The stream must not exist (version 0).
  static constexpr ExpectedVersion NoStream() { return ExpectedVersion(0); }
  // The stream must be exactly at `version` (0 means no stream).
  static constexpr ExpectedVersion Exact(uint64_t version) {
    return ExpectedVersion(static_cast<int64_t>(version));
  }
  // Builds from the wire form used by the API: -1 any, 0 no stream, N >= 1
  // exact. Any other value is malformed and makes the append fail with
  // INVALID_ARGUMENT.
  static constexpr ExpectedVersion FromRaw(int64_t raw) {
    return ExpectedVersion(raw);
  }

  bool is_any() const { return raw_ == kAnyRaw; }
  bool is_valid() const { return raw_ >= kAnyRaw; }
  // REQUIRES: !is_any() && is_valid().
  uint64_t version() const { return static_cast<uint64_t>(raw_); }
  int64_t raw() const { return raw_; }
  std::string ToString() const;

 private:
  static constexpr int64_t kAnyRaw = -1;
  constexpr explicit ExpectedVersion(int64_t raw) : raw_(raw) {}
  int64_t raw_;
};

// Who and what caused an append. Shared by all events of one append.
struct AppendMetadata {
  // Identifies the request for idempotency. A non-empty id that is already
  // committed makes the append return the original result and write nothing.
  std::string request_id;
  std::string correlation_id;
  std::string actor;
  // The time recorded in every event of the append. The store never reads a
  // clock: the caller's clock (real or manual) is the only source of time.
  absl::Time timestamp = absl::UnixEpoch();
};

// An event to append.
struct NewEvent {
  std::string event_type;
  std::string payload;  // A serialized protobuf message.
  // Unique id of the event. Empty: the store derives one from the request id
  // (or position) at commit.
  std::string event_id;
};

// Events to append to one stream, guarded by an expected version.
struct StreamAppend {
  std::string stream_id;
  ExpectedVersion expected_version = ExpectedVersion::Any();
  std::vector<NewEvent> events;
};

// One part of a consumer's saved state, e.g. one account's. A consumer saves
// the parts that changed, so the cost of a snapshot follows what changed,
// not the size of the whole state.
struct SnapshotPart {
  std::string key;  // 1 to kMaxSnapshotKeyBytes bytes.
  std::string blob;
};

// A key kept beside the log: by a consumer that seals data in its events
// with keys it may later destroy (the ledger's personal data keys). Keys are
// not part of the log: not hashed, so that destroying one leaves every hash
// as it was. A key written by an append is indexed under the append's
// position, so that a replica copying the log can copy the keys its records
// need (KeysAddedIn).
struct KeyEntry {
  std::string id;     // 1 to kMaxKeyIdBytes bytes.
  // Up to kMaxKeyValueBytes. Empty: the key is destroyed (a tombstone,
  // which tells a destroyed key from one that never was).
  std::string value;
};
inline constexpr size_t kMaxKeyIdBytes = 256;
inline constexpr size_t kMaxKeyValueBytes = 4096;

// Called for each key by VisitKeys; an error stops the visit.
using KeyVisitor =
    std::function<absl::Status(absl::string_view id, absl::string_view value)>;

// One atomic append: to one stream or to several at once.
struct AppendRequest {
  std::vector<StreamAppend> streams;
  AppendMetadata metadata;
  // Saved parts written in the append's own atomic write, each replacing
  // the saved part of its key as SaveSnapshotParts does, without moving the
  // saved position: a consumer's index of what the append adds (e.g. its
  // invoices), so a later snapshot need not write it again. Not part of the
  // log: not hashed, not in the idempotency digest, not copied by Replicate.
  // A deduplicated append saves none; a rewind that removes records drops
  // every saved part (log_rewind.h).
  std::vector<SnapshotPart> saved_parts;
  // Keys written in the append's own atomic write, each replacing the key
  // of its id, and indexed under the append's first position. Not hashed,
  // not in the idempotency digest; a deduplicated or refused append writes
  // none; a bad id or value refuses the append (INVALID_ARGUMENT, keys[i]).
  std::vector<KeyEntry> keys;
};

struct AppendResult {
  // Positions of the first and last appended records, in request order.
  uint64_t first_position = 0;
  uint64_t last_position = 0;
  // The version of each stream after the append, in request order.
  std::vector<uint64_t> stream_versions;
  // True when the request id was already committed and nothing was written.
  bool deduplicated = false;
};

// A committed event. Positions count events: an append of N events takes N
// consecutive positions. The log stores each append as one record (one
// key, one link of the hash chain), so the events of one append share their
// record's hashes; record_position and record_events say which record that
// is. A log written before records held several events has one event per
// record.
struct RecordedEvent {
  uint64_t position = 0;
  std::string stream_id;
  uint64_t stream_version = 0;
  std::string event_type;
  std::string payload;
  std::string event_id;
  std::string request_id;
  std::string correlation_id;
  std::string actor;
  absl::Time timestamp = absl::UnixEpoch();
  // The hashes of the event's record: the hash of the record before it
  // (all zero for the first) and the record's own, SHA-256 over prev_hash,
  // the record's first position and its body (record_format.h).
  Hash prev_hash{};
  Hash hash{};
  // The first position of the event's record and how many events it holds.
  // 0 events: a record of this event alone (as in events built by hand).
  uint64_t record_position = 0;
  uint32_t record_events = 0;

  uint64_t record_first() const {
    return record_events == 0 ? position : record_position;
  }
  uint64_t record_last() const {
    return record_events == 0 ? position : record_position + record_events - 1;
  }

  // Compares every field except the record framing, which follows from
  // the hashes.
  bool operator==(const RecordedEvent& other) const;
};

// The head of the log: its last position (0 when empty) and that record's
// hash (all zero when empty). Together they are the log's digest.
struct LogHead {
  uint64_t position = 0;
  Hash hash{};
};

// Which saved parts ReadSnapshotParts visits. A part's key may name the part
// it belongs under, before a NUL: "a\0b" is under "a".
struct SnapshotPartFilter {
  // Only the part of this key and the parts under it; empty: every part.
  std::string family;
  // Only parts under no other part (keys without a NUL); the store skips
  // the others without reading them.
  bool top_level_only = false;
};

// Called for each saved part by ReadSnapshotParts; an error stops the read.
using SnapshotPartVisitor =
    std::function<absl::Status(absl::string_view key, absl::string_view blob)>;

using AppendCallback = std::function<void(absl::StatusOr<AppendResult>)>;

class EventStore {
 public:
  virtual ~EventStore() = default;

  // Appends every event of `request` atomically: all or nothing.
  //
  // Returns the committed positions once they are durable (for a durable
  // store: in the WAL and fsynced).
  // Errors:
  //   INVALID_ARGUMENT: no stream or no event, an empty, oversized or
  //     repeated stream id, an empty or oversized event type, a payload over
  //     kMaxPayloadBytes, payloads over kMaxAppendPayloadBytes together, a
  //     malformed expected version, a saved part's key or blob outside
  //     the snapshot limits or a key repeated; nothing is written.
  //   ABORTED: a stream is not at its expected version; the message names
  //     the stream, the expected and the actual version.
  //   ALREADY_EXISTS: the request id is committed with different content
  //     (streams, expected versions, event types or payloads).
  //   Anything else (UNAVAILABLE, DATA_LOSS, INTERNAL): the store failed and
  //     refuses every later append (a sticky error).
  virtual absl::StatusOr<AppendResult> Append(const AppendRequest& request) = 0;

  // Appends like Append but returns at once: `done` runs exactly once, with
  // what Append would have returned, when the append is durable or has
  // failed. It runs on a thread of the store's and must not block; it may
  // call AppendAsync again. The default runs Append and then `done`.
  virtual void AppendAsync(AppendRequest request, AppendCallback done) {
    done(Append(request));
  }

  // Appends `records`, copied from another log (a replica following its
  // leader's), with their positions, stream versions, metadata and hashes
  // unchanged: the first at the position after the head and linked to it,
  // each carrying the hash its fields give and the next version of its
  // stream. Atomic and durable, like Append. Rebuilds the request index of
  // the copied appends (record_format::RebuildRequestEntries), so a replica
  // that becomes the leader still answers a retried request id with its
  // first result.
  // Errors (nothing is written; the store stays usable):
  //   FAILED_PRECONDITION: the first record is not at the position after
  //     the head (a gap or an overlap).
  //   DATA_LOSS, naming the position: a record does not link to the one
  //     before it (the logs diverge), its hash does not match its fields,
  //     or it is not the next version of its stream.
  //   INVALID_ARGUMENT: a field over the append limits.
  //   Anything else as for Append.
  virtual absl::Status Replicate(const std::vector<RecordedEvent>& records) = 0;

  // Returns up to `limit` records with position >= `from`, ascending.
  virtual absl::StatusOr<std::vector<RecordedEvent>> ReadForward(
      uint64_t from, size_t limit) const = 0;

  // Returns up to `limit` records with position <= `from`, descending.
  // `from` past the head reads from the head.
  virtual absl::StatusOr<std::vector<RecordedEvent>> ReadBackward(
      uint64_t from, size_t limit) const = 0;

  // Returns up to `limit` records of `stream_id` with version >=
  // `from_version`, ascending. An unknown stream yields no records.
  virtual absl::StatusOr<std::vector<RecordedEvent>> ReadStream(
      const std::string& stream_id, uint64_t from_version,
      size_t limit) const = 0;

  // Returns the outcome of the committed append that carried `request_id`
  // (deduplicated = true), or std::nullopt if none did.
  virtual absl::StatusOr<std::optional<AppendResult>> FindRequest(
      const std::string& request_id) const = 0;

  // Returns the current head (position and hash).
  virtual LogHead Head() const = 0;

  // Returns the current version of `stream_id` (0 when it has no record).
  virtual uint64_t StreamVersion(const std::string& stream_id) const = 0;

  // Blocks until the head passes `after`, `deadline` passes or the store is
  // closed, without polling. Returns the head position then (which is
  // <= `after` on time-out). Waiting readers hold no lock the writer needs
  // and buffer nothing: they read the records themselves afterwards.
  virtual uint64_t WaitForPosition(uint64_t after,
                                   absl::Time deadline) const = 0;

  // Saves `parts`, each replacing the saved part of its key, and records
  // that the saved parts together reflect the log through `position`: the
  // caller promises that every part it does not pass is unchanged since it
  // was saved, and that the parts it passes reflect at least `position`
  // (they may reflect later records too). Atomic and durable. Parts are
  // never deleted. A caller may save in several calls, passing the
  // previously saved position in all but the last.
  // Errors: INVALID_ARGUMENT (nothing saved) if `position` is past the head
  // or below the saved position, a key is empty, repeated or longer than
  // kMaxSnapshotKeyBytes, or a blob exceeds kMaxSnapshotBytes.
  virtual absl::Status SaveSnapshotParts(uint64_t position,
                                         const std::vector<SnapshotPart>& parts) = 0;

  // Calls `visit` for every saved part that `filter` selects, in key order,
  // from one consistent view, and returns the position the saved parts
  // reflect (0, with no calls, when nothing was saved). Returns `visit`'s
  // first error.
  virtual absl::StatusOr<uint64_t> ReadSnapshotParts(
      const SnapshotPartFilter& filter,
      const SnapshotPartVisitor& visit) const = 0;

  // Returns the saved part of `key`, or std::nullopt if none is saved: one
  // part on its own, without a whole read (e.g. one entry of a large
  // state, looked up when it is needed rather than held in memory).
  virtual absl::StatusOr<std::optional<std::string>> ReadSnapshotPart(
      absl::string_view key) const = 0;

  // The keys beside the log (KeyEntry). A store that keeps none answers
  // UNIMPLEMENTED to each.
  //
  // The value of key `id` (empty for a destroyed one), or std::nullopt if
  // there is none.
  virtual absl::StatusOr<std::optional<std::string>> ReadKey(
      absl::string_view id) const;
  // Writes `keys` atomically and durably, each replacing the key of its id,
  // indexed under `position` (the record that needs them; 0: none, as for
  // a rewrap under a new key-encryption key). INVALID_ARGUMENT (nothing
  // written) for a bad id or value.
  virtual absl::Status PutKeys(uint64_t position,
                               const std::vector<KeyEntry>& keys);
  // Calls `visit` for every key, in id order, from one consistent view.
  virtual absl::Status VisitKeys(const KeyVisitor& visit) const;
  // The keys written with the records at positions [first, last] (by their
  // appends, or by PutKeys with such a position), as they are now: a
  // destroyed one as a tombstone.
  virtual absl::StatusOr<std::vector<KeyEntry>> KeysAddedIn(
      uint64_t first, uint64_t last) const;

  // Wakes every WaitForPosition caller and refuses later appends with
  // UNAVAILABLE. Idempotent.
  virtual void Close() = 0;
};

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_EVENT_STORE_H_
