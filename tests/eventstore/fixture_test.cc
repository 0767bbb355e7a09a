// A log written by an earlier poledger (tests/eventstore/fixtures) opens
// and verifies to the digest it had: a change of the record format keeps
// reading, or upgrades, the logs operators already have.

#include <filesystem>
#include <memory>
#include <string>

#include "eventstore/rocksdb_event_store.h"
#include "gtest/gtest.h"
#include "tests/eventstore/store_test_util.h"

namespace poledger {
namespace {

constexpr char kDigest[] =
    "b0e6c506ac8efdc252e8d1edc5abb21d9b350d0c12deb030811db8a554d1314d";

TEST(FixtureTest, ALogOfFormatOneOpensAndVerifiesToItsDigest) {
  TempDir dir;
  const std::string copy = dir.path() + "/log";
  std::filesystem::copy(POLEDGER_FIXTURES "/log-format-1", copy);
  RocksDbEventStoreOptions options;
  options.path = copy;
  options.create_if_missing = false;
  options.verify_from_mark = false;
  absl::StatusOr<std::unique_ptr<RocksDbEventStore>> store =
      RocksDbEventStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<LogHead> head = (*store)->VerifyLog();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->position, 31u);
  EXPECT_EQ(HashToHex(head->hash), kDigest);
  absl::StatusOr<std::vector<RecordedEvent>> all = (*store)->ReadForward(1, 100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 31u);
  EXPECT_EQ((*store)->StreamVersion("account/acct-b"), 14u);
  // Request ids answer as they did; the snapshot is where it was saved.
  absl::StatusOr<std::optional<AppendResult>> request =
      (*store)->FindRequest("acct-a/req-acct-a-3");
  ASSERT_TRUE(request.ok() && request->has_value());
  EXPECT_GT((*request)->first_position, 0u);
  EXPECT_EQ(*(*store)->SnapshotPosition(), 28u);
}

}  // namespace
}  // namespace poledger
