// Fuzzes the event store's record format: a stored record value, a stored
// request outcome and every key kind, as a damaged disk or a bug could
// leave them. Properties: nothing crashes; a value that decodes encodes
// back to a value that decodes to the same events, and its header counts
// them; a sealed record (of one event or of several) decodes to its events,
// and with any one byte changed never verifies.
//
// Input: the first byte picks the mode. Even: the rest is a stored value
// and a key. Odd: the rest builds a record (stream id, payload), which is
// sealed, then damaged at the offset the second byte gives.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
  std::vector<poledger::RecordedEvent> ignored;
  (void)rf::DecodeRecordValue(7, bytes, /*verify=*/true, &ignored);
  (void)rf::RecordEventCount(bytes);
  std::vector<poledger::RecordedEvent> record;
  if (!rf::DecodeRecordValue(7, bytes, /*verify=*/false, &record).ok()) return;
  absl::StatusOr<uint32_t> count = rf::RecordEventCount(bytes);
  if (!count.ok() || *count != record.size()) {
    Fail("a decoded record's header miscounts its events");
  }
  std::vector<poledger::RecordedEvent> again;
  if (!rf::DecodeRecordValue(7, rf::EncodeRecordValue(record), false, &again)
           .ok() ||
      again != record) {
    Fail("a decoded record does not round-trip");
  }
}

// A record of one to three events (the first input byte's low bits), on
// one or two streams, sealed, then damaged at the offset the second gives.
void DamageSealed(absl::string_view bytes) {
  if (bytes.size() < 3) return;
  const size_t events = 1 + static_cast<uint8_t>(bytes[0]) % 3;
  const uint8_t offset = static_cast<uint8_t>(bytes[1]);
  bytes.remove_prefix(2);
  const size_t cut = bytes.size() / 2;
  std::vector<poledger::RecordedEvent> record(events);
  for (size_t i = 0; i < events; ++i) {
    poledger::RecordedEvent& e = record[i];
    e.position = 7 + i;
    // The first two events on one stream, the third on another.
    e.stream_id = std::string(bytes.substr(0, cut)) + (i == 2 ? "/b" : "/a");
    e.stream_version = i == 2 ? 1 : 3 + i;
    e.event_type = "invoice_recorded";
    e.payload = std::string(bytes.substr(cut));
    e.event_id = i == 1 ? "evt-8" : "given";
    e.actor = "fuzz";
    e.prev_hash.fill(0x5a);
  }
  const std::string sealed = rf::SealRecord(absl::MakeSpan(record));
  std::vector<poledger::RecordedEvent> intact;
  if (!rf::DecodeRecordValue(7, sealed, /*verify=*/true, &intact).ok() ||
      intact != record) {
    Fail("a sealed record does not verify");
  }
  std::string damaged = sealed;
  damaged[offset % damaged.size()] ^= 0x01;
  std::vector<poledger::RecordedEvent> out;
  if (rf::DecodeRecordValue(7, damaged, /*verify=*/true, &out).ok()) {
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
