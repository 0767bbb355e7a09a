// A log written by an earlier poledger (tests/eventstore/fixtures) opens
// and verifies to the digest it had: a change of the record format keeps
// reading, or upgrades, the logs operators already have.

#include <filesystem>
#include <memory>
#include <string>

#include "eventstore/record_format.h"
#include "eventstore/rocksdb_event_store.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "tests/eventstore/store_test_util.h"

namespace poledger {
namespace {

constexpr char kDigest[] =
    "b0e6c506ac8efdc252e8d1edc5abb21d9b350d0c12deb030811db8a554d1314d";

// Options that open a copy of the fixture made in `dir`.
RocksDbEventStoreOptions CopyOfFixture(const TempDir& dir) {
  RocksDbEventStoreOptions options;
  options.path = dir.path() + "/log";
  options.create_if_missing = false;
  std::filesystem::copy(POLEDGER_FIXTURES "/log-format-1", options.path);
  return options;
}

// The log's format marker, read from the raw database.
std::string FormatMarker(const std::string& path) {
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::OpenForReadOnly(rocksdb::Options(), path, &raw).ok()) {
    return "unreadable";
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string value;
  if (!db->Get(rocksdb::ReadOptions(), record_format::MetaFormatKey(), &value)
           .ok()) {
    return "missing";
  }
  return value;
}

TEST(FixtureTest, ALogOfFormatOneOpensAndVerifiesToItsDigest) {
  TempDir dir;
  RocksDbEventStoreOptions options = CopyOfFixture(dir);
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

// The upgrade: the first records of several events follow the old ones in
// one chain, and the log reopens (checked whole, and from its mark) and
// verifies; its marker says format 2 from the first open.
TEST(FixtureTest, ALogOfFormatOneTakesRecordsOfSeveralEvents) {
  TempDir dir;
  RocksDbEventStoreOptions options = CopyOfFixture(dir);
  EXPECT_EQ(FormatMarker(options.path), std::string("\0\0\0\1", 4));
  LogHead head;
  {
    auto store = RocksDbEventStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    AppendRequest many;
    many.streams.push_back({"account/acct-b",
                            ExpectedVersion::Exact(14),
                            {{"TestEvent", "x", ""}, {"TestEvent", "y", ""}}});
    absl::StatusOr<AppendResult> result = (*store)->Append(many);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->first_position, 32u);
    EXPECT_EQ(result->last_position, 33u);
    head = (*store)->Head();
  }
  EXPECT_EQ(FormatMarker(options.path), std::string("\0\0\0\2", 4));
  for (bool from_mark : {true, false}) {
    options.verify_from_mark = from_mark;
    auto store = RocksDbEventStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->Head().position, 33u);
    EXPECT_EQ((*store)->Head().hash, head.hash);
    absl::StatusOr<LogHead> verified = (*store)->VerifyLog();
    ASSERT_TRUE(verified.ok()) << verified.status();
    EXPECT_EQ(verified->hash, head.hash);
    auto tail = (*store)->ReadForward(31, 10);
    ASSERT_TRUE(tail.ok());
    ASSERT_EQ(tail->size(), 3u);
    EXPECT_EQ(HashToHex((*tail)[0].hash), kDigest);
    EXPECT_EQ((*tail)[1].prev_hash, (*tail)[0].hash);
    EXPECT_EQ((*tail)[2].stream_version, 16u);
    EXPECT_EQ((*store)->StreamVersion("account/acct-b"), 16u);
  }
}

}  // namespace
}  // namespace poledger
