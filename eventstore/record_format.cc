#include "eventstore/record_format.h"

#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "eventstore/sha256.h"

namespace poledger {
namespace record_format {
namespace {

void PutFixed64(std::string* out, uint64_t value) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  out->append(buf, 8);
}

void PutFixed32(std::string* out, uint32_t value) {
  char buf[4];
  for (int i = 3; i >= 0; --i) {
    buf[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  out->append(buf, 4);
}

void PutVarint64(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void PutLengthPrefixed(std::string* out, absl::string_view bytes) {
  PutVarint64(out, bytes.size());
  out->append(bytes.data(), bytes.size());
}

// A cursor over encoded bytes; every Get fails (returns false) rather than
// reading past the end.
class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}

  bool GetFixed64(uint64_t* value) {
    if (in_.size() < 8) return false;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in_[i]);
    in_.remove_prefix(8);
    *value = v;
    return true;
  }

  bool GetVarint64(uint64_t* value) {
    uint64_t result = 0;
    for (int shift = 0; shift <= 63 && !in_.empty(); shift += 7) {
      const uint8_t byte = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *value = result;
        return true;
      }
    }
    return false;
  }

  bool GetLengthPrefixed(std::string* out) {
    uint64_t len = 0;
    if (!GetVarint64(&len) || len > in_.size()) return false;
    out->assign(in_.data(), len);
    in_.remove_prefix(len);
    return true;
  }

  bool GetBytes(size_t n, uint8_t* out) {
    if (in_.size() < n) return false;
    std::memcpy(out, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }

  bool GetByte(uint8_t* out) { return GetBytes(1, out); }
  bool empty() const { return in_.empty(); }

 private:
  absl::string_view in_;
};

std::string EncodeBody(const RecordedEvent& r) {
  std::string body;
  body.reserve(64 + r.stream_id.size() + r.event_type.size() +
               r.payload.size() + r.event_id.size() + r.request_id.size() +
               r.correlation_id.size() + r.actor.size());
  PutVarint64(&body, r.stream_version);
  PutLengthPrefixed(&body, r.stream_id);
  PutLengthPrefixed(&body, r.event_type);
  PutLengthPrefixed(&body, r.payload);
  PutLengthPrefixed(&body, r.event_id);
  PutLengthPrefixed(&body, r.request_id);
  PutLengthPrefixed(&body, r.correlation_id);
  PutLengthPrefixed(&body, r.actor);
  PutFixed64(&body, static_cast<uint64_t>(absl::ToUnixMicros(r.timestamp)));
  return body;
}

// The bytes a record's hash covers start after the format byte and the hash.
constexpr size_t kHashedOffset = 1 + 32;

Hash HashOf(absl::string_view hashed) {
  thread_local Sha256 sha;
  sha.Update(hashed);
  return sha.Finish();
}

absl::Status Corrupt(uint64_t position, absl::string_view why) {
  return absl::DataLossError(
      absl::StrCat("event log record at position ", position, ": ", why));
}

absl::Status CheckField(absl::string_view field, absl::string_view value,
                        size_t max_bytes, bool required) {
  if (required && value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  }
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", value.size(), " bytes exceeds the limit of ", max_bytes));
  }
  return absl::OkStatus();
}

void PutHash(std::string* out, const Hash& hash) {
  out->append(reinterpret_cast<const char*>(hash.data()), hash.size());
}

// The event id a record stores: empty for the one the store derives.
absl::string_view StoredEventId(const RecordedEvent& e) {
  const absl::string_view id = e.event_id;
  if (id.size() > 4 && absl::StartsWith(id, "evt-") &&
      id.substr(4) == absl::StrCat(e.position)) {
    return absl::string_view();
  }
  return id;
}

// Returns the record_value of `record` with its stored hash.
std::string EncodeValue(RecordEvents record) {
  const RecordedEvent& head = record.front();
  if (record.size() == 1) {
    const std::string body = EncodeBody(head);
    std::string value;
    value.reserve(kHashedOffset + 32 + 8 + body.size());
    value.push_back(static_cast<char>(kRecordFormat));
    PutHash(&value, head.hash);
    PutHash(&value, head.prev_hash);
    PutFixed64(&value, head.position);
    value.append(body);
    return value;
  }
  size_t bytes = kHashedOffset + 32 + 8 + 64 + head.request_id.size() +
                 head.correlation_id.size() + head.actor.size();
  for (const RecordedEvent& e : record) {
    bytes += 16 + e.event_type.size() + e.payload.size();
  }
  std::string value;
  value.reserve(bytes);
  value.push_back(static_cast<char>(kManyRecordFormat));
  PutHash(&value, head.hash);
  PutHash(&value, head.prev_hash);
  PutFixed64(&value, head.position);
  PutVarint64(&value, record.size());
  PutLengthPrefixed(&value, head.request_id);
  PutLengthPrefixed(&value, head.correlation_id);
  PutLengthPrefixed(&value, head.actor);
  PutFixed64(&value, static_cast<uint64_t>(absl::ToUnixMicros(head.timestamp)));
  // The streams in the order they first appear, each with its first
  // version; events name theirs by index.
  std::vector<const RecordedEvent*> firsts;
  std::vector<uint64_t> index(record.size());
  for (size_t i = 0; i < record.size(); ++i) {
    size_t k = 0;
    while (k < firsts.size() && firsts[k]->stream_id != record[i].stream_id) ++k;
    if (k == firsts.size()) firsts.push_back(&record[i]);
    index[i] = k;
  }
  PutVarint64(&value, firsts.size());
  for (const RecordedEvent* f : firsts) {
    PutLengthPrefixed(&value, f->stream_id);
    PutVarint64(&value, f->stream_version);
  }
  for (size_t i = 0; i < record.size(); ++i) {
    const RecordedEvent& e = record[i];
    PutVarint64(&value, index[i]);
    PutLengthPrefixed(&value, e.event_type);
    PutLengthPrefixed(&value, e.payload);
    PutLengthPrefixed(&value, StoredEventId(e));
  }
  return value;
}

}  // namespace

std::string LogKey(uint64_t position) {
  std::string key(1, kLogPrefix);
  PutFixed64(&key, position);
  return key;
}

absl::StatusOr<uint64_t> ParseLogKey(absl::string_view key) {
  if (key.size() != 9 || key[0] != kLogPrefix) {
    return absl::InvalidArgumentError("not a log key");
  }
  return DecodeFixed64(key.substr(1));
}

std::string StreamKeyPrefix(absl::string_view stream_id) {
  std::string key(1, kStreamPrefix);
  PutFixed32(&key, static_cast<uint32_t>(stream_id.size()));
  key.append(stream_id.data(), stream_id.size());
  return key;
}

std::string StreamKey(absl::string_view stream_id, uint64_t version) {
  std::string key = StreamKeyPrefix(stream_id);
  PutFixed64(&key, version);
  return key;
}

absl::Status ParseStreamKey(absl::string_view key, std::string* stream_id,
                            uint64_t* version) {
  if (key.size() < 1 + 4 + 8 || key[0] != kStreamPrefix) {
    return absl::InvalidArgumentError("not a stream key");
  }
  uint32_t len = 0;
  for (int i = 1; i <= 4; ++i) len = (len << 8) | static_cast<uint8_t>(key[i]);
  if (key.size() != 1 + 4 + size_t{len} + 8) {
    return absl::InvalidArgumentError("stream key has the wrong length");
  }
  stream_id->assign(key.data() + 5, len);
  *version = *DecodeFixed64(key.substr(5 + len));
  return absl::OkStatus();
}

std::string RequestKey(absl::string_view request_id) {
  return absl::StrCat(std::string(1, kRequestPrefix), request_id);
}

std::string SnapshotKey(absl::string_view part_key) {
  return absl::StrCat(std::string(1, kSnapshotPrefix), part_key);
}

std::string KeyKey(absl::string_view id) {
  return absl::StrCat(std::string(1, kKeyPrefix), id);
}

absl::StatusOr<absl::string_view> ParseKeyKey(absl::string_view key) {
  if (key.size() < 2 || key[0] != kKeyPrefix) {
    return absl::InvalidArgumentError("malformed key beside the log");
  }
  return key.substr(1);
}

std::string KeyIndexKey(uint64_t position, absl::string_view id) {
  return absl::StrCat(std::string(1, kKeyIndexPrefix), EncodeFixed64(position),
                      id);
}

absl::Status ParseKeyIndexKey(absl::string_view key, uint64_t* position,
                              absl::string_view* id) {
  if (key.size() < 10 || key[0] != kKeyIndexPrefix) {
    return absl::InvalidArgumentError("malformed key index entry");
  }
  *position = *DecodeFixed64(key.substr(1, 8));
  *id = key.substr(9);
  return absl::OkStatus();
}

absl::Status ValidateKeyList(absl::string_view field,
                             const std::vector<KeyEntry>& keys) {
  absl::flat_hash_set<absl::string_view> ids;
  for (size_t i = 0; i < keys.size(); ++i) {
    const KeyEntry& key = keys[i];
    if (key.id.empty() || key.id.size() > kMaxKeyIdBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "[", i, "].id: must be 1 to ", kMaxKeyIdBytes, " bytes"));
    }
    if (key.value.size() > kMaxKeyValueBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "[", i, "].value: ", key.value.size(),
          " bytes exceeds the limit of ", kMaxKeyValueBytes));
    }
    if (!ids.insert(key.id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "].id: repeated"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::string_view> ParseSnapshotKey(absl::string_view key) {
  if (key.size() < 2 || key[0] != kSnapshotPrefix) {
    return absl::InvalidArgumentError("not a snapshot key");
  }
  return key.substr(1);
}

std::string MetaSnapshotKey() {
  return absl::StrCat(std::string(1, kMetaPrefix), "snapshot");
}

bool SnapshotKeySelected(const SnapshotPartFilter& filter,
                         absl::string_view part_key) {
  const size_t nul = part_key.find('\0');
  if (filter.top_level_only && nul != part_key.npos) return false;
  if (filter.family.empty()) return true;
  return part_key.substr(0, nul) == filter.family;
}

absl::Status ValidateSnapshotParts(uint64_t position, uint64_t head,
                                   uint64_t saved_position,
                                   const std::vector<SnapshotPart>& parts) {
  if (position > head) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot position: ", position, " is past the head ", head));
  }
  if (position < saved_position) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot position: ", position,
                     " is below the saved snapshot's ", saved_position));
  }
  return ValidatePartList("parts", parts);
}

absl::Status ValidatePartList(absl::string_view field,
                              const std::vector<SnapshotPart>& parts) {
  absl::flat_hash_set<absl::string_view> keys;
  for (size_t i = 0; i < parts.size(); ++i) {
    const SnapshotPart& part = parts[i];
    if (part.key.empty() || part.key.size() > kMaxSnapshotKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "].key: must be 1 to ",
                       kMaxSnapshotKeyBytes, " bytes"));
    }
    if (part.blob.size() > kMaxSnapshotBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "[", i, "].blob: ", part.blob.size(),
          " bytes exceeds the limit of ", kMaxSnapshotBytes));
    }
    if (!keys.insert(part.key).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "[", i, "].key: \"", part.key, "\" is repeated"));
    }
  }
  return absl::OkStatus();
}

std::string MetaFormatKey() {
  return absl::StrCat(std::string(1, kMetaPrefix), "format");
}

std::string MetaCommittedKey() {
  return absl::StrCat(std::string(1, kMetaPrefix), "committed");
}

std::string MetaVerifiedKey() {
  return absl::StrCat(std::string(1, kMetaPrefix), "verified");
}

namespace {

Hash MarkCheck(uint64_t position, const Hash& hash) {
  std::string covered = "poledger verified-through mark";
  PutFixed64(&covered, position);
  covered.append(reinterpret_cast<const char*>(hash.data()), hash.size());
  return HashOf(covered);
}

}  // namespace

std::string EncodeVerifiedMark(const VerifiedMark& mark) {
  std::string out;
  PutFixed64(&out, mark.position);
  out.append(reinterpret_cast<const char*>(mark.hash.data()), mark.hash.size());
  const Hash check = MarkCheck(mark.position, mark.hash);
  out.append(reinterpret_cast<const char*>(check.data()), check.size());
  return out;
}

absl::StatusOr<VerifiedMark> DecodeVerifiedMark(absl::string_view value) {
  Reader reader(value);
  VerifiedMark mark;
  if (value.size() != 8 + 32 + 32 || !reader.GetFixed64(&mark.position)) {
    return absl::DataLossError("the verified-through mark is malformed");
  }
  std::memcpy(mark.hash.data(), value.data() + 8, 32);
  const Hash check = MarkCheck(mark.position, mark.hash);
  if (std::memcmp(check.data(), value.data() + 40, 32) != 0) {
    return absl::DataLossError("the verified-through mark fails its check");
  }
  return mark;
}

std::string EncodeFixed64(uint64_t value) {
  std::string out;
  PutFixed64(&out, value);
  return out;
}

absl::StatusOr<uint64_t> DecodeFixed64(absl::string_view bytes) {
  Reader reader(bytes);
  uint64_t value = 0;
  if (bytes.size() != 8 || !reader.GetFixed64(&value)) {
    return absl::InvalidArgumentError("expected 8 bytes");
  }
  return value;
}

Hash ComputeRecordHash(RecordEvents record) {
  return HashOf(absl::string_view(EncodeValue(record)).substr(kHashedOffset));
}

std::string EncodeRecordValue(RecordEvents record) { return EncodeValue(record); }

std::string SealRecord(absl::Span<RecordedEvent> record) {
  const uint64_t first = record.front().position;
  for (RecordedEvent& e : record) {
    e.record_position = first;
    e.record_events = static_cast<uint32_t>(record.size());
  }
  std::string value = EncodeValue(record);
  const Hash hash = HashOf(absl::string_view(value).substr(kHashedOffset));
  std::memcpy(&value[1], hash.data(), 32);
  for (RecordedEvent& e : record) e.hash = hash;
  return value;
}

absl::StatusOr<uint32_t> RecordEventCount(absl::string_view value) {
  if (value.empty()) return absl::DataLossError("empty record value");
  if (static_cast<uint8_t>(value[0]) == kRecordFormat) return 1;
  Reader reader(value.substr(std::min(value.size(), kHashedOffset + 32 + 8)));
  uint64_t n = 0;
  if (static_cast<uint8_t>(value[0]) != kManyRecordFormat ||
      value.size() < kHashedOffset + 32 + 8 || !reader.GetVarint64(&n) ||
      n < 2 || n > kMaxEventsPerAppend) {
    return absl::DataLossError("malformed record header");
  }
  return static_cast<uint32_t>(n);
}

namespace {

absl::Status DecodeOne(uint64_t position, Reader& reader, RecordedEvent& r) {
  uint64_t micros = 0;
  if (!reader.GetVarint64(&r.stream_version) ||
      !reader.GetLengthPrefixed(&r.stream_id) ||
      !reader.GetLengthPrefixed(&r.event_type) ||
      !reader.GetLengthPrefixed(&r.payload) ||
      !reader.GetLengthPrefixed(&r.event_id) ||
      !reader.GetLengthPrefixed(&r.request_id) ||
      !reader.GetLengthPrefixed(&r.correlation_id) ||
      !reader.GetLengthPrefixed(&r.actor) || !reader.GetFixed64(&micros) ||
      !reader.empty()) {
    return Corrupt(position, "malformed body");
  }
  r.timestamp = absl::FromUnixMicros(static_cast<int64_t>(micros));
  return absl::OkStatus();
}

absl::Status DecodeMany(uint64_t first, Reader& reader,
                        std::vector<RecordedEvent>& events) {
  uint64_t n = 0;
  RecordedEvent shared;
  uint64_t micros = 0;
  uint64_t streams = 0;
  if (!reader.GetVarint64(&n) || n < 2 || n > kMaxEventsPerAppend ||
      !reader.GetLengthPrefixed(&shared.request_id) ||
      !reader.GetLengthPrefixed(&shared.correlation_id) ||
      !reader.GetLengthPrefixed(&shared.actor) ||
      !reader.GetFixed64(&micros) || !reader.GetVarint64(&streams) ||
      streams == 0 || streams > n) {
    return Corrupt(first, "malformed record header");
  }
  shared.timestamp = absl::FromUnixMicros(static_cast<int64_t>(micros));
  std::vector<std::pair<std::string, uint64_t>> next(streams);
  absl::flat_hash_set<absl::string_view> ids;
  for (auto& [stream_id, version] : next) {
    if (!reader.GetLengthPrefixed(&stream_id) ||
        !reader.GetVarint64(&version) || stream_id.empty() || version == 0) {
      return Corrupt(first, "malformed record streams");
    }
  }
  for (const auto& entry : next) {
    if (!ids.insert(entry.first).second) {
      return Corrupt(first, "a stream appears twice in its record");
    }
  }
  // Streams are listed in the order events first name them (one encoding
  // per record).
  uint64_t named = 0;
  events.resize(n, shared);
  for (uint64_t i = 0; i < n; ++i) {
    RecordedEvent& e = events[i];
    e.position = first + i;
    uint64_t index = 0;
    if (!reader.GetVarint64(&index) || index > named || index >= streams ||
        !reader.GetLengthPrefixed(&e.event_type) ||
        !reader.GetLengthPrefixed(&e.payload) ||
        !reader.GetLengthPrefixed(&e.event_id) ||
        (!e.event_id.empty() && StoredEventId(e).empty())) {
      return Corrupt(first + i, "malformed event in its record");
    }
    if (index == named) ++named;
    e.stream_id = next[index].first;
    e.stream_version = next[index].second++;
    if (e.event_id.empty()) e.event_id = absl::StrCat("evt-", e.position);
  }
  if (named != streams) return Corrupt(first, "a stream of its record is unused");
  if (!reader.empty()) return Corrupt(first, "trailing bytes in its record");
  return absl::OkStatus();
}

}  // namespace

absl::Status DecodeRecordValue(uint64_t position, absl::string_view value,
                               bool verify, std::vector<RecordedEvent>* out) {
  Reader reader(value);
  uint8_t format = 0;
  if (!reader.GetByte(&format)) return Corrupt(position, "empty value");
  if (format != kRecordFormat && format != kManyRecordFormat) {
    return Corrupt(position, absl::StrCat("unknown record format ", format));
  }
  Hash hash;
  Hash prev_hash;
  uint64_t stored_position = 0;
  if (!reader.GetBytes(32, hash.data()) ||
      !reader.GetBytes(32, prev_hash.data()) ||
      !reader.GetFixed64(&stored_position)) {
    return Corrupt(position, "truncated header");
  }
  if (stored_position != position) {
    return Corrupt(position, absl::StrCat("holds the record of position ",
                                          stored_position));
  }
  if (verify && HashOf(value.substr(kHashedOffset)) != hash) {
    return Corrupt(position, "checksum mismatch (record hash)");
  }
  std::vector<RecordedEvent> events;
  if (format == kRecordFormat) {
    events.resize(1);
    events[0].position = position;
    RETURN_IF_ERROR(DecodeOne(position, reader, events[0]));
  } else {
    RETURN_IF_ERROR(DecodeMany(position, reader, events));
  }
  for (RecordedEvent& e : events) {
    e.hash = hash;
    e.prev_hash = prev_hash;
    e.record_position = position;
    e.record_events = static_cast<uint32_t>(events.size());
  }
  if (out->empty()) {
    *out = std::move(events);
  } else {
    out->insert(out->end(), std::make_move_iterator(events.begin()),
                std::make_move_iterator(events.end()));
  }
  return absl::OkStatus();
}

absl::StatusOr<RecordedEvent> DecodeOneEventRecord(uint64_t position,
                                                   absl::string_view value,
                                                   bool verify) {
  std::vector<RecordedEvent> events;
  RETURN_IF_ERROR(DecodeRecordValue(position, value, verify, &events));
  if (events.size() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("the record at position ", position, " holds ",
                     events.size(), " events"));
  }
  return std::move(events.front());
}

absl::Status ForEachRecord(
    absl::Span<const RecordedEvent> events,
    const std::function<absl::Status(size_t first, size_t count)>& visit) {
  size_t i = 0;
  while (i < events.size()) {
    const RecordedEvent& e = events[i];
    const uint64_t count = e.record_last() - e.record_first() + 1;
    if (e.record_first() != e.position) {
      return Corrupt(e.position, absl::StrCat("is inside the record of position ",
                                              e.record_first(),
                                              ", whose start is missing"));
    }
    if (count > events.size() - i) {
      return Corrupt(e.position, "its record is cut short");
    }
    for (size_t k = 1; k < count; ++k) {
      const RecordedEvent& f = events[i + k];
      if (f.position != e.position + k || f.record_first() != e.position ||
          f.record_last() != e.record_last() || f.hash != e.hash ||
          f.prev_hash != e.prev_hash) {
        return Corrupt(e.position + k,
                       absl::StrCat("does not belong to the record of position ",
                                    e.position));
      }
    }
    RETURN_IF_ERROR(visit(i, count));
    i += count;
  }
  return absl::OkStatus();
}

size_t WholeRecordEvents(absl::Span<const RecordedEvent> events) {
  if (events.empty()) return 0;
  const RecordedEvent& last = events.back();
  if (last.record_last() == last.position) return events.size();
  const uint64_t cut = last.record_first();
  return cut <= events.front().position ? 0 : cut - events.front().position;
}

void AppendStreamEntries(RecordEvents record,
                         std::vector<std::pair<std::string, uint64_t>>* out) {
  const uint64_t first = record.front().position;
  if (record.size() == 1) {
    out->emplace_back(StreamKey(record[0].stream_id, record[0].stream_version),
                      first);
    return;
  }
  // Each stream's last event in the record, in the order streams appear.
  std::vector<const RecordedEvent*> last;
  for (const RecordedEvent& e : record) {
    size_t k = 0;
    while (k < last.size() && last[k]->stream_id != e.stream_id) ++k;
    if (k == last.size()) {
      last.push_back(&e);
    } else {
      last[k] = &e;
    }
  }
  for (const RecordedEvent* e : last) {
    out->emplace_back(StreamKey(e->stream_id, e->stream_version), first);
  }
}

std::string EncodeRequestValue(const RequestEntry& entry) {
  std::string value(1, static_cast<char>(kRequestFormat));
  value.append(reinterpret_cast<const char*>(entry.content_digest.data()), 32);
  PutFixed64(&value, entry.result.first_position);
  PutFixed64(&value, entry.result.last_position);
  PutVarint64(&value, entry.result.stream_versions.size());
  for (uint64_t v : entry.result.stream_versions) PutVarint64(&value, v);
  return value;
}

absl::StatusOr<RequestEntry> DecodeRequestValue(absl::string_view value) {
  Reader reader(value);
  RequestEntry entry;
  uint8_t format = 0;
  uint64_t n = 0;
  if (!reader.GetByte(&format) || format != kRequestFormat ||
      !reader.GetBytes(32, entry.content_digest.data()) ||
      !reader.GetFixed64(&entry.result.first_position) ||
      !reader.GetFixed64(&entry.result.last_position) ||
      !reader.GetVarint64(&n) || n > kMaxEventsPerAppend) {
    return absl::DataLossError("malformed request index entry");
  }
  entry.result.stream_versions.resize(n);
  for (uint64_t& v : entry.result.stream_versions) {
    if (!reader.GetVarint64(&v)) {
      return absl::DataLossError("malformed request index entry");
    }
  }
  if (!reader.empty()) return absl::DataLossError("malformed request index entry");
  return entry;
}

Hash RequestContentDigest(const AppendRequest& request) {
  thread_local Sha256 sha;
  std::string buf;
  for (const StreamAppend& s : request.streams) {
    buf.clear();
    PutLengthPrefixed(&buf, s.stream_id);
    PutFixed64(&buf, static_cast<uint64_t>(s.expected_version.raw()));
    PutVarint64(&buf, s.events.size());
    sha.Update(buf);
    for (const NewEvent& e : s.events) {
      buf.clear();
      PutLengthPrefixed(&buf, e.event_type);
      PutVarint64(&buf, e.payload.size());
      sha.Update(buf);
      sha.Update(e.payload);
    }
  }
  return sha.Finish();
}

absl::Status ValidateAppendRequest(const AppendRequest& request) {
  if (request.streams.empty()) {
    return absl::InvalidArgumentError("streams: at least one stream is required");
  }
  const AppendMetadata& m = request.metadata;
  RETURN_IF_ERROR(CheckField("metadata.request_id", m.request_id,
                             kMaxMetadataFieldBytes, false));
  RETURN_IF_ERROR(CheckField("metadata.correlation_id", m.correlation_id,
                             kMaxMetadataFieldBytes, false));
  RETURN_IF_ERROR(
      CheckField("metadata.actor", m.actor, kMaxMetadataFieldBytes, false));
  size_t total_events = 0;
  size_t total_bytes = 0;
  absl::flat_hash_set<absl::string_view> seen;
  for (size_t i = 0; i < request.streams.size(); ++i) {
    const StreamAppend& s = request.streams[i];
    // Field names are built only on the error path: this runs per append.
    auto field = [i](absl::string_view name) {
      return absl::StrCat("streams[", i, "].", name);
    };
    if (s.stream_id.empty() || s.stream_id.size() > kMaxStreamIdBytes) {
      return CheckField(field("stream_id"), s.stream_id, kMaxStreamIdBytes,
                        true);
    }
    if (request.streams.size() > 1 && !seen.insert(s.stream_id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field("stream_id"), ": stream \"", s.stream_id,
                       "\" appears more than once in one append"));
    }
    if (!s.expected_version.is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field("expected_version"), ": ", s.expected_version.raw(),
          " is malformed (use -1 for any, 0 for no stream, N >= 1 for exact)"));
    }
    if (s.events.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field("events"), ": at least one event is required"));
    }
    total_events += s.events.size();
    for (size_t j = 0; j < s.events.size(); ++j) {
      const NewEvent& e = s.events[j];
      total_bytes += e.payload.size();
      if (e.event_type.empty() || e.event_type.size() > kMaxEventTypeBytes ||
          e.payload.size() > kMaxPayloadBytes ||
          e.event_id.size() > kMaxMetadataFieldBytes) {
        const std::string ef = field(absl::StrCat("events[", j, "]"));
        RETURN_IF_ERROR(CheckField(absl::StrCat(ef, ".event_type"),
                                   e.event_type, kMaxEventTypeBytes, true));
        RETURN_IF_ERROR(CheckField(absl::StrCat(ef, ".payload"), e.payload,
                                   kMaxPayloadBytes, false));
        return CheckField(absl::StrCat(ef, ".event_id"), e.event_id,
                          kMaxMetadataFieldBytes, false);
      }
    }
  }
  if (total_events > kMaxEventsPerAppend) {
    return absl::InvalidArgumentError(
        absl::StrCat("streams: ", total_events, " events exceed the limit of ",
                     kMaxEventsPerAppend, " per append"));
  }
  if (total_bytes > kMaxAppendPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "streams: payloads of ", total_bytes, " bytes together exceed the "
        "limit of ", kMaxAppendPayloadBytes, " per append"));
  }
  if (!request.keys.empty()) {
    RETURN_IF_ERROR(ValidateKeyList("keys", request.keys));
  }
  if (request.saved_parts.empty()) return absl::OkStatus();
  return ValidatePartList("saved_parts", request.saved_parts);
}

BatchPlanner::BatchPlanner(
    LogHead head, std::function<uint64_t(const std::string&)> committed_version)
    : head_(head), committed_version_(std::move(committed_version)) {}

uint64_t BatchPlanner::VersionOf(const std::string& stream_id) const {
  auto it = planned_versions_.find(stream_id);
  return it != planned_versions_.end() ? it->second
                                       : committed_version_(stream_id);
}

absl::StatusOr<PlannedRecord> BatchPlanner::Plan(const AppendRequest& request,
                                                 AppendResult* result) {
  std::vector<uint64_t> current(request.streams.size());
  size_t total = 0;
  for (size_t i = 0; i < request.streams.size(); ++i) {
    const StreamAppend& s = request.streams[i];
    current[i] = VersionOf(s.stream_id);
    if (!s.expected_version.is_any() &&
        s.expected_version.version() != current[i]) {
      return absl::AbortedError(absl::StrCat(
          "wrong expected version for stream \"", s.stream_id, "\": expected ",
          s.expected_version.ToString(), ", actual ", current[i]));
    }
    total += s.events.size();
  }
  const AppendMetadata& m = request.metadata;
  PlannedRecord record;
  record.events.reserve(total);
  uint64_t position = head_.position;
  result->first_position = position + 1;
  result->stream_versions.clear();
  for (size_t i = 0; i < request.streams.size(); ++i) {
    const StreamAppend& s = request.streams[i];
    uint64_t version = current[i];
    for (const NewEvent& e : s.events) {
      RecordedEvent& r = record.events.emplace_back();
      r.position = ++position;
      r.stream_id = s.stream_id;
      r.stream_version = ++version;
      r.event_type = e.event_type;
      r.payload = e.payload;
      r.event_id =
          e.event_id.empty() ? absl::StrCat("evt-", r.position) : e.event_id;
      r.request_id = m.request_id;
      r.correlation_id = m.correlation_id;
      r.actor = m.actor;
      r.timestamp = m.timestamp;
      r.prev_hash = head_.hash;
    }
    result->stream_versions.push_back(version);
  }
  record.value = SealRecord(absl::MakeSpan(record.events));
  for (size_t i = 0; i < request.streams.size(); ++i) {
    planned_versions_[request.streams[i].stream_id] =
        result->stream_versions[i];
  }
  head_ = LogHead{position, record.events.front().hash};
  result->last_position = position;
  result->deduplicated = false;
  return record;
}

absl::StatusOr<std::vector<PlannedRecord>> BatchPlanner::Copy(
    const std::vector<RecordedEvent>& events) {
  if (events.empty()) return std::vector<PlannedRecord>();
  if (events.front().position != head_.position + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "copied records start at position ", events.front().position,
        ", the log's next position is ", head_.position + 1));
  }
  std::vector<PlannedRecord> planned;
  absl::flat_hash_map<std::string, uint64_t> versions;
  LogHead head = head_;
  RETURN_IF_ERROR(ForEachRecord(
      events, [&](size_t first, size_t count) -> absl::Status {
        const RecordEvents record(&events[first], count);
        const RecordedEvent& start = record.front();
        if (start.position != head.position + 1) {
          return absl::DataLossError(absl::StrCat(
              "copied record at position ", start.position,
              " follows position ", head.position, ": the copy has a gap"));
        }
        if (start.prev_hash != head.hash) {
          return absl::DataLossError(absl::StrCat(
              "copied record at position ", start.position,
              " does not link to the log: its previous hash differs from the "
              "hash of position ",
              head.position));
        }
        for (const RecordedEvent& r : record) {
          const std::string at = absl::StrCat("record ", r.position);
          RETURN_IF_ERROR(CheckField(at + " stream_id", r.stream_id,
                                     kMaxStreamIdBytes, true));
          RETURN_IF_ERROR(CheckField(at + " event_type", r.event_type,
                                     kMaxEventTypeBytes, true));
          RETURN_IF_ERROR(
              CheckField(at + " payload", r.payload, kMaxPayloadBytes, false));
          for (const std::string* field :
               {&r.event_id, &r.request_id, &r.correlation_id, &r.actor}) {
            RETURN_IF_ERROR(CheckField(at + " metadata", *field,
                                       kMaxMetadataFieldBytes, false));
          }
          if (r.request_id != start.request_id ||
              r.correlation_id != start.correlation_id ||
              r.actor != start.actor || r.timestamp != start.timestamp) {
            return absl::DataLossError(absl::StrCat(
                "copied record at position ", r.position,
                ": its metadata differs from its record's"));
          }
          auto [it, inserted] = versions.try_emplace(r.stream_id, 0);
          if (inserted) it->second = VersionOf(r.stream_id);
          if (r.stream_version != it->second + 1) {
            return absl::DataLossError(absl::StrCat(
                "copied record at position ", r.position, " is version ",
                r.stream_version, " of stream \"", r.stream_id, "\", expected ",
                it->second + 1));
          }
          it->second = r.stream_version;
        }
        PlannedRecord& p = planned.emplace_back();
        p.value = EncodeValue(record);
        if (HashOf(absl::string_view(p.value).substr(kHashedOffset)) !=
            start.hash) {
          return absl::DataLossError(
              absl::StrCat("copied record at position ", start.position,
                           ": its hash does not match its content"));
        }
        p.events.assign(record.begin(), record.end());
        for (RecordedEvent& e : p.events) {
          e.record_position = start.position;
          e.record_events = static_cast<uint32_t>(count);
        }
        head = LogHead{start.position + count - 1, start.hash};
        return absl::OkStatus();
      }));
  for (auto& [stream_id, version] : versions) {
    planned_versions_[stream_id] = version;
  }
  head_ = head;
  return planned;
}

std::vector<std::pair<std::string, RequestEntry>> RebuildRequestEntries(
    const std::vector<RecordedEvent>& earlier,
    const std::vector<RecordedEvent>& records) {
  std::vector<std::pair<std::string, RequestEntry>> entries;
  std::vector<const RecordedEvent*> all;
  all.reserve(earlier.size() + records.size());
  for (const RecordedEvent& r : earlier) all.push_back(&r);
  for (const RecordedEvent& r : records) all.push_back(&r);
  size_t i = 0;
  while (i < all.size()) {
    const std::string& id = all[i]->request_id;
    size_t end = i + 1;
    while (end < all.size() && all[end]->request_id == id) ++end;
    if (!id.empty()) {
      // One append: its streams in the order they first appear.
      AppendRequest request;
      for (size_t k = i; k < end; ++k) {
        const RecordedEvent& r = *all[k];
        StreamAppend* stream = nullptr;
        for (StreamAppend& s : request.streams) {
          if (s.stream_id == r.stream_id) stream = &s;
        }
        if (stream == nullptr) {
          stream = &request.streams.emplace_back();
          stream->stream_id = r.stream_id;
          stream->expected_version =
              ExpectedVersion::Exact(r.stream_version - 1);
        }
        stream->events.push_back({r.event_type, r.payload, r.event_id});
      }
      RequestEntry entry;
      entry.content_digest = RequestContentDigest(request);
      entry.result.first_position = all[i]->position;
      entry.result.last_position = all[end - 1]->position;
      for (const StreamAppend& s : request.streams) {
        entry.result.stream_versions.push_back(s.expected_version.version() +
                                               s.events.size());
      }
      entries.emplace_back(id, std::move(entry));
    }
    i = end;
  }
  return entries;
}

}  // namespace record_format
}  // namespace poledger
