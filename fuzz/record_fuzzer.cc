// Fuzzes the event store's record format: a stored record value, a stored
// request outcome and every key kind, as a damaged disk or a bug could
// leave them. Properties: nothing crashes; a value that decodes encodes
// back to a value that decodes to the same record; a sealed record with
// any one byte changed never verifies.
//
// Input: the first byte picks the mode. Even: the rest is a stored value
// and a key. Odd: the rest builds a record (stream id, payload), which is
// sealed, then damaged at the offset the second byte gives.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "eventstore/record_format.h"

namespace rf = poledger::record_format;

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

void DecodeAnything(absl::string_view bytes) {
  (void)rf::ParseLogKey(bytes);
  std::string stream;
  uint64_t version = 0;
  (void)rf::ParseStreamKey(bytes, &stream, &version);
  (void)rf::ParseSnapshotKey(bytes);
  (void)rf::DecodeFixed64(bytes);
  (void)rf::DecodeRequestValue(bytes);
  (void)rf::DecodeRecordValue(7, bytes, /*verify=*/true);
  absl::StatusOr<poledger::RecordedEvent> record =
      rf::DecodeRecordValue(7, bytes, /*verify=*/false);
  if (!record.ok()) return;
  absl::StatusOr<poledger::RecordedEvent> again =
      rf::DecodeRecordValue(7, rf::EncodeRecordValue(*record), false);
  if (!again.ok() || again->payload != record->payload ||
      again->stream_id != record->stream_id ||
      again->stream_version != record->stream_version ||
      again->event_type != record->event_type) {
    Fail("a decoded record does not round-trip");
  }
}

void DamageSealed(absl::string_view bytes) {
  if (bytes.size() < 2) return;
  const uint8_t offset = static_cast<uint8_t>(bytes[0]);
  bytes.remove_prefix(1);
  const size_t cut = bytes.size() / 2;
  poledger::RecordedEvent record;
  record.position = 7;
  record.stream_id = std::string(bytes.substr(0, cut));
  record.stream_version = 3;
  record.event_type = "invoice_recorded";
  record.payload = std::string(bytes.substr(cut));
  record.actor = "fuzz";
  record.prev_hash.fill(0x5a);
  const std::string sealed = rf::SealRecord(&record);
  absl::StatusOr<poledger::RecordedEvent> intact =
      rf::DecodeRecordValue(7, sealed, /*verify=*/true);
  if (!intact.ok() || intact->payload != record.payload) {
    Fail("a sealed record does not verify");
  }
  std::string damaged = sealed;
  damaged[offset % damaged.size()] ^= 0x01;
  if (rf::DecodeRecordValue(7, damaged, /*verify=*/true).ok()) {
    Fail("a record with a changed byte verifies");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const absl::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    DecodeAnything(bytes);
  } else {
    DamageSealed(bytes);
  }
  return 0;
}
