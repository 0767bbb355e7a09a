// Personal data keys (ledger/personal_data.h): contacts sealed with their
// subjects' keys, opened again, erased for good; the key-encryption key's
// refusals and rotation; and the ledger over a real RocksDB log keeping
// contacts sealed in its records and snapshots across restarts.
#include "ledger/personal_data.h"

#include <memory>
#include <string>
#include <vector>

#include "core/commands.h"
#include "core/errors.h"
#include "eventstore/memory_event_store.h"
#include "eventstore/rocksdb_event_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "tests/core/core_test_util.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::poledger::testing::StatusIs;
using namespace ::poledger::core::testing;  // NOLINT

const std::string kKek(kDataKeyBytes, '\x11');

// A PurchaseOrderCreated whose header holds `emails` as contacts.
v1::AccountEvent Created(const std::vector<std::string>& emails) {
  v1::AccountEvent e;
  v1::PurchaseOrderHeader* h =
      e.mutable_purchase_order_created()->mutable_header();
  for (const std::string& email : emails) {
    v1::Contact* c = h->add_contacts();
    c->set_name("Name of " + email);
    c->set_email(email);
    c->set_phone("+1 555 0100");
  }
  return e;
}

const v1::Contact& ContactOf(const v1::AccountEvent& e, int i) {
  return e.purchase_order_created().header().contacts(i);
}

class PersonalDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto keys = PersonalData::Open(&store_, kKek);
    ASSERT_OK(keys);
    keys_ = std::move(*keys);
  }

  // Seals `events` as an append would, and stores their keys.
  void SealAndStore(std::vector<v1::AccountEvent>& events) {
    std::vector<KeyEntry> written;
    ASSERT_OK(keys_->Seal("acct", events, written));
    ASSERT_OK(store_.PutKeys(++position_, written));
    keys_->Remember(written);
  }

  // The event as the log stores it, opened again.
  v1::AccountEvent Reread(const v1::AccountEvent& event) {
    v1::AccountEvent stored;
    EXPECT_TRUE(stored.ParseFromString(PersonalData::StoredPayload(event)));
    EXPECT_OK(keys_->Open("acct", stored));
    return stored;
  }

  InMemoryEventStore store_;
  std::unique_ptr<PersonalData> keys_;
  uint64_t position_ = 0;
};

TEST_F(PersonalDataTest, ASealedContactKeepsNoPlainFieldAndOpensAgain) {
  std::vector<v1::AccountEvent> events = {
      Created({"Erin@Example.org", " erin@example.org", "keep@example.com"})};
  SealAndStore(events);
  const v1::AccountEvent& sealed = events[0];
  // One subject for an address in any case, another for another address.
  EXPECT_EQ(ContactOf(sealed, 0).subject_ref().size(), core::kSubjectRefBytes);
  EXPECT_EQ(ContactOf(sealed, 0).subject_ref(), ContactOf(sealed, 1).subject_ref());
  EXPECT_NE(ContactOf(sealed, 0).subject_ref(), ContactOf(sealed, 2).subject_ref());
  // The state keeps the plain fields; the log does not.
  EXPECT_EQ(ContactOf(sealed, 0).email(), "Erin@Example.org");
  const std::string stored = PersonalData::StoredPayload(sealed);
  EXPECT_EQ(stored.find("xample.org"), std::string::npos);
  EXPECT_EQ(stored.find("Name of"), std::string::npos);
  EXPECT_EQ(stored.find("555"), std::string::npos);
  const v1::AccountEvent again = Reread(sealed);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ContactOf(again, i).email(), ContactOf(sealed, i).email());
    EXPECT_EQ(ContactOf(again, i).name(), ContactOf(sealed, i).name());
    EXPECT_EQ(ContactOf(again, i).phone(), "+1 555 0100");
  }
  // The reference of an address is what ReferenceOf says.
  auto ref = keys_->ReferenceOf("acct", "ERIN@example.org");
  ASSERT_OK(ref);
  EXPECT_EQ(*ref, ContactOf(sealed, 0).subject_ref());
  auto unknown = keys_->ReferenceOf("other-acct", "erin@example.org");
  ASSERT_OK(unknown);
  EXPECT_EQ(*unknown, "");
}

TEST_F(PersonalDataTest, AnErasedSubjectReadsErasedAndComesBackAsNewData) {
  std::vector<v1::AccountEvent> events = {Created({"erin@example.org"})};
  SealAndStore(events);
  const v1::AccountEvent before = events[0];
  const std::string ref = ContactOf(before, 0).subject_ref();
  auto state = keys_->SubjectState("acct", ref);
  ASSERT_OK(state);
  EXPECT_EQ(*state, PersonalData::Subject::kLive);
  std::vector<v1::AccountEvent> erase(1);
  erase[0].mutable_personal_data_erased()->set_subject_ref(ref);
  SealAndStore(erase);
  state = keys_->SubjectState("acct", ref);
  ASSERT_OK(state);
  EXPECT_EQ(*state, PersonalData::Subject::kErased);
  v1::AccountEvent reread = Reread(before);
  EXPECT_TRUE(ContactOf(reread, 0).erased());
  EXPECT_EQ(ContactOf(reread, 0).email(), "");
  EXPECT_EQ(ContactOf(reread, 0).subject_ref(), ref);
  // A fresh PersonalData over the same store (a restart) agrees.
  auto restarted = PersonalData::Open(&store_, kKek);
  ASSERT_OK(restarted);
  v1::AccountEvent stored;
  ASSERT_TRUE(stored.ParseFromString(PersonalData::StoredPayload(before)));
  ASSERT_OK((*restarted)->Open("acct", stored));
  EXPECT_TRUE(ContactOf(stored, 0).erased());
  // The same address again: a new generation, readable; the old copy stays
  // erased.
  std::vector<v1::AccountEvent> again = {Created({"erin@example.org"})};
  SealAndStore(again);
  EXPECT_EQ(ContactOf(Reread(again[0]), 0).email(), "erin@example.org");
  EXPECT_TRUE(ContactOf(Reread(before), 0).erased());
}

TEST_F(PersonalDataTest, AChangedByteOfASealedContactIsDataLoss) {
  std::vector<v1::AccountEvent> events = {Created({"erin@example.org"})};
  SealAndStore(events);
  v1::AccountEvent stored;
  ASSERT_TRUE(stored.ParseFromString(PersonalData::StoredPayload(events[0])));
  const std::string sealed = ContactOf(stored, 0).sealed();
  for (size_t i = 0; i < sealed.size(); ++i) {
    v1::AccountEvent changed = stored;
    std::string bytes = sealed;
    bytes[i] ^= 0x01;
    changed.mutable_purchase_order_created()
        ->mutable_header()
        ->mutable_contacts(0)
        ->set_sealed(bytes);
    EXPECT_THAT(keys_->Open("acct", changed),
                StatusIs(absl::StatusCode::kDataLoss))
        << "byte " << i;
  }
  // Moved to another account, it does not open either.
  EXPECT_THAT(keys_->Open("other", stored), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(PersonalDataTest, TheKeyEncryptionKeyIsRequiredCheckedAndRotated) {
  std::vector<v1::AccountEvent> events = {Created({"a@example.org"}),
                                          Created({"b@example.org"})};
  SealAndStore(events);
  EXPECT_THAT(PersonalData::Open(&store_, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(core::ReasonOf(PersonalData::Open(&store_, "").status()),
            core::reason::kNoDataKey);
  const std::string other(kDataKeyBytes, '\x22');
  EXPECT_THAT(PersonalData::Open(&store_, other),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Rotation: the wrong old key rewraps nothing; the right one everything.
  EXPECT_THAT(PersonalData::Rewrap(&store_, other, kKek),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(PersonalData::Rewrap(&store_, kKek, kKek),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto rewrapped = PersonalData::Rewrap(&store_, kKek, other);
  ASSERT_OK(rewrapped);
  EXPECT_EQ(*rewrapped, 3u);  // The account's secret and two subjects.
  EXPECT_THAT(PersonalData::Open(&store_, kKek),
              StatusIs(absl::StatusCode::kPermissionDenied));
  auto rotated = PersonalData::Open(&store_, other);
  ASSERT_OK(rotated);
  v1::AccountEvent stored;
  ASSERT_TRUE(stored.ParseFromString(PersonalData::StoredPayload(events[1])));
  ASSERT_OK((*rotated)->Open("acct", stored));
  EXPECT_EQ(ContactOf(stored, 0).email(), "b@example.org");
  // Without a key nothing seals.
  InMemoryEventStore empty;
  auto none = PersonalData::Open(&empty, "");
  ASSERT_OK(none);
  std::vector<v1::AccountEvent> more = {Created({"c@example.org"})};
  std::vector<KeyEntry> written;
  EXPECT_THAT((*none)->Seal("acct", more, written),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(written.empty());
}

// The ledger over a RocksDB log: contacts sealed in records and snapshots,
// opened after a restart from either, erased for good.
class LedgerPersonalDataTest : public ::testing::Test {
 protected:
  void Open(const std::string& kek = kKek) {
    ledger_.reset();
    keys_.reset();
    store_.reset();
    RocksDbEventStoreOptions options;
    options.path = dir_.path() + "/log";
    auto store = RocksDbEventStore::Open(options);
    ASSERT_OK(store);
    store_ = std::move(*store);
    auto keys = PersonalData::Open(store_.get(), kek);
    ASSERT_OK(keys);
    keys_ = std::move(*keys);
    LedgerOptions ledger_options;
    ledger_options.personal_data = keys_.get();
    auto ledger = Ledger::Open(store_.get(), &clock_, ledger_options);
    ASSERT_OK(ledger);
    ledger_ = std::move(*ledger);
  }

  RequestContext Ctx() { return RequestContext{"acct-1", "", "tester", ""}; }

  std::vector<v1::Contact> ContactsOf(const std::string& po) {
    std::vector<v1::Contact> out;
    EXPECT_OK(ledger_->Read("acct-1", [&](const core::AccountState& s) {
      const auto& contacts = s.purchase_orders.at(po).header.contacts();
      out.assign(contacts.begin(), contacts.end());
    }));
    return out;
  }

  // Whether any record or snapshot part holds `text`.
  bool StoredAnywhere(const std::string& text) {
    bool found = false;
    auto records = store_->ReadForward(1, 100000);
    EXPECT_OK(records);
    for (const RecordedEvent& r : *records) {
      if (r.payload.find(text) != std::string::npos) found = true;
    }
    EXPECT_OK(store_->ReadSnapshotParts(
        SnapshotPartFilter{},
        [&](absl::string_view, absl::string_view blob) {
          if (blob.find(text) != absl::string_view::npos) found = true;
          return absl::OkStatus();
        }));
    return found;
  }

  TempDir dir_;
  ManualClock clock_{absl::FromCivil(absl::CivilSecond(2026, 2, 1),
                                     absl::UTCTimeZone())};
  std::unique_ptr<RocksDbEventStore> store_;
  std::unique_ptr<PersonalData> keys_;
  std::unique_ptr<Ledger> ledger_;
};

TEST_F(LedgerPersonalDataTest, ContactsStaySealedAcrossSnapshotsRestartsAndErasure) {
  Open();
  const auto lines = std::vector<v1::LineItemDefinition>{
      Line(1, v1::LINE_ITEM_TYPE_ALL, 1000)};
  ASSERT_OK(ledger_->Execute(Ctx(), Create("po-1", lines)));
  ASSERT_OK(ledger_->CreateSnapshot());
  ASSERT_OK(ledger_->Execute(Ctx(), Create("po-2", lines)));
  EXPECT_EQ(ContactsOf("po-1")[0].email(), "finance@example.com");
  EXPECT_FALSE(StoredAnywhere("finance@example.com"));
  // Restarted: po-1 from the snapshot, po-2 from the log.
  Open();
  for (const char* po : {"po-1", "po-2"}) {
    const std::vector<v1::Contact> contacts = ContactsOf(po);
    ASSERT_EQ(contacts.size(), 1u);
    EXPECT_EQ(contacts[0].email(), "finance@example.com") << po;
  }
  auto ref = keys_->ReferenceOf("acct-1", "finance@example.com");
  ASSERT_OK(ref);
  ASSERT_OK(ledger_->Execute(Ctx(), core::ErasePersonalData{*ref, "t-1"}));
  EXPECT_TRUE(ContactsOf("po-1")[0].erased());
  ASSERT_OK(ledger_->CreateSnapshot());
  // Restarted from the snapshot after the erasure, and from the whole log.
  Open();
  EXPECT_TRUE(ContactsOf("po-2")[0].erased());
  auto past = ledger_->AccountAt("acct-1", 1);
  ASSERT_OK(past);
  EXPECT_TRUE(past->purchase_orders.at("po-1").header.contacts(0).erased());
  auto events = ledger_->ReadAccountEvents("acct-1", 1, 10);
  ASSERT_OK(events);
  EXPECT_TRUE(events->front()
                  .event.purchase_order_created()
                  .header()
                  .contacts(0)
                  .erased());
  EXPECT_FALSE(StoredAnywhere("finance@example.com"));
  // Without the key the directory does not open.
  EXPECT_THAT(PersonalData::Open(store_.get(), ""),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(LedgerPersonalDataTest, WithoutAKeyContactsAreRefusedAndNothingIsWritten) {
  Open("");
  const auto lines = std::vector<v1::LineItemDefinition>{
      Line(1, v1::LINE_ITEM_TYPE_ALL, 1000)};
  auto refused = ledger_->Execute(Ctx(), Create("po-1", lines));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(core::ReasonOf(refused.status()), core::reason::kNoDataKey);
  EXPECT_EQ(store_->Head().position, 0u);
  v1::PurchaseOrderHeader no_contacts = Header();
  no_contacts.clear_contacts();
  ASSERT_OK(ledger_->Execute(Ctx(), Create("po-1", lines, no_contacts)));
  EXPECT_EQ(store_->Head().position, 1u);
}

}  // namespace
}  // namespace poledger
