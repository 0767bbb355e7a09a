#include "eventstore/event_store.h"

#include "absl/strings/str_cat.h"

namespace poledger {

std::string HashToHex(const Hash& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(hash.size() * 2, '0');
  for (size_t i = 0; i < hash.size(); ++i) {
    out[2 * i] = kDigits[hash[i] >> 4];
    out[2 * i + 1] = kDigits[hash[i] & 0xf];
  }
  return out;
}

std::string ExpectedVersion::ToString() const {
  if (is_any()) return "any";
  if (!is_valid()) return absl::StrCat("malformed(", raw_, ")");
  if (raw_ == 0) return "no stream";
  return absl::StrCat(raw_);
}

bool RecordedEvent::operator==(const RecordedEvent& other) const {
  return position == other.position && stream_id == other.stream_id &&
         stream_version == other.stream_version &&
         event_type == other.event_type && payload == other.payload &&
         event_id == other.event_id && request_id == other.request_id &&
         correlation_id == other.correlation_id && actor == other.actor &&
         timestamp == other.timestamp && prev_hash == other.prev_hash &&
         hash == other.hash;
}

namespace {
absl::Status NoKeys() {
  return absl::UnimplementedError("this event store keeps no keys");
}
}  // namespace

absl::StatusOr<std::optional<std::string>> EventStore::ReadKey(
    absl::string_view) const {
  return NoKeys();
}

absl::Status EventStore::PutKeys(uint64_t, const std::vector<KeyEntry>&) {
  return NoKeys();
}

absl::Status EventStore::VisitKeys(const KeyVisitor&) const { return NoKeys(); }

absl::StatusOr<std::vector<KeyEntry>> EventStore::KeysAddedIn(uint64_t,
                                                              uint64_t) const {
  return NoKeys();
}

}  // namespace poledger
