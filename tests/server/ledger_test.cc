// The application service over a real RocksDB store: commands, request-id
// retries, restart from snapshot plus log, state at a past position.
#include "ledger/ledger.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/errors.h"
#include "eventstore/rocksdb_event_store.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/core/core_test_util.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::poledger::testing::StatusIs;
using namespace ::poledger::core::testing;  // NOLINT

class LedgerTest : public ::testing::Test {
 protected:
  void Open(LedgerOptions options = {}) {
    ledger_.reset();
    store_.reset();
    RocksDbEventStoreOptions store_options;
    store_options.path = dir_.path() + "/log";
    auto store = RocksDbEventStore::Open(store_options);
    ASSERT_OK(store);
    store_ = std::move(*store);
    auto ledger = Ledger::Open(store_.get(), &clock_, options);
    ASSERT_OK(ledger);
    ledger_ = std::move(*ledger);
  }

  RequestContext Ctx(const std::string& request_id = "") {
    return RequestContext{"111122223333", request_id, "tester", ""};
  }

  // The account's whole state, with the invoices saved out of memory.
  std::string Snapshot(const std::string& account) {
    absl::StatusOr<core::AccountState> s = ledger_->ReadWholeState(account);
    EXPECT_OK(s);
    return s.ok() ? core::ToSnapshot(*s).SerializeAsString() : "<error>";
  }

  // The account's state without its invoices, as a snapshot saves it.
  std::string Header(const std::string& account) {
    std::string out;
    EXPECT_OK(ledger_->Read(account, [&](const core::AccountState& s) {
      out = core::ToSnapshot(s, core::SnapshotInvoices::kExclude)
                .SerializeAsString();
    }));
    return out;
  }

  // Reads the store's snapshot parts; returns their position.
  uint64_t SavedParts(std::map<std::string, std::string>* parts) {
    parts->clear();
    absl::StatusOr<uint64_t> position = store_->ReadSnapshotParts(
        SnapshotPartFilter{},
        [&](absl::string_view key, absl::string_view blob) {
          (*parts)[std::string(key)] = std::string(blob);
          return absl::OkStatus();
        });
    EXPECT_OK(position);
    return position.value_or(0);
  }

  TempDir dir_;
  ManualClock clock_{At(2026, 2, 1)};
  std::unique_ptr<RocksDbEventStore> store_;
  std::unique_ptr<Ledger> ledger_;
};

TEST_F(LedgerTest, ExecutesAndAppendsToTheAccountStream) {
  Open();
  auto created = ledger_->Execute(
      Ctx(), Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)}));
  ASSERT_OK(created);
  ASSERT_EQ(created->events.size(), 1u);
  EXPECT_EQ(created->events[0].position, 1u);
  auto records = store_->ReadForward(1, 10);
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].stream_id, "account/111122223333");
  EXPECT_EQ((*records)[0].event_type, "purchase_order_created");
  EXPECT_EQ((*records)[0].actor, "tester");
  EXPECT_EQ((*records)[0].timestamp, At(2026, 2, 1));
  auto refused = ledger_->Execute(Ctx(), Create("po", {}));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(store_->Head().position, 1u);
  EXPECT_THAT(ledger_->Execute(RequestContext{"bad id!", "", "", ""},
                               Create("x", {})),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// The names of this process's threads, as /proc shows them.
std::multiset<std::string> ThreadNames() {
  std::multiset<std::string> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.insert(name);
  }
  return names;
}

TEST_F(LedgerTest, ItsThreadsCarryTheirNames) {
  Open(LedgerOptions{.snapshot_every_events = 0, .completion_threads = 2});
  ASSERT_OK(ledger_->Execute(Ctx(), Create("po", {})));
  // Each thread names itself as it starts: one not scheduled yet still has
  // its creator's name (seen on a loaded machine), so wait for them.
  std::multiset<std::string> names = ThreadNames();
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       (names.count("pl-complete") < 2 || names.count("pl-commit") < 1) &&
       absl::Now() < deadline;
       names = ThreadNames()) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(names.count("pl-complete"), 2u);
  EXPECT_EQ(names.count("pl-commit"), 1u);
}

TEST_F(LedgerTest, ARetriedRequestIdReturnsTheFirstResult) {
  Open();
  auto first = ledger_->Execute(Ctx("req-1"), Create("po", {}));
  ASSERT_OK(first);
  auto retry = ledger_->Execute(Ctx("req-1"), Create("po", {}));
  ASSERT_OK(retry);
  EXPECT_TRUE(retry->duplicate);
  ASSERT_EQ(retry->events.size(), 1u);
  EXPECT_EQ(retry->events[0].position, first->events[0].position);
  EXPECT_EQ(store_->Head().position, 1u);
  // The same id in another account is another request.
  auto other = ledger_->Execute(RequestContext{"999", "req-1", "", ""},
                                Create("po", {}));
  ASSERT_OK(other);
  EXPECT_FALSE(other->duplicate);
}

TEST_F(LedgerTest, RestartFromSnapshotAndLogGivesTheSameState) {
  LedgerOptions options;
  options.snapshot_every_events = 3;
  Open(options);
  ASSERT_OK(ledger_->Execute(Ctx(), Create("a", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(ledger_->Execute(Ctx(), Invoice(absl::StrCat("inv-", i), 100)));
  }
  ASSERT_OK(ledger_->Execute(RequestContext{"other", "", "", ""},
                             Create("b", {})));
  const std::string before = Snapshot("111122223333");
  ledger_.reset();  // Waits for a snapshot still being taken.
  std::map<std::string, std::string> parts;
  const uint64_t position = SavedParts(&parts);
  EXPECT_GE(position, 3u);
  EXPECT_THAT(parts, ::testing::Contains(::testing::Key("111122223333")));
  Open(options);
  EXPECT_EQ(Snapshot("111122223333"), before);
  EXPECT_FALSE(Snapshot("other").empty());
  // And it keeps working after the restart.
  ASSERT_OK(ledger_->Execute(Ctx(), Invoice("after", 100)));
}

TEST_F(LedgerTest, ASnapshotSavesOnlyTheAccountsChangedSinceTheLast) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  Open(options);
  const RequestContext a{"acct-a", "", "", ""};
  const RequestContext b{"acct-b", "", "", ""};
  ASSERT_OK(ledger_->Execute(a, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  ASSERT_OK(ledger_->Execute(b, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  auto first = ledger_->CreateSnapshot();
  ASSERT_OK(first);
  EXPECT_EQ(*first, 2u);
  std::map<std::string, std::string> parts;
  ASSERT_EQ(SavedParts(&parts), 2u);
  EXPECT_THAT(parts, ::testing::ElementsAre(::testing::Key("acct-a"),
                                            ::testing::Key("acct-b")));
  EXPECT_EQ(parts["acct-a"], Header("acct-a"));
  EXPECT_EQ(parts["acct-b"], Header("acct-b"));
  // Mark acct-b's saved part, then change only acct-a: the next snapshot
  // rewrites acct-a's part and leaves acct-b's as it is.
  v1::AccountSnapshot marked;
  ASSERT_TRUE(marked.ParseFromString(parts["acct-b"]));
  marked.add_marketplace_transactions()->set_transaction_id("marker");
  ASSERT_OK(store_->SaveSnapshotParts(2, {{"acct-b", marked.SerializeAsString()}}));
  ASSERT_OK(ledger_->Execute(a, Invoice("inv-1", 100)));
  auto second = ledger_->CreateSnapshot();
  ASSERT_OK(second);
  EXPECT_EQ(*second, 3u);
  ASSERT_EQ(SavedParts(&parts), 3u);
  EXPECT_EQ(parts["acct-a"], Header("acct-a"));
  EXPECT_EQ(parts["acct-b"], marked.SerializeAsString());
  // The invoice is a part of its own.
  const std::string inv1 = std::string("acct-a\0inv-1", 12);
  ASSERT_EQ(parts.count(inv1), 1u);
  v1::InvoiceSnapshot saved;
  ASSERT_TRUE(saved.ParseFromString(parts[inv1]));
  EXPECT_EQ(saved.invoice_id(), "inv-1");
  EXPECT_EQ(saved.credited_micros(), 0);
  // Nothing changed: nothing to save, the position stays.
  auto third = ledger_->CreateSnapshot();
  ASSERT_OK(third);
  EXPECT_EQ(*third, 3u);
  // Mark inv-1's part; a new invoice saves only itself (and the account).
  const std::string unmarked = parts[inv1];
  saved.set_content_digest("marker");
  ASSERT_OK(store_->SaveSnapshotParts(3, {{inv1, saved.SerializeAsString()}}));
  ASSERT_OK(ledger_->Execute(a, Invoice("inv-2", 50)));
  ASSERT_OK(ledger_->CreateSnapshot());
  ASSERT_EQ(SavedParts(&parts), 4u);
  EXPECT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[inv1], saved.SerializeAsString());
  // A credit memo changes its original: both are saved again. (inv-1 left
  // memory with the snapshot that saved it: the credit reads its part, so
  // the part is put back as it was first.)
  ASSERT_OK(store_->SaveSnapshotParts(4, {{inv1, unmarked}}));
  ASSERT_OK(ledger_->Execute(a, CreditMemo("cm-1", "inv-1", 30)));
  ASSERT_OK(ledger_->CreateSnapshot());
  ASSERT_EQ(SavedParts(&parts), 5u);
  EXPECT_EQ(parts.size(), 5u);
  ASSERT_TRUE(saved.ParseFromString(parts[inv1]));
  v1::InvoiceSnapshot as_first;
  ASSERT_TRUE(as_first.ParseFromString(unmarked));
  EXPECT_EQ(saved.content_digest(), as_first.content_digest());
  EXPECT_EQ(saved.credited_micros(), Units(30));
  // And a restart from these parts rebuilds the same state.
  const std::string state = Snapshot("acct-a");
  Open(options);
  EXPECT_EQ(Snapshot("acct-a"), state);
}

// An append saves the entries of the invoices and credit memos it records
// with itself (not the credit a memo gives its original: the next snapshot
// saves that), as the state holds them once applied; snapshots then leave
// them alone, and a restart that replays their events from an older
// snapshot does not take the saved entries for earlier ones.
TEST_F(LedgerTest, AnAppendSavesTheInvoicesItRecords) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  Open(options);
  const RequestContext a{"acct-a", "", "", ""};
  ASSERT_OK(ledger_->Execute(
      a, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL),
                       Line(2, v1::LINE_ITEM_TYPE_ALL)})));
  ASSERT_OK(ledger_->CreateSnapshot());
  ASSERT_OK(ledger_->Execute(a, Invoice("inv-1", 100)));
  std::vector<core::Command> batch;
  batch.push_back(Invoice("inv-2", 20));
  batch.push_back(Invoice("inv-1", 100));  // A repeat: no new entry.
  batch.push_back(CreditMemo("cm-1", "inv-1", 30));
  for (absl::StatusOr<ExecuteResult>& r :
       ledger_->ExecuteBatch(a, std::move(batch))) {
    ASSERT_OK(r);
  }
  auto saved_entry = [&](const std::string& id) {
    std::map<std::string, std::string> parts;
    SavedParts(&parts);
    v1::InvoiceSnapshot entry;
    auto it = parts.find(absl::StrCat("acct-a", std::string(1, '\0'), id));
    if (it == parts.end() || !entry.ParseFromString(it->second)) {
      entry.set_invoice_id("<none>");
    }
    return entry;
  };
  std::map<std::string, std::string> parts;
  EXPECT_EQ(SavedParts(&parts), 1u);  // The snapshot's position stays.
  EXPECT_EQ(parts.size(), 4u);        // acct-a, inv-1, inv-2 and cm-1.
  std::string whole;
  std::map<std::string, core::InvoiceEntry> held;
  ASSERT_OK(ledger_->Read("acct-a", [&](const core::AccountState& s) {
    for (const auto& [id, entry] : s.invoices) held[id] = entry;
  }));
  for (const std::string id : {"inv-2", "cm-1"}) {
    EXPECT_EQ(saved_entry(id).SerializeAsString(),
              core::ToInvoiceSnapshot(id, held[id]).SerializeAsString())
        << id;
  }
  EXPECT_EQ(saved_entry("cm-1").original_invoice_id(), "inv-1");
  EXPECT_EQ(saved_entry("inv-1").credited_micros(), 0);
  EXPECT_EQ(held["inv-1"].credited, Units(30));
  EXPECT_EQ(saved_entry("inv-2").line_number(), 1);
  EXPECT_EQ(saved_entry("inv-2").recorded_version(), 3u);

  // A restart before any snapshot: acct-a loads at version 1 and replays
  // versions 2 to 4 over their saved entries.
  const std::string state = Snapshot("acct-a");
  Open(options);
  EXPECT_EQ(Snapshot("acct-a"), state);
  // The snapshot after it saves the account and inv-1 (its credit), and
  // the entries saved by their appends stay as they were.
  const std::string inv2 = parts[std::string("acct-a\0inv-2", 12)];
  ASSERT_OK(ledger_->CreateSnapshot());
  EXPECT_EQ(SavedParts(&parts), 4u);
  EXPECT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[std::string("acct-a\0inv-2", 12)], inv2);
  EXPECT_EQ(saved_entry("inv-1").credited_micros(), Units(30));

  // New invoices leave memory with the next snapshot without being written
  // by it, and are read back from their appends' entries.
  ASSERT_OK(ledger_->Execute(a, Invoice("inv-3", 5)));
  ASSERT_OK(ledger_->Execute(a, Invoice("inv-4", 5)));
  const std::string inv3 = saved_entry("inv-3").SerializeAsString();
  ASSERT_OK(ledger_->CreateSnapshot());
  EXPECT_EQ(saved_entry("inv-3").SerializeAsString(), inv3);
  EXPECT_EQ(ledger_->InvoicesInMemory(), 1u);  // inv-4, pinned.
  auto again = ledger_->Execute(a, Invoice("inv-3", 5));
  ASSERT_OK(again);
  EXPECT_TRUE(again->duplicate);
  EXPECT_THAT(ledger_->Execute(a, Invoice("inv-3", 6)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  const std::string after = Snapshot("acct-a");
  Open(options);
  EXPECT_EQ(Snapshot("acct-a"), after);
  auto rebuilt = ledger_->AccountAt("acct-a", store_->Head().position);
  ASSERT_OK(rebuilt);
  EXPECT_EQ(core::ToSnapshot(*rebuilt).SerializeAsString(), after);
}

TEST_F(LedgerTest, AccountsReplayedAfterTheSnapshotAreSavedByTheNextOne) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  Open(options);
  const RequestContext a{"acct-a", "", "", ""};
  ASSERT_OK(ledger_->Execute(a, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  ASSERT_OK(ledger_->CreateSnapshot());
  ASSERT_OK(ledger_->Execute(a, Invoice("inv-1", 100)));
  const std::string state = Snapshot("acct-a");
  Open(options);  // Loads acct-a at version 1 and replays version 2.
  EXPECT_EQ(Snapshot("acct-a"), state);
  ASSERT_OK(ledger_->CreateSnapshot());
  std::map<std::string, std::string> parts;
  EXPECT_EQ(SavedParts(&parts), 2u);
  EXPECT_EQ(parts["acct-a"], Header("acct-a"));
  EXPECT_EQ(parts.count(std::string("acct-a\0inv-1", 12)), 1u);
}

// Open lists the accounts and loads none; each loads on its first use. A
// snapshot loads every account first: one created after the last snapshot
// and not used since the restart has no part yet, and the snapshot's
// position must not pass its events.
TEST_F(LedgerTest, AccountsLoadOnFirstUseAndASnapshotSavesTheUnusedOnes) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  options.warm_up = false;
  Open(options);
  const RequestContext a{"acct-a", "", "", ""};
  const RequestContext later{"acct-later", "", "", ""};
  ASSERT_OK(
      ledger_->Execute(a, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  ASSERT_OK(ledger_->CreateSnapshot());
  ASSERT_OK(ledger_->Execute(a, Invoice("inv-1", 100)));
  ASSERT_OK(
      ledger_->Execute(later, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  ASSERT_OK(ledger_->Execute(later, Invoice("inv-9", 70)));
  const std::string state_a = Snapshot("acct-a");
  const std::string state_later = Snapshot("acct-later");

  Open(options);
  EXPECT_FALSE(ledger_->AllLoaded());
  EXPECT_THAT(ledger_->AccountIds(),
              ::testing::UnorderedElementsAre("acct-a", "acct-later"));
  EXPECT_EQ(Snapshot("acct-a"), state_a);  // Loaded now: part + 1 event.
  EXPECT_FALSE(ledger_->AllLoaded());
  auto position = ledger_->CreateSnapshot();
  ASSERT_OK(position);
  EXPECT_EQ(*position, 4u);
  EXPECT_TRUE(ledger_->AllLoaded());
  std::map<std::string, std::string> parts;
  ASSERT_EQ(SavedParts(&parts), 4u);
  EXPECT_EQ(parts["acct-later"], Header("acct-later"));
  EXPECT_EQ(parts.count(std::string("acct-later\0inv-9", 16)), 1u);

  // The next start finds acct-later in the snapshot, not after it.
  Open(options);
  EXPECT_EQ(Snapshot("acct-later"), state_later);
  EXPECT_EQ(Snapshot("acct-a"), state_a);
  // A command on an account not loaded yet loads it first.
  Open(options);
  auto more = ledger_->Execute(later, Invoice("inv-10", 5));
  ASSERT_OK(more);
  ASSERT_EQ(more->events.size(), 1u);
  EXPECT_EQ(more->events[0].stream_version, 3u);
}

TEST_F(LedgerTest, TheWarmUpLoadsEveryAccountInTheBackground) {
  Open();
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK(
        ledger_->Execute(RequestContext{absl::StrCat("acct-", i), "", "", ""},
                         Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  }
  absl::Notification warm;
  size_t loaded = 0;
  absl::Status status = absl::UnknownError("not called");
  LedgerOptions options;
  options.on_warm_up = [&](size_t accounts, absl::Duration,
                           const absl::Status& s) {
    loaded = accounts;
    status = s;
    warm.Notify();
  };
  Open(options);
  ASSERT_TRUE(warm.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_OK(status);
  EXPECT_EQ(loaded, 20u);
  EXPECT_TRUE(ledger_->AllLoaded());
}

// An account whose log does not apply (here: a record that is no account
// event) answers DATA_LOSS; the others keep working, and no snapshot is
// taken past it.
TEST_F(LedgerTest, AnAccountThatDoesNotLoadAnswersDataLossAndTheOthersWork) {
  Open();
  const RequestContext a{"acct-a", "", "", ""};
  ASSERT_OK(
      ledger_->Execute(a, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  ASSERT_OK(store_->Append(
      OneEvent("account/broken", ExpectedVersion::Any(), "\xff\xff")));
  absl::Notification warm;
  absl::Status status;
  LedgerOptions options;
  options.snapshot_every_events = 0;
  options.on_warm_up = [&](size_t, absl::Duration, const absl::Status& s) {
    status = s;
    warm.Notify();
  };
  Open(options);
  ASSERT_TRUE(warm.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_FALSE(ledger_->AllLoaded());
  EXPECT_THAT(ledger_->Read("broken", [](const core::AccountState&) {}),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(
      ledger_->Execute(RequestContext{"broken", "", "", ""}, Create("po", {})),
      StatusIs(absl::StatusCode::kDataLoss));
  ASSERT_OK(ledger_->Execute(a, Invoice("inv-1", 100)));
  // The scheduler's tick reaches the others, and reports the failure.
  clock_.Set(At(2027, 1, 1));
  EXPECT_THAT(ledger_->TickAll(), StatusIs(absl::StatusCode::kDataLoss));
  ASSERT_OK(ledger_->Read("acct-a", [](const core::AccountState& s) {
    EXPECT_EQ(s.purchase_orders.at("po").status,
              v1::PURCHASE_ORDER_STATUS_EXPIRED);
  }));
  const uint64_t head = store_->Head().position;
  EXPECT_THAT(ledger_->CreateSnapshot(), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(store_->Head().position, head);
  std::map<std::string, std::string> parts;
  EXPECT_EQ(SavedParts(&parts), 0u);
}

// The account's whole state in `ledger`, serialized.
std::string WholeState(Ledger& ledger, const std::string& account) {
  absl::StatusOr<core::AccountState> s = ledger.ReadWholeState(account);
  EXPECT_OK(s);
  return s.ok() ? core::ToSnapshot(*s).SerializeAsString() : "<error>";
}

// A replica's store and ledger, fed the leader's records as a follower
// copies them.
struct Replica {
  explicit Replica(const std::string& path, const Clock* clock) {
    RocksDbEventStoreOptions store_options;
    store_options.path = path;
    auto opened = RocksDbEventStore::Open(store_options);
    EXPECT_OK(opened);
    store = std::move(*opened);
    LedgerOptions options;
    options.snapshot_every_events = 0;
    options.warm_up = false;
    auto l = Ledger::Open(store.get(), clock, options);
    EXPECT_OK(l);
    ledger = std::move(*l);
  }

  // Copies the leader's records after the replica's head, `chunk` at a time.
  void CopyFrom(const EventStore& leader, size_t chunk) {
    for (;;) {
      auto records = leader.ReadForward(store->Head().position + 1, chunk);
      ASSERT_OK(records);
      if (records->empty()) return;
      ASSERT_OK(store->Replicate(*records));
      ASSERT_OK(ledger->ApplyReplicated(*records));
    }
  }

  std::unique_ptr<RocksDbEventStore> store;
  std::unique_ptr<Ledger> ledger;
};

TEST_F(LedgerTest, AReplicaAppliesCopiedRecordsAcrossSnapshotsAndRestarts) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  Open(options);
  const std::vector<std::string> accounts = {"acct-a", "acct-b", "acct-c"};
  auto work = [&](int round) {
    for (const std::string& account : accounts) {
      const RequestContext ctx{account, "", "", ""};
      if (round == 0) {
        ASSERT_OK(ledger_->Execute(
            ctx, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
      }
      for (int i = 0; i < 3; ++i) {
        ASSERT_OK(ledger_->Execute(
            ctx, Invoice(absl::StrCat("inv-", round, "-", i), 10 + i)));
      }
      // A credit memo on an invoice of the round before: on the replica it
      // may be saved and out of memory.
      if (round > 0) {
        ASSERT_OK(ledger_->Execute(
            ctx, CreditMemo(absl::StrCat("cm-", round),
                            absl::StrCat("inv-", round - 1, "-0"), 3)));
      }
    }
  };
  auto same = [&](Ledger& replica) {
    for (const std::string& account : accounts) {
      EXPECT_EQ(WholeState(replica, account), Snapshot(account)) << account;
    }
  };
  work(0);
  auto replica = std::make_unique<Replica>(dir_.path() + "/replica", &clock_);
  replica->CopyFrom(*store_, 3);
  same(*replica->ledger);
  EXPECT_EQ(replica->store->Head().hash, store_->Head().hash);

  // A snapshot on the replica saves its invoices out of memory; the next
  // credit memos reach them on disk.
  ASSERT_OK(replica->ledger->CreateSnapshot());
  work(1);
  replica->CopyFrom(*store_, 4);
  same(*replica->ledger);

  // Restarted, its accounts listed and not loaded: copies meanwhile are
  // left to each account's load, which reads them from the log.
  replica.reset();
  replica = std::make_unique<Replica>(dir_.path() + "/replica", &clock_);
  work(2);
  replica->CopyFrom(*store_, 5);
  EXPECT_FALSE(replica->ledger->AllLoaded());
  same(*replica->ledger);
  work(3);
  replica->CopyFrom(*store_, 2);
  same(*replica->ledger);

  // Only the next records apply.
  auto old = store_->ReadForward(1, 1);
  ASSERT_OK(old);
  EXPECT_THAT(replica->ledger->ApplyReplicated(*old),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  same(*replica->ledger);
}

std::vector<core::Command> BillingRun() {
  std::vector<core::Command> run;
  run.push_back(Invoice("inv-a", 100));
  run.push_back(CreditMemo("cm-x", "no-such-invoice", 5));  // Refused.
  run.push_back(Invoice("inv-a", 100));            // Repeats the first.
  run.push_back(Invoice("inv-a", 999));            // Same id, other content.
  run.push_back(Invoice("inv-b", 800));            // Crosses 75% of the line.
  run.push_back(CreditMemo("cm-a", "inv-a", 30));  // Sees inv-a.
  return run;
}

// Two commands queued on one account: each one's on_applied sees the state
// its own events left, never the next command's, whenever its answer runs.
TEST_F(LedgerTest, OnAppliedSeesTheStateTheCommandLeft) {
  Open(LedgerOptions{});
  const RequestContext a{"acct-a", "", "", ""};
  std::vector<std::string> seen[2];
  absl::Notification done[2];
  for (int i = 0; i < 2; ++i) {
    ExecuteOptions options;
    options.on_applied = [&seen, i](const core::AccountState& state) {
      for (const auto& [id, po] : state.purchase_orders) seen[i].push_back(id);
    };
    ledger_->ExecuteAsync(
        a, Create(i == 0 ? "po-1" : "po-2", {Line(1, v1::LINE_ITEM_TYPE_ALL)}),
        options, [&done, i](absl::StatusOr<ExecuteResult> result) {
          EXPECT_TRUE(result.ok()) << result.status();
          done[i].Notify();
        });
  }
  for (absl::Notification& d : done) d.WaitForNotification();
  EXPECT_THAT(seen[0], ::testing::ElementsAre("po-1"));
  EXPECT_THAT(seen[1], ::testing::UnorderedElementsAre("po-1", "po-2"));
  // A repeat changes nothing: not called.
  bool called = false;
  ExecuteOptions options;
  options.on_applied = [&called](const core::AccountState&) { called = true; };
  absl::Notification again;
  ledger_->ExecuteAsync(a, Create("po-1", {Line(1, v1::LINE_ITEM_TYPE_ALL)}),
                        options, [&](absl::StatusOr<ExecuteResult>) {
                          again.Notify();
                        });
  again.WaitForNotification();
  EXPECT_FALSE(called);
}

// A batch of one account: each command decided on what the ones before it
// left, each with its own result, all events in one append.
TEST_F(LedgerTest, ABatchDecidesInOrderAndAppendsOnce) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  Open(options);
  const RequestContext a{"acct-a", "", "", ""};
  ASSERT_OK(
      ledger_->Execute(a, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  const uint64_t head = store_->Head().position;
  const std::string before = Snapshot("acct-a");

  // The preview decides the same and writes nothing.
  Ledger::BatchResults preview =
      ledger_->ExecuteBatch(a, BillingRun(), {.validate_only = true});
  EXPECT_EQ(store_->Head().position, head);
  EXPECT_EQ(Snapshot("acct-a"), before);

  Ledger::BatchResults run = ledger_->ExecuteBatch(a, BillingRun());
  ASSERT_EQ(run.size(), 6u);
  ASSERT_OK(run[0]);
  EXPECT_THAT(run[1], StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(run[2]);
  EXPECT_THAT(run[3], StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK(run[4]);
  ASSERT_OK(run[5]);
  EXPECT_FALSE(run[0]->duplicate);
  EXPECT_TRUE(run[2]->duplicate);
  ASSERT_EQ(run[2]->events.size(), 1u);
  EXPECT_EQ(run[2]->events[0].position, run[0]->events[0].position);
  // inv-b raised its balance alert with it; all in log order, one append.
  EXPECT_GE(run[4]->events.size(), 2u);
  std::vector<uint64_t> positions;
  for (size_t i : {0, 4, 5}) {
    for (const LoggedEvent& e : run[i]->events) positions.push_back(e.position);
  }
  ASSERT_EQ(positions.size(), store_->Head().position - head);
  for (size_t k = 0; k < positions.size(); ++k) {
    EXPECT_EQ(positions[k], head + 1 + k);
  }
  auto records = store_->ReadForward(head + 1, 100);
  ASSERT_OK(records);
  for (const RecordedEvent& r : *records) {
    EXPECT_EQ(r.timestamp, (*records)[0].timestamp);  // One append,
    EXPECT_EQ(r.record_first(), head + 1);             // one record.
    EXPECT_EQ(r.record_last(), store_->Head().position);
  }
  ASSERT_OK(ledger_->Read("acct-a", [](const core::AccountState& s) {
    EXPECT_EQ(s.purchase_orders.at("po").lines.at(1).invoiced, Units(870));
  }));
  auto inv_a = ledger_->FindInvoice("acct-a", "inv-a");
  ASSERT_OK(inv_a);
  ASSERT_TRUE(inv_a->has_value());
  EXPECT_EQ((*inv_a)->credited, Units(30));

  // The preview answered the same: outcome, events and versions.
  ASSERT_EQ(preview.size(), run.size());
  for (size_t i = 0; i < run.size(); ++i) {
    ASSERT_EQ(preview[i].status().code(), run[i].status().code()) << i;
    if (!run[i].ok()) continue;
    EXPECT_EQ(preview[i]->duplicate, run[i]->duplicate) << i;
    ASSERT_EQ(preview[i]->events.size(), run[i]->events.size()) << i;
    for (size_t k = 0; k < run[i]->events.size(); ++k) {
      EXPECT_EQ(preview[i]->events[k].position, 0u);
      EXPECT_EQ(preview[i]->events[k].stream_version,
                run[i]->events[k].stream_version);
      EXPECT_EQ(preview[i]->events[k].event.SerializeAsString(),
                run[i]->events[k].event.SerializeAsString())
          << i;
    }
  }

  // A retried batch answers the first results and writes nothing.
  const uint64_t after = store_->Head().position;
  Ledger::BatchResults again = ledger_->ExecuteBatch(a, BillingRun());
  EXPECT_EQ(store_->Head().position, after);
  ASSERT_EQ(again.size(), run.size());
  for (size_t i : {0, 2, 4}) {
    ASSERT_OK(again[i]);
    EXPECT_TRUE(again[i]->duplicate);
    // The first record and the notifications it raised.
    ASSERT_EQ(again[i]->events.size(), run[i]->events.size()) << i;
    for (size_t k = 0; k < run[i]->events.size(); ++k) {
      EXPECT_EQ(again[i]->events[k].position, run[i]->events[k].position);
    }
  }
  EXPECT_THAT(again[1], StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(again[3], StatusIs(absl::StatusCode::kAlreadyExists));

  // A request id is for one command.
  Ledger::BatchResults with_id = ledger_->ExecuteBatch(
      RequestContext{"acct-a", "r-1", "", ""}, BillingRun());
  ASSERT_EQ(with_id.size(), 6u);
  EXPECT_THAT(with_id[0], StatusIs(absl::StatusCode::kInvalidArgument));

  // A restart rebuilds the same state.
  const std::string live = Snapshot("acct-a");
  Open(options);
  EXPECT_EQ(Snapshot("acct-a"), live);
}

// A snapshot saves each invoice as its own part; those saved and not
// changed since leave memory, and every decision that needs one reads it
// back: a repeat, a conflict, a credit memo and its limit, a batch, a
// restart that replays a credit memo of a saved invoice.
TEST_F(LedgerTest, SavedInvoicesLeaveMemoryAndAreReadBackWhenNeeded) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  Open(options);
  const RequestContext a{"acct-a", "", "", ""};
  ASSERT_OK(
      ledger_->Execute(a, Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(ledger_->Execute(a, Invoice(absl::StrCat("inv-", i), 10)));
  }
  EXPECT_EQ(ledger_->InvoicesInMemory(), 5u);
  const std::string whole = Snapshot("acct-a");
  ASSERT_OK(ledger_->CreateSnapshot());
  // All but inv-4, pinned by the last command, which read it.
  EXPECT_EQ(ledger_->InvoicesInMemory(), 1u);
  EXPECT_EQ(Snapshot("acct-a"), whole);
  auto found = ledger_->FindInvoice("acct-a", "inv-3");
  ASSERT_OK(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->amount, Units(10));
  EXPECT_EQ((*found)->recorded_version, 5u);
  found = ledger_->FindInvoice("acct-a", "inv-9");
  ASSERT_OK(found);
  EXPECT_FALSE(found->has_value());

  const uint64_t head = store_->Head().position;
  auto again = ledger_->Execute(a, Invoice("inv-1", 10));
  ASSERT_OK(again);
  EXPECT_TRUE(again->duplicate);
  ASSERT_EQ(again->events.size(), 1u);
  EXPECT_EQ(again->events[0].stream_version, 3u);
  EXPECT_THAT(ledger_->Execute(a, Invoice("inv-1", 11)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  std::vector<core::Command> batch;
  batch.push_back(Invoice("inv-2", 10));
  batch.push_back(Invoice("inv-4", 12));
  Ledger::BatchResults run = ledger_->ExecuteBatch(a, std::move(batch));
  ASSERT_OK(run[0]);
  EXPECT_TRUE(run[0]->duplicate);
  EXPECT_THAT(run[1], StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(store_->Head().position, head);

  // Credits of a saved invoice: its credited sum is read back, and kept.
  ASSERT_OK(ledger_->Execute(a, CreditMemo("cm-1", "inv-0", 6)));
  EXPECT_THAT(ledger_->Execute(a, CreditMemo("cm-2", "inv-0", 5)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(ledger_->CreateSnapshot());
  EXPECT_EQ(ledger_->InvoicesInMemory(), 1u);  // inv-0, pinned by cm-2.
  ASSERT_OK(ledger_->Execute(a, CreditMemo("cm-3", "inv-0", 4)));
  found = ledger_->FindInvoice("acct-a", "inv-0");
  ASSERT_OK(found);
  EXPECT_EQ((*found)->credited, Units(10));
  const std::string before = Snapshot("acct-a");

  // A restart replays cm-3 onto inv-0 as saved before it.
  Open(options);
  EXPECT_EQ(Snapshot("acct-a"), before);
  auto rebuilt = ledger_->AccountAt("acct-a", store_->Head().position);
  ASSERT_OK(rebuilt);
  EXPECT_EQ(core::ToSnapshot(*rebuilt).SerializeAsString(), before);
  EXPECT_THAT(ledger_->Execute(a, CreditMemo("cm-4", "inv-0", 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(ledger_->CreateSnapshot());
  Open(options);
  EXPECT_EQ(Snapshot("acct-a"), before);
  EXPECT_EQ(ledger_->InvoicesInMemory(), 0u);
}

TEST_F(LedgerTest, AccountAtRebuildsAPastState) {
  Open();
  ASSERT_OK(ledger_->Execute(Ctx(), Create("a", {Line(1, v1::LINE_ITEM_TYPE_ALL)})));
  ASSERT_OK(ledger_->Execute(Ctx(), Invoice("inv-1", 100)));
  const uint64_t at = store_->Head().position;
  ASSERT_OK(ledger_->Execute(Ctx(), Invoice("inv-2", 300)));
  auto past = ledger_->AccountAt("111122223333", at);
  ASSERT_OK(past);
  EXPECT_EQ(past->purchase_orders.at("a").Balance(), Units(900));
  auto now = ledger_->AccountAt("111122223333", store_->Head().position);
  ASSERT_OK(now);
  EXPECT_EQ(now->purchase_orders.at("a").Balance(), Units(600));
}

TEST_F(LedgerTest, TickAllExpiresByTheClock) {
  Open();
  ASSERT_OK(ledger_->Execute(Ctx(), Create("a", {})));
  auto none = ledger_->TickAll();
  ASSERT_OK(none);
  EXPECT_EQ(*none, 0);
  clock_.Set(At(2027, 1, 1));
  auto expired = ledger_->TickAll();
  ASSERT_OK(expired);
  EXPECT_EQ(*expired, 2);  // Expired + its notification.
  ASSERT_OK(ledger_->Read("111122223333", [](const core::AccountState& s) {
    EXPECT_EQ(s.purchase_orders.at("a").status,
              v1::PURCHASE_ORDER_STATUS_EXPIRED);
  }));
}

}  // namespace
}  // namespace poledger

namespace poledger {
namespace {

// Commands of many accounts in flight at once, with snapshots taken while
// they run: every command is answered once, per-account order holds, and a
// restart from any of those snapshots plus the log rebuilds the same state.
TEST_F(LedgerTest, ConcurrentAsyncCommandsAndSnapshotsUnderLoad) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  Open(options);
  constexpr int kAccounts = 4;
  constexpr int kPerAccount = 150;
  for (int a = 0; a < kAccounts; ++a) {
    ASSERT_OK(ledger_->Execute(RequestContext{absl::StrCat("acct", a), "", "", ""},
                               Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL, 1000000)})));
  }
  absl::Mutex mu;
  int answered = 0;
  int failed = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerAccount; ++i) {
        const int a = (t + i) % kAccounts;
        ledger_->ExecuteAsync(
            RequestContext{absl::StrCat("acct", a), "", "", ""},
            Invoice(absl::StrCat("t", t, "-", i), 1),
            [&](absl::StatusOr<ExecuteResult> r) {
              absl::MutexLock lock(&mu);
              ++answered;
              if (!r.ok()) ++failed;
            });
      }
    });
  }
  std::thread snapshots([&] {
    for (int i = 0; i < 5; ++i) {
      EXPECT_OK(ledger_->CreateSnapshot());
      absl::SleepFor(absl::Milliseconds(5));
    }
  });
  for (std::thread& t : threads) t.join();
  snapshots.join();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int* n) { return *n == 4 * kPerAccount; }, &answered));
    EXPECT_EQ(failed, 0);
  }
  std::vector<std::string> before;
  uint64_t invoices = 0;
  for (int a = 0; a < kAccounts; ++a) {
    before.push_back(Snapshot(absl::StrCat("acct", a)));
    auto s = ledger_->ReadWholeState(absl::StrCat("acct", a));
    ASSERT_OK(s);
    invoices += s->invoices.size();
    EXPECT_EQ(s->version, 1 + s->invoices.size());
  }
  EXPECT_EQ(invoices, 4u * kPerAccount);
  EXPECT_EQ(store_->Head().position, kAccounts + 4u * kPerAccount);
  Open(options);  // From the last snapshot taken under load, plus the log.
  for (int a = 0; a < kAccounts; ++a) {
    EXPECT_EQ(Snapshot(absl::StrCat("acct", a)), before[a]) << a;
  }
}


// Snapshots taken while invoices are applied: after a restart with no later
// snapshot, every acknowledged invoice is still there (it was lost when a
// snapshot saved an account whose invoices it had not saved), and the saved
// parts are exactly the state at the snapshot's position.
TEST_F(LedgerTest, SnapshotsRacingInvoicesLoseNothingAtRestart) {
  LedgerOptions options;
  options.snapshot_every_events = 0;
  Open(options);
  constexpr int kAccounts = 48;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1500;
  // Large accounts: a snapshot takes long enough for commands to land while
  // it runs.
  std::vector<v1::LineItemDefinition> lines;
  for (int l = 1; l <= 100; ++l) {
    lines.push_back(Line(l, v1::LINE_ITEM_TYPE_ALL, 1000000));
  }
  for (int a = 0; a < kAccounts; ++a) {
    for (int p = 0; p < 4; ++p) {
      ASSERT_OK(ledger_->Execute(
          RequestContext{absl::StrCat("acct", a), "", "", ""},
          Create(absl::StrCat("po", p), lines)));
    }
  }
  for (int round = 0; round < 3; ++round) {
    absl::Mutex mu;
    int answered = 0;
    std::set<std::pair<std::string, std::string>> acknowledged;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          const std::string account = absl::StrCat("acct", (t + i) % kAccounts);
          const std::string id = absl::StrCat("r", round, "-t", t, "-", i);
          ledger_->ExecuteAsync(
              RequestContext{account, "", "", ""}, Invoice(id, 1),
              [&, account, id](absl::StatusOr<ExecuteResult> r) {
                absl::MutexLock lock(&mu);
                ++answered;
                if (r.ok()) acknowledged.insert({account, id});
              });
        }
      });
    }
    // Snapshots while commands are applied, none after the last ones.
    std::thread snapshots([&] {
      for (;;) {
        {
          absl::MutexLock lock(&mu);
          if (answered >= kThreads * kPerThread - 300) break;
        }
        EXPECT_OK(ledger_->CreateSnapshot());
      }
    });
    for (std::thread& t : threads) t.join();
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(
          +[](int* n) { return *n == kThreads * kPerThread; }, &answered));
    }
    snapshots.join();
    ASSERT_EQ(acknowledged.size(), static_cast<size_t>(kThreads * kPerThread));

    // The parts saved are the state at the snapshot's position, account by
    // account, as a rebuild from the log alone gives it.
    std::map<std::string, std::string> parts;
    const uint64_t position = SavedParts(&parts);
    for (int a = 0; a < kAccounts; ++a) {
      const std::string account = absl::StrCat("acct", a);
      auto rebuilt = ledger_->AccountAt(account, position);
      ASSERT_OK(rebuilt);
      v1::AccountSnapshot saved;
      ASSERT_TRUE(saved.ParseFromString(parts[account]));
      EXPECT_TRUE(parts[account] ==
                  core::ToSnapshot(*rebuilt, core::SnapshotInvoices::kExclude)
                      .SerializeAsString())
          << account << " saved at version " << saved.version()
          << ", the log has version " << rebuilt->version << " at position "
          << position;
    }

    std::vector<std::string> before;
    for (int a = 0; a < kAccounts; ++a) {
      before.push_back(Snapshot(absl::StrCat("acct", a)));
    }
    Open(options);  // No snapshot after the racing ones.
    for (int a = 0; a < kAccounts; ++a) {
      const std::string account = absl::StrCat("acct", a);
      EXPECT_TRUE(Snapshot(account) == before[a]) << account;
      auto rebuilt = ledger_->AccountAt(account, store_->Head().position);
      ASSERT_OK(rebuilt);
      EXPECT_TRUE(Snapshot(account) ==
                  core::ToSnapshot(*rebuilt).SerializeAsString())
          << account;
    }
    int missing = 0;
    for (const auto& [account, id] : acknowledged) {
      auto found = ledger_->FindInvoice(account, id);
      ASSERT_OK(found);
      if (!found->has_value()) ++missing;
    }
    EXPECT_EQ(missing, 0) << "round " << round;
    // Recording one again is answered as a duplicate and writes nothing.
    const uint64_t head = store_->Head().position;
    const auto& [account, id] = *acknowledged.begin();
    auto again = ledger_->Execute(RequestContext{account, "", "", ""}, Invoice(id, 1));
    ASSERT_OK(again);
    EXPECT_TRUE(again->duplicate);
    EXPECT_EQ(store_->Head().position, head);
  }
}

}  // namespace
}  // namespace poledger
