// Rewinding a log to a shared position: the tail goes to a set-aside file
// that reads back whole, the log reopens at the kept head with its streams,
// request ids and verified mark as they were there, and committed records
// are never taken off.

#include "eventstore/log_rewind.h"

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "eventstore/rocksdb_event_store.h"
#include "gtest/gtest.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::poledger::testing::StatusIs;

class LogRewindTest : public ::testing::Test {
 protected:
  std::string log() const { return dir_.path() + "/log"; }
  std::string aside() const { return dir_.path() + "/aside"; }

  std::unique_ptr<RocksDbEventStore> Open() {
    RocksDbEventStoreOptions options;
    options.path = log();
    absl::StatusOr<std::unique_ptr<RocksDbEventStore>> store =
        RocksDbEventStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  // Appends `n` events to stream "a", request ids "r<i>".
  static void Fill(RocksDbEventStore& store, int from, int n) {
    for (int i = from; i < from + n; ++i) {
      AppendRequest request =
          OneEvent("a", ExpectedVersion::Any(), absl::StrCat("e", i));
      request.metadata.request_id = absl::StrCat("r", i);
      ASSERT_TRUE(store.Append(request).ok());
    }
  }

  TempDir dir_;
};

TEST_F(LogRewindTest, TailIsSetAsideAndTheLogReopensAtTheKeptHead) {
  LogHead kept;
  std::vector<RecordedEvent> tail;
  {
    std::unique_ptr<RocksDbEventStore> store = Open();
    Fill(*store, 1, 10);
    ASSERT_TRUE(store->SaveCommittedMark(4).ok());
    absl::StatusOr<std::vector<RecordedEvent>> at = store->ReadForward(6, 1);
    ASSERT_TRUE(at.ok());
    kept = {6, at->front().hash};
    tail = *store->ReadForward(7, 10);
    store->Close();
  }
  absl::StatusOr<RewindResult> rewound = RewindLog(log(), 6, aside());
  ASSERT_TRUE(rewound.ok()) << rewound.status();
  EXPECT_EQ(rewound->records, 4u);
  EXPECT_EQ(rewound->first, 7u);
  EXPECT_EQ(rewound->last, 10u);

  absl::StatusOr<std::vector<RecordedEvent>> read = ReadSetAside(aside());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, tail);

  std::unique_ptr<RocksDbEventStore> store = Open();
  EXPECT_EQ(store->Head().position, kept.position);
  EXPECT_EQ(store->Head().hash, kept.hash);
  EXPECT_EQ(store->StreamVersion("a"), 6u);
  EXPECT_EQ(store->VerifiedMarkPosition(), 6u);
  EXPECT_TRUE(store->CheckVerifiedMark().ok());
  // Kept request ids answer as before; those taken off are new again.
  absl::StatusOr<std::optional<AppendResult>> r6 = store->FindRequest("r6");
  ASSERT_TRUE(r6.ok() && r6->has_value());
  EXPECT_EQ((*r6)->first_position, 6u);
  absl::StatusOr<std::optional<AppendResult>> r7 = store->FindRequest("r7");
  ASSERT_TRUE(r7.ok());
  EXPECT_FALSE(r7->has_value());
  // And the log goes on from there: another r7 is a new append at 7.
  AppendRequest again = OneEvent("a", ExpectedVersion::Exact(6), "other");
  again.metadata.request_id = "r7";
  absl::StatusOr<AppendResult> appended = store->Append(again);
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(appended->first_position, 7u);
  EXPECT_FALSE(appended->deduplicated);
}

TEST_F(LogRewindTest, CommittedRecordsAreNeverTakenOff) {
  {
    std::unique_ptr<RocksDbEventStore> store = Open();
    Fill(*store, 1, 5);
    ASSERT_TRUE(store->SaveCommittedMark(4).ok());
    EXPECT_THAT(store->SaveCommittedMark(6),
                StatusIs(absl::StatusCode::kInvalidArgument));
    store->Close();
  }
  EXPECT_THAT(RewindLog(log(), 3, aside()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_FALSE(std::filesystem::exists(aside()));
  std::unique_ptr<RocksDbEventStore> store = Open();
  EXPECT_EQ(store->Head().position, 5u);
  EXPECT_EQ(*store->CommittedMark(), 4u);
}

TEST_F(LogRewindTest, NothingPastThePositionWritesNoFile) {
  {
    std::unique_ptr<RocksDbEventStore> store = Open();
    Fill(*store, 1, 3);
    store->Close();
  }
  absl::StatusOr<RewindResult> rewound = RewindLog(log(), 3, aside());
  ASSERT_TRUE(rewound.ok());
  EXPECT_EQ(rewound->records, 0u);
  EXPECT_FALSE(std::filesystem::exists(aside()));
}

TEST_F(LogRewindTest, ASnapshotPastThePositionIsDropped) {
  {
    std::unique_ptr<RocksDbEventStore> store = Open();
    Fill(*store, 1, 5);
    ASSERT_TRUE(store->SaveSnapshotParts(5, {{"p", "blob"}}).ok());
    store->Close();
  }
  ASSERT_TRUE(RewindLog(log(), 2, aside()).ok());
  std::unique_ptr<RocksDbEventStore> store = Open();
  absl::StatusOr<std::optional<std::string>> part = store->ReadSnapshotPart("p");
  ASSERT_TRUE(part.ok());
  EXPECT_FALSE(part->has_value());
}

// The parts an append saved with itself are not told apart from a
// snapshot's: when records go, every saved part goes, even those of a
// snapshot at or before the position, and the reopened log has none.
TEST_F(LogRewindTest, RemovingRecordsDropsEverySavedPart) {
  {
    std::unique_ptr<RocksDbEventStore> store = Open();
    Fill(*store, 1, 3);
    ASSERT_TRUE(store->SaveSnapshotParts(3, {{"p", "blob"}}).ok());
    AppendRequest request = OneEvent("a", ExpectedVersion::Any(), "e4");
    request.saved_parts.push_back({std::string("p\0i4", 4), "index of e4"});
    ASSERT_TRUE(store->Append(request).ok());
    store->Close();
  }
  // Nothing past 4: nothing goes.
  ASSERT_TRUE(RewindLog(log(), 4, aside()).ok());
  {
    std::unique_ptr<RocksDbEventStore> store = Open();
    absl::StatusOr<std::optional<std::string>> part =
        store->ReadSnapshotPart(std::string("p\0i4", 4));
    ASSERT_TRUE(part.ok());
    EXPECT_EQ(*part, std::optional<std::string>("index of e4"));
    store->Close();
  }
  ASSERT_TRUE(RewindLog(log(), 3, aside()).ok());
  std::unique_ptr<RocksDbEventStore> store = Open();
  for (const std::string& key : {std::string("p"), std::string("p\0i4", 4)}) {
    absl::StatusOr<std::optional<std::string>> part =
        store->ReadSnapshotPart(key);
    ASSERT_TRUE(part.ok());
    EXPECT_FALSE(part->has_value());
  }
  absl::StatusOr<uint64_t> saved = store->ReadSnapshotParts(
      {}, [](absl::string_view, absl::string_view) {
        return absl::InternalError("no part should be left");
      });
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(*saved, 0u);
}

TEST_F(LogRewindTest, ADamagedSetAsideFileIsRefused) {
  {
    std::unique_ptr<RocksDbEventStore> store = Open();
    Fill(*store, 1, 4);
    store->Close();
  }
  ASSERT_TRUE(RewindLog(log(), 1, aside()).ok());
  std::filesystem::resize_file(aside(),
                               std::filesystem::file_size(aside()) - 3);
  EXPECT_THAT(ReadSetAside(aside()), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(RewindLog(log(), 0, aside()),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

}  // namespace
}  // namespace poledger
