// Fuzzes the event store's record format: a stored record value, a stored
// request outcome and every key kind, as a damaged disk or a bug could
// leave them. Properties: nothing crashes; a value that decodes encodes
// back to a value that decodes to the same events, and its header counts
// them; a sealed record (of one event or of several) decodes to its events,
// and with any one byte changed never verifies.
//
// The personal data in records (README "Personal data"): an event's sealed
// contacts, as a damaged disk or a bug could leave them, never crash the
// opening; a contact sealed and left intact opens to its fields; with any
// one byte of its sealed form changed it never opens to anything but an
// error.
//
// Input: the first byte picks the mode. Even: the rest is a stored value
// and a key, and an account event to open. 1 (mod 4): the rest builds a
// record (stream id, payload), which is sealed, then damaged at the offset
// the second byte gives. 3 (mod 4): the rest builds a contact, which is
// sealed, opened, then damaged at the offset the second byte gives.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "eventstore/memory_event_store.h"
#include "eventstore/record_format.h"
#include "fuzz/quiet_protobuf.h"
#include "ledger/personal_data.h"
#include "poledger/v1/events.pb.h"

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

// One store of keys for every input: account "acct" with a live subject
// (made by sealing "live@example.org") and an erased one.
poledger::PersonalData& Keys() {
  static auto* store = new poledger::InMemoryEventStore();
  static poledger::PersonalData* keys = [] {
    auto made = poledger::PersonalData::Open(
        store, std::string(poledger::kDataKeyBytes, '\x42'));
    if (!made.ok()) Fail("the key store does not open");
    std::vector<poledger::v1::AccountEvent> events(2);
    auto* created = events[0].mutable_purchase_order_created();
    created->mutable_header()->add_contacts()->set_email("live@example.org");
    created->mutable_header()->add_contacts()->set_email("gone@example.org");
    std::vector<poledger::KeyEntry> written;
    if (!(*made)->Seal("acct", events, written).ok()) Fail("seal");
    events.resize(1);
    const std::string gone =
        events[0].purchase_order_created().header().contacts(1).subject_ref();
    events[0].Clear();
    events[0].mutable_personal_data_erased()->set_subject_ref(gone);
    if (!(*made)->Seal("acct", events, written).ok()) Fail("erase");
    if (!store->PutKeys(1, written).ok()) Fail("keys");
    (*made)->Remember(written);
    return made->release();
  }();
  return *keys;
}

// Opens `bytes` as a stored account event of account "acct".
void OpenAnything(absl::string_view bytes) {
  poledger::v1::AccountEvent event;
  if (!event.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return;
  }
  (void)Keys().Open("acct", event);
}

// A contact from the input, sealed, opened, then damaged at the offset the
// first byte gives.
void DamageContact(absl::string_view bytes) {
  if (bytes.size() < 2) return;
  const uint8_t offset = static_cast<uint8_t>(bytes[0]);
  bytes.remove_prefix(1);
  const size_t cut = bytes.size() / 2;
  std::vector<poledger::v1::AccountEvent> events(1);
  poledger::v1::Contact* contact = events[0]
                                       .mutable_notification_raised()
                                       ->add_recipients();
  contact->set_name(std::string(bytes.substr(0, cut)));
  contact->set_email(std::string(bytes.substr(cut)));
  const poledger::v1::Contact plain = *contact;
  // Only what a request can carry: proto3 strings parse as UTF-8 alone.
  if (!poledger::v1::Contact().ParseFromString(plain.SerializeAsString())) {
    return;
  }
  std::vector<poledger::KeyEntry> written;
  if (!Keys().Seal("acct", events, written).ok()) Fail("a contact does not seal");
  if (!written.empty()) {  // A new subject: its key, as an append writes it.
    Keys().Remember(written);
  }
  poledger::v1::AccountEvent stored;
  if (!stored.ParseFromString(poledger::PersonalData::StoredPayload(events[0]))) {
    Fail("a stored payload does not parse");
  }
  const poledger::v1::Contact& sealed = stored.notification_raised().recipients(0);
  if (!sealed.name().empty() || !sealed.email().empty()) {
    Fail("a stored contact keeps its plain fields");
  }
  poledger::v1::AccountEvent opened = stored;
  if (!Keys().Open("acct", opened).ok()) Fail("a sealed contact does not open");
  const poledger::v1::Contact& back = opened.notification_raised().recipients(0);
  if (back.name() != plain.name() || back.email() != plain.email()) {
    Fail("a sealed contact opens to other fields");
  }
  std::string damaged = sealed.sealed();
  damaged[offset % damaged.size()] ^= 0x01;
  poledger::v1::AccountEvent changed = stored;
  changed.mutable_notification_raised()->mutable_recipients(0)->set_sealed(
      damaged);
  const absl::Status status = Keys().Open("acct", changed);
  if (status.ok() && !changed.notification_raised().recipients(0).erased()) {
    Fail("a sealed contact with a changed byte opens");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const absl::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    DecodeAnything(bytes);
    OpenAnything(bytes);
  } else if (data[0] % 4 == 1) {
    DamageSealed(bytes);
  } else {
    DamageContact(bytes);
  }
  return 0;
}
