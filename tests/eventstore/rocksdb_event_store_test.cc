// Behaviour only the durable store has: recovery, tamper detection, sticky
// write errors, read-only opening.

#include "eventstore/rocksdb_event_store.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

#include "absl/strings/str_cat.h"
#include "eventstore/record_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tmpfs.h"

namespace poledger {
namespace {

using ::poledger::testing::StatusIs;
using ::testing::HasSubstr;

class RocksDbEventStoreTest : public ::testing::Test {
 protected:
  RocksDbEventStoreOptions Options() const {
    RocksDbEventStoreOptions options;
    options.path = dir_.path() + "/log";
    return options;
  }

  // Every record checked at open, not only those after the verified-through
  // mark (which a clean close moves to the head).
  RocksDbEventStoreOptions FullCheck() const {
    RocksDbEventStoreOptions options = Options();
    options.verify_from_mark = false;
    return options;
  }

  // Sets the verified-through mark to the record at `position`.
  void SetMark(uint64_t position) {
    EditRaw([&](rocksdb::DB* db) {
      std::string value;
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(),
                          record_format::LogKey(position), &value)
                      .ok());
      auto r = record_format::DecodeOneEventRecord(position, value, true);
      ASSERT_OK(r);
      ASSERT_TRUE(
          db->Put(rocksdb::WriteOptions(), record_format::MetaVerifiedKey(),
                  record_format::EncodeVerifiedMark({position, r->hash}))
              .ok());
    });
  }

  std::unique_ptr<RocksDbEventStore> MustOpen(
      const RocksDbEventStoreOptions& options) {
    auto store = RocksDbEventStore::Open(options);
    EXPECT_OK(store);
    return store.ok() ? std::move(*store) : nullptr;
  }

  void Fill(EventStore& store, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_OK(store.Append(OneEvent(absl::StrCat("s", i % 3),
                                      ExpectedVersion::Any(),
                                      absl::StrCat("payload-", i))));
    }
  }

  // Runs `edit` on the raw RocksDB database of the log.
  void EditRaw(const std::function<void(rocksdb::DB*)>& edit) {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), Options().path, &raw).ok());
    edit(raw);
    delete raw;
  }

  TempDir dir_;
};

TEST_F(RocksDbEventStoreTest, ReopenRecoversHeadChainAndVersions) {
  LogHead head;
  {
    auto store = MustOpen(Options());
    Fill(*store, 10);
    head = store->Head();
  }
  auto store = MustOpen(Options());
  EXPECT_EQ(store->Head().position, 10u);
  EXPECT_EQ(store->Head().hash, head.hash);
  EXPECT_EQ(store->StreamVersion("s0"), 4u);
  EXPECT_EQ(store->StreamVersion("s1"), 3u);
  EXPECT_EQ(store->StreamVersion("s2"), 3u);
  // The chain continues across the restart.
  ASSERT_OK(store->Append(OneEvent("s1", ExpectedVersion::Exact(3), "next")));
  auto last = store->ReadBackward(UINT64_MAX, 1);
  ASSERT_OK(last);
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ((*last)[0].position, 11u);
  EXPECT_EQ((*last)[0].stream_version, 4u);
  EXPECT_EQ((*last)[0].prev_hash, head.hash);
  auto verified = store->VerifyLog();
  ASSERT_OK(verified);
  EXPECT_EQ(verified->position, 11u);
}

TEST_F(RocksDbEventStoreTest, IdempotencyIndexSurvivesReopen) {
  AppendRequest request = OneEvent("a", ExpectedVersion::Any(), "p");
  request.metadata.request_id = "durable-req";
  {
    auto store = MustOpen(Options());
    Fill(*store, 2);
    ASSERT_OK(store->Append(request));
  }
  auto store = MustOpen(Options());
  auto again = store->Append(request);
  ASSERT_OK(again);
  EXPECT_TRUE(again->deduplicated);
  EXPECT_EQ(again->first_position, 3u);
  EXPECT_EQ(store->Head().position, 3u);
  request.streams[0].events[0].payload = "other";
  EXPECT_THAT(store->Append(request),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_F(RocksDbEventStoreTest, ChangedRecordBytesFailOpenWithDataLoss) {
  { Fill(*MustOpen(Options()), 6); }
  EditRaw([](rocksdb::DB* db) {
    std::string value;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), record_format::LogKey(4), &value).ok());
    value[value.size() - 12] ^= 0x20;  // A byte of the payload.
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), record_format::LogKey(4), value).ok());
  });
  EXPECT_THAT(RocksDbEventStore::Open(FullCheck()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 4")));

  // Without the full check at open, reading the record still catches it.
  RocksDbEventStoreOptions lazy = Options();
  lazy.verify_on_open = false;
  auto store = MustOpen(lazy);
  EXPECT_THAT(store->ReadForward(1, 100),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 4")));
  EXPECT_THAT(store->VerifyLog(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 4")));
}

TEST_F(RocksDbEventStoreTest, RewrittenRecordWithValidHashBreaksTheChain) {
  { Fill(*MustOpen(Options()), 5); }
  // A forger who recomputes the record's own hash still breaks the link
  // from the next record.
  EditRaw([](rocksdb::DB* db) {
    std::string value;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), record_format::LogKey(3), &value).ok());
    auto r = record_format::DecodeOneEventRecord(3, value, true);
    ASSERT_OK(r);
    r->payload = "forged";
    r->hash = record_format::ComputeRecordHash(*r);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), record_format::LogKey(3),
                        record_format::EncodeRecordValue(*r))
                    .ok());
  });
  EXPECT_THAT(RocksDbEventStore::Open(FullCheck()),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("position 4: chain link broken")));
}

TEST_F(RocksDbEventStoreTest, RemovedRecordFailsOpenWithDataLoss) {
  { Fill(*MustOpen(Options()), 5); }
  EditRaw([](rocksdb::DB* db) {
    ASSERT_TRUE(
        db->Delete(rocksdb::WriteOptions(), record_format::LogKey(2)).ok());
  });
  EXPECT_THAT(
      RocksDbEventStore::Open(FullCheck()),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 2: missing")));
}

TEST_F(RocksDbEventStoreTest, SwappedRecordsFailOpenWithDataLoss) {
  { Fill(*MustOpen(Options()), 5); }
  EditRaw([](rocksdb::DB* db) {
    std::string two, three;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), record_format::LogKey(2), &two).ok());
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), record_format::LogKey(3), &three).ok());
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), record_format::LogKey(2), three).ok());
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), record_format::LogKey(3), two).ok());
  });
  EXPECT_THAT(RocksDbEventStore::Open(FullCheck()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 2")));
}

TEST_F(RocksDbEventStoreTest, OpenChecksOnlyTheRecordsAfterTheMark) {
  { Fill(*MustOpen(Options()), 6); }  // A clean close: the mark at 6.
  {
    auto store = MustOpen(Options());
    EXPECT_EQ(store->open_check().records, 0u);
    EXPECT_EQ(store->VerifiedMarkPosition(), 6u);
    Fill(*store, 4);
  }
  SetMark(3);  // As if the server died after a snapshot at 3.
  {
    auto store = MustOpen(Options());
    EXPECT_EQ(store->open_check().from, 4u);
    EXPECT_EQ(store->open_check().records, 7u);
    // The check moved the mark to the head.
    EXPECT_EQ(store->VerifiedMarkPosition(), 10u);
    EXPECT_OK(store->CheckVerifiedMark());
  }
  auto full = MustOpen(FullCheck());
  EXPECT_EQ(full->open_check().from, 1u);
  EXPECT_EQ(full->open_check().records, 10u);
}

TEST_F(RocksDbEventStoreTest, DamageAfterTheMarkFailsOpen) {
  { Fill(*MustOpen(Options()), 6); }
  SetMark(3);
  EditRaw([](rocksdb::DB* db) {
    std::string value;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), record_format::LogKey(5), &value).ok());
    value[value.size() - 12] ^= 0x20;
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), record_format::LogKey(5), value).ok());
  });
  EXPECT_THAT(RocksDbEventStore::Open(Options()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 5")));
}

TEST_F(RocksDbEventStoreTest, DamageBelowTheMarkIsCaughtByReadsAndFullChecks) {
  { Fill(*MustOpen(Options()), 6); }
  EditRaw([](rocksdb::DB* db) {
    std::string value;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), record_format::LogKey(2), &value).ok());
    value[value.size() - 12] ^= 0x20;
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), record_format::LogKey(2), value).ok());
  });
  // What open does not check (README: "What is checked at open") ...
  auto store = MustOpen(Options());
  EXPECT_EQ(store->open_check().records, 0u);
  // ... a read of it, a full check and a full open still catch.
  EXPECT_THAT(store->ReadForward(1, 10),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 2")));
  EXPECT_THAT(store->VerifyLog(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 2")));
  store.reset();
  EXPECT_THAT(RocksDbEventStore::Open(FullCheck()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 2")));
}

TEST_F(RocksDbEventStoreTest, AChangedMarkIsNotTrusted) {
  { Fill(*MustOpen(Options()), 6); }
  // A mark whose check fails: ignored, every record checked.
  EditRaw([](rocksdb::DB* db) {
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(),
                        record_format::MetaVerifiedKey(), &value)
                    .ok());
    value[0] ^= 1;
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(),
                        record_format::MetaVerifiedKey(), value)
                    .ok());
  });
  {
    RocksDbEventStoreOptions read_only = Options();
    read_only.read_only = true;
    auto store = MustOpen(read_only);
    EXPECT_EQ(store->open_check().records, 6u);
    EXPECT_THAT(store->CheckVerifiedMark(),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("check")));
  }
  // A well-formed mark that names another record's hash: the same.
  EditRaw([](rocksdb::DB* db) {
    std::string value;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), record_format::LogKey(2), &value).ok());
    auto two = record_format::DecodeOneEventRecord(2, value, true);
    ASSERT_OK(two);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(),
                        record_format::MetaVerifiedKey(),
                        record_format::EncodeVerifiedMark({5, two->hash}))
                    .ok());
  });
  RocksDbEventStoreOptions read_only = Options();
  read_only.read_only = true;
  auto store = MustOpen(read_only);
  EXPECT_EQ(store->open_check().records, 6u);
  EXPECT_THAT(store->CheckVerifiedMark(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("another hash")));
}

TEST_F(RocksDbEventStoreTest, SnapshotPartsSurviveReopenOnePerKey) {
  {
    auto store = MustOpen(Options());
    Fill(*store, 4);
    for (uint64_t p = 1; p <= 4; ++p) {
      ASSERT_OK(store->SaveSnapshotParts(
          p, {{absl::StrCat("acct", p % 2), absl::StrCat("state@", p)}}));
    }
  }
  auto store = MustOpen(Options());
  std::vector<std::pair<std::string, std::string>> parts;
  auto position = store->ReadSnapshotParts(
      SnapshotPartFilter{}, [&](absl::string_view key, absl::string_view blob) {
        parts.emplace_back(key, blob);
        return absl::OkStatus();
      });
  ASSERT_OK(position);
  EXPECT_EQ(*position, 4u);
  EXPECT_THAT(parts, ::testing::ElementsAre(
                         ::testing::Pair("acct0", "state@4"),
                         ::testing::Pair("acct1", "state@3")));
  store.reset();
  int stored = 0;
  EditRaw([&](rocksdb::DB* db) {
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek("T"); it->Valid() && it->key().starts_with("T"); it->Next()) {
      ++stored;
    }
  });
  EXPECT_EQ(stored, 2);  // One record per key, whatever the saves.
}

TEST_F(RocksDbEventStoreTest, ReadOnlyOpenReadsButRefusesWrites) {
  { Fill(*MustOpen(Options()), 3); }
  RocksDbEventStoreOptions options = Options();
  options.read_only = true;
  auto store = MustOpen(options);
  EXPECT_EQ(store->Head().position, 3u);
  auto all = store->ReadForward(1, 10);
  ASSERT_OK(all);
  EXPECT_EQ(all->size(), 3u);
  EXPECT_THAT(store->Append(OneEvent("a", ExpectedVersion::Any(), "p")),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(RocksDbEventStoreTest, MissingLogWithoutCreateIsNotFound) {
  RocksDbEventStoreOptions options = Options();
  options.create_if_missing = false;
  EXPECT_THAT(RocksDbEventStore::Open(options),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RocksDbEventStoreTest, SecondOpenOfALiveDirectoryIsRefused) {
  auto store = MustOpen(Options());
  EXPECT_THAT(RocksDbEventStore::Open(Options()),
              StatusIs(absl::StatusCode::kUnavailable));
}

// A file system whose WAL syncs fail while `fail` is set.
class FailingSyncFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FailingSyncFs(std::shared_ptr<rocksdb::FileSystem> base)
      : FileSystemWrapper(std::move(base)) {}
  const char* Name() const override { return "FailingSyncFs"; }

  rocksdb::IOStatus NewWritableFile(
      const std::string& name, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, result, dbg);
    if (s.ok() && name.size() > 4 && name.substr(name.size() - 4) == ".log") {
      *result = std::make_unique<File>(std::move(*result), &fail);
    }
    return s;
  }

  std::atomic<bool> fail{false};

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> target,
         std::atomic<bool>* fail)
        : FSWritableFileOwnerWrapper(std::move(target)), fail_(fail) {}
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
      if (fail_->load()) return rocksdb::IOStatus::IOError("injected fsync failure");
      return target()->Sync(options, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
      if (fail_->load()) return rocksdb::IOStatus::IOError("injected fsync failure");
      return target()->Fsync(options, dbg);
    }

   private:
    std::atomic<bool>* fail_;
  };
};

TEST_F(RocksDbEventStoreTest, FailedSyncMakesEveryLaterAppendFail) {
  auto fs = std::make_shared<FailingSyncFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  RocksDbEventStoreOptions options = Options();
  options.env = env.get();
  options.resume_interval = absl::Milliseconds(10);
  std::atomic<int> reports{0};
  options.on_write_health = [&](const absl::Status& s) {
    EXPECT_FALSE(s.ok());  // Never resumes by itself.
    ++reports;
  };
  {
    auto store = MustOpen(options);
    ASSERT_OK(store->Append(OneEvent("a", ExpectedVersion::Any(), "ok")));
    fs->fail = true;
    auto failed = store->Append(OneEvent("a", ExpectedVersion::Any(), "lost?"));
    EXPECT_THAT(failed, StatusIs(absl::StatusCode::kUnavailable,
                                 HasSubstr("injected fsync failure")));
    EXPECT_EQ(store->Head().position, 1u);
    fs->fail = false;
    absl::SleepFor(absl::Milliseconds(100));
    // Sticky: the disk works again, but nobody knows what reached it.
    EXPECT_THAT(store->Append(OneEvent("a", ExpectedVersion::Any(), "later")),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr("until the server is restarted")));
    EXPECT_EQ(store->Head().position, 1u);
    const WriteHealth health = store->write_health();
    EXPECT_FALSE(health.status.ok());
    EXPECT_FALSE(health.resumes_by_itself);
    EXPECT_EQ(health.failures, 1u);
    EXPECT_EQ(health.failures_by_cause.at("io_error"), 1u);
    EXPECT_EQ(health.recoveries, 0u);
    // Reads go on.
    EXPECT_OK(store->ReadForward(1, 10));
  }
  EXPECT_EQ(reports.load(), 1);
  // After a reopen the acknowledged record is intact and the log is usable.
  auto store = MustOpen(options);
  ASSERT_GE(store->Head().position, 1u);
  auto first = store->ReadForward(1, 1);
  ASSERT_OK(first);
  EXPECT_EQ((*first)[0].payload, "ok");
  ASSERT_OK(store->Append(OneEvent("a", ExpectedVersion::Any(), "after")));
}

// A full disk: every append is refused (UNAVAILABLE, saying so) while the
// file system has no room, reads go on, and once space is freed the store
// takes writes again by itself, with nothing acknowledged lost and the
// chain whole after a reopen.
TEST_F(RocksDbEventStoreTest, FullDiskRefusesWritesThenResumesOnceSpaceIsFreed) {
  testing::Tmpfs fs(24u << 20);
  if (!fs.ok()) GTEST_SKIP() << "mounting a tmpfs needs root";
  ASSERT_TRUE(fs.Ballast("ballast", 12u << 20));
  RocksDbEventStoreOptions options;
  options.path = fs.path() + "/log";
  options.resume_interval = absl::Milliseconds(20);
  absl::Mutex mu;
  std::vector<absl::Status> reports;
  options.on_write_health = [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    reports.push_back(s);
  };
  const std::string payload(64 << 10, 'p');
  uint64_t acknowledged = 0;
  {
    auto store = MustOpen(options);
    ASSERT_NE(store, nullptr);
    absl::Status failed;
    for (int i = 0; i < 1000 && failed.ok(); ++i) {
      // Distinct bytes, so that compression does not make room.
      auto r = store->Append(OneEvent(
          absl::StrCat("s", i % 4), ExpectedVersion::Any(),
          absl::StrCat(i, "-", std::string(payload.size(), 'a' + i % 26),
                       random())));
      if (r.ok()) {
        acknowledged = r->last_position;
      } else {
        failed = r.status();
      }
    }
    ASSERT_THAT(failed, StatusIs(absl::StatusCode::kUnavailable,
                                 HasSubstr("No space left on device")));
    EXPECT_THAT(failed.message(), HasSubstr("resume by themselves"));
    EXPECT_EQ(store->Head().position, acknowledged);
    WriteHealth health = store->write_health();
    EXPECT_TRUE(health.resumes_by_itself);
    EXPECT_EQ(health.failures_by_cause.at("no_space"), 1u);
    // Still full: still refused, however long it waits.
    absl::SleepFor(absl::Milliseconds(200));
    EXPECT_THAT(store->Append(OneEvent("s0", ExpectedVersion::Any(), "x")),
                StatusIs(absl::StatusCode::kUnavailable));
    auto all = store->ReadForward(1, acknowledged + 10);
    ASSERT_OK(all);
    EXPECT_EQ(all->size(), acknowledged);
    // A snapshot that finds no room saves nothing: the parts and their
    // position are those of before.
    EXPECT_THAT(store->SaveSnapshotParts(
                    acknowledged, {{"account-a", std::string(1 << 20, 's')}}),
                StatusIs(absl::StatusCode::kUnavailable));
    auto saved = store->ReadSnapshotParts({}, [](absl::string_view,
                                                 absl::string_view) {
      ADD_FAILURE() << "a part of a failed snapshot";
      return absl::OkStatus();
    });
    ASSERT_OK(saved);
    EXPECT_EQ(*saved, 0u);

    ASSERT_EQ(unlink((fs.path() + "/ballast").c_str()), 0);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (store->write_failed() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_FALSE(store->write_failed()) << "writes did not resume";
    auto after = store->Append(OneEvent("s0", ExpectedVersion::Any(), "after"));
    ASSERT_OK(after);
    EXPECT_EQ(after->first_position, acknowledged + 1);
    acknowledged = after->last_position;
    health = store->write_health();
    EXPECT_EQ(health.failures, 1u);
    EXPECT_EQ(health.recoveries, 1u);
  }
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(reports.size(), 2u);
    EXPECT_THAT(reports[0], StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_OK(reports[1]);
  }
  options.verify_from_mark = false;
  auto store = MustOpen(options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Head().position, acknowledged);
  ASSERT_OK(store->VerifyLog());
}

// A backup to a file system without room for it fails, leaves no
// directory behind (not even the staging one), and the store goes on.
TEST_F(RocksDbEventStoreTest, ABackupThatRunsOutOfSpaceLeavesNothing) {
  testing::Tmpfs small(1u << 20);
  if (!small.ok()) GTEST_SKIP() << "mounting a tmpfs needs root";
  auto store = MustOpen(Options());
  // Bytes that do not compress: 4 MiB of files for a 1 MiB file system.
  std::mt19937 random_bytes(7);
  for (int i = 0; i < 128; ++i) {
    std::string payload(32 << 10, '\0');
    for (char& c : payload) c = static_cast<char>(random_bytes());
    ASSERT_OK(store->Append(
        OneEvent(absl::StrCat("s", i % 4), ExpectedVersion::Any(), payload)));
  }
  const std::string target = small.path() + "/backup";
  EXPECT_THAT(store->Checkpoint(target),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("No space left on device")));
  EXPECT_FALSE(std::filesystem::exists(target));
  EXPECT_TRUE(std::filesystem::is_empty(small.path()));
  EXPECT_FALSE(store->write_failed());
  ASSERT_OK(store->Append(OneEvent("s0", ExpectedVersion::Any(), "after")));
}

}  // namespace
}  // namespace poledger
