// One conformance suite for every EventStore implementation.

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "eventstore/event_store.h"
#include "eventstore/memory_event_store.h"
#include "eventstore/record_format.h"
#include "eventstore/rocksdb_event_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::poledger::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<EventStore>(const std::string& dir)> open;
};

class ConformanceTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>();
    store_ = GetParam().open(dir_->path());
    ASSERT_NE(store_, nullptr);
  }

  AppendResult MustAppend(const AppendRequest& request) {
    absl::StatusOr<AppendResult> result = store_->Append(request);
    EXPECT_OK(result);
    return result.ok() ? *result : AppendResult{};
  }

  // The saved part of `key` ("<error>" if the read fails).
  std::optional<std::string> SavedPart(const std::string& key) {
    absl::StatusOr<std::optional<std::string>> read =
        store_->ReadSnapshotPart(key);
    EXPECT_OK(read);
    return read.value_or("<error>");
  }

  std::vector<RecordedEvent> ReadAll() {
    absl::StatusOr<std::vector<RecordedEvent>> all =
        store_->ReadForward(1, 1000000);
    EXPECT_OK(all);
    return all.ok() ? *all : std::vector<RecordedEvent>{};
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<EventStore> store_;
};

TEST_P(ConformanceTest, EmptyStoreHasNoHeadAndNoRecords) {
  EXPECT_EQ(store_->Head().position, 0u);
  EXPECT_EQ(store_->Head().hash, Hash{});
  EXPECT_EQ(store_->StreamVersion("a"), 0u);
  EXPECT_TRUE(ReadAll().empty());
  auto backward = store_->ReadBackward(100, 10);
  ASSERT_OK(backward);
  EXPECT_TRUE(backward->empty());
}

TEST_P(ConformanceTest, AssignsGapFreePositionsAndStreamVersions) {
  EXPECT_EQ(MustAppend(OneEvent("a", ExpectedVersion::Any(), "p1"))
                .first_position,
            1u);
  EXPECT_EQ(MustAppend(OneEvent("b", ExpectedVersion::Any(), "p2"))
                .first_position,
            2u);
  AppendResult third = MustAppend(OneEvent("a", ExpectedVersion::Any(), "p3"));
  EXPECT_EQ(third.first_position, 3u);
  EXPECT_EQ(third.last_position, 3u);
  EXPECT_THAT(third.stream_versions, ElementsAre(2u));
  EXPECT_FALSE(third.deduplicated);

  std::vector<RecordedEvent> all = ReadAll();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].stream_id, "a");
  EXPECT_EQ(all[0].stream_version, 1u);
  EXPECT_EQ(all[1].stream_id, "b");
  EXPECT_EQ(all[1].stream_version, 1u);
  EXPECT_EQ(all[2].stream_id, "a");
  EXPECT_EQ(all[2].stream_version, 2u);
  EXPECT_EQ(all[2].payload, "p3");
  EXPECT_EQ(all[2].event_type, "TestEvent");
  EXPECT_EQ(store_->StreamVersion("a"), 2u);
  EXPECT_EQ(store_->StreamVersion("b"), 1u);
  EXPECT_EQ(store_->Head().position, 3u);
}

TEST_P(ConformanceTest, RecordsCarryMetadataAndAHashChain) {
  AppendRequest request = OneEvent("a", ExpectedVersion::Any(), "p1");
  request.metadata.request_id = "req-1";
  request.metadata.correlation_id = "corr-1";
  request.metadata.actor = "alice@example.com";
  request.metadata.timestamp = absl::FromUnixSeconds(1767225600);
  request.streams[0].events[0].event_id = "event-1";
  MustAppend(request);
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p2"));
  MustAppend(OneEvent("b", ExpectedVersion::Any(), "p3"));

  std::vector<RecordedEvent> all = ReadAll();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].event_id, "event-1");
  EXPECT_EQ(all[0].request_id, "req-1");
  EXPECT_EQ(all[0].correlation_id, "corr-1");
  EXPECT_EQ(all[0].actor, "alice@example.com");
  EXPECT_EQ(all[0].timestamp, absl::FromUnixSeconds(1767225600));
  EXPECT_FALSE(all[1].event_id.empty());
  EXPECT_NE(all[1].event_id, all[2].event_id);
  EXPECT_EQ(all[0].prev_hash, Hash{});
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].hash, record_format::ComputeRecordHash(all[i]));
    if (i > 0) {
      EXPECT_EQ(all[i].prev_hash, all[i - 1].hash);
    }
  }
  EXPECT_EQ(store_->Head().hash, all.back().hash);
}

// One append is one record: its events take consecutive positions and
// share one hash; every read may start or end inside a record.
TEST_P(ConformanceTest, AnAppendIsOneRecordReadableFromAnyPosition) {
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "a1"));
  AppendRequest many;
  many.metadata.request_id = "req-many";
  many.metadata.actor = "batcher";
  many.metadata.timestamp = absl::FromUnixSeconds(1767225600);
  many.streams.push_back({"a",
                          ExpectedVersion::Exact(1),
                          {{"TestEvent", "a2", ""},
                           {"TestEvent", "a3", "mine"},
                           {"TestEvent", "a4", ""}}});
  many.streams.push_back(
      {"b", ExpectedVersion::NoStream(), {{"TestEvent", "b1", ""}}});
  const AppendResult result = MustAppend(many);
  EXPECT_EQ(result.first_position, 2u);
  EXPECT_EQ(result.last_position, 5u);
  EXPECT_EQ(result.stream_versions, (std::vector<uint64_t>{4, 1}));
  MustAppend(OneEvent("b", ExpectedVersion::Any(), "b2"));

  const std::vector<RecordedEvent> all = ReadAll();
  ASSERT_EQ(all.size(), 6u);
  for (size_t i = 1; i <= 4; ++i) {
    EXPECT_EQ(all[i].position, i + 1);
    EXPECT_EQ(all[i].record_first(), 2u);
    EXPECT_EQ(all[i].record_last(), 5u);
    EXPECT_EQ(all[i].hash, all[1].hash);
    EXPECT_EQ(all[i].prev_hash, all[0].hash);
    EXPECT_EQ(all[i].actor, "batcher");
    EXPECT_EQ(all[i].request_id, "req-many");
  }
  EXPECT_EQ(all[2].event_id, "mine");
  EXPECT_EQ(all[3].event_id, "evt-4");
  EXPECT_EQ(all[2].stream_version, 3u);
  EXPECT_EQ(all[4].stream_id, "b");
  EXPECT_EQ(all[5].prev_hash, all[1].hash);
  EXPECT_EQ(all[0].record_last(), 1u);
  EXPECT_EQ(record_format::ComputeRecordHash(
                record_format::RecordEvents(&all[1], 4)),
            all[1].hash);
  EXPECT_EQ(store_->Head().hash, all[5].hash);

  // Forward and backward from inside the record, and cut inside it.
  auto forward = store_->ReadForward(3, 2);
  ASSERT_OK(forward);
  EXPECT_EQ(*forward, std::vector<RecordedEvent>(all.begin() + 2,
                                                 all.begin() + 4));
  auto backward = store_->ReadBackward(4, 2);
  ASSERT_OK(backward);
  ASSERT_EQ(backward->size(), 2u);
  EXPECT_EQ((*backward)[0], all[3]);
  EXPECT_EQ((*backward)[1], all[2]);
  auto tail = store_->ReadForward(5, 10);
  ASSERT_OK(tail);
  EXPECT_EQ(*tail, std::vector<RecordedEvent>(all.begin() + 4, all.end()));
  // A stream read from a version inside the record.
  auto a = store_->ReadStream("a", 3, 10);
  ASSERT_OK(a);
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].position, 3u);
  EXPECT_EQ((*a)[1].position, 4u);
  auto a_first = store_->ReadStream("a", 1, 2);
  ASSERT_OK(a_first);
  ASSERT_EQ(a_first->size(), 2u);
  EXPECT_EQ((*a_first)[1].stream_version, 2u);
  auto b = store_->ReadStream("b", 1, 10);
  ASSERT_OK(b);
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].position, 5u);
  EXPECT_EQ((*b)[1].position, 6u);
  EXPECT_EQ(store_->StreamVersion("a"), 4u);
  // A retry of the append finds its one result.
  auto again = store_->Append(many);
  ASSERT_OK(again);
  EXPECT_TRUE(again->deduplicated);
  EXPECT_EQ(again->first_position, 2u);
  EXPECT_EQ(again->last_position, 5u);
  // A snapshot at the record's end.
  ASSERT_OK(store_->SaveSnapshotParts(5, {{"part", "blob"}}));
  auto saved = store_->ReadSnapshotParts(
      {}, [](absl::string_view, absl::string_view) { return absl::OkStatus(); });
  ASSERT_OK(saved);
  EXPECT_EQ(*saved, 5u);
}

TEST_P(ConformanceTest, ExpectedVersionIsEnforced) {
  MustAppend(OneEvent("a", ExpectedVersion::NoStream(), "p1"));
  EXPECT_THAT(store_->Append(OneEvent("a", ExpectedVersion::NoStream(), "x")),
              StatusIs(absl::StatusCode::kAborted,
                       HasSubstr("expected no stream, actual 1")));
  MustAppend(OneEvent("a", ExpectedVersion::Exact(1), "p2"));
  EXPECT_THAT(store_->Append(OneEvent("a", ExpectedVersion::Exact(1), "x")),
              StatusIs(absl::StatusCode::kAborted,
                       HasSubstr("expected 1, actual 2")));
  EXPECT_THAT(store_->Append(OneEvent("new", ExpectedVersion::Exact(3), "x")),
              StatusIs(absl::StatusCode::kAborted,
                       HasSubstr("expected 3, actual 0")));
  MustAppend(OneEvent("a", ExpectedVersion::Exact(2), "p3"));
  EXPECT_EQ(store_->Head().position, 3u);
  EXPECT_EQ(store_->StreamVersion("new"), 0u);
}

TEST_P(ConformanceTest, RacingWritersOnOneExpectedVersionOneWins) {
  MustAppend(OneEvent("race", ExpectedVersion::Any(), "seed"));
  constexpr int kThreads = 16;
  std::atomic<int> wins{0};
  std::atomic<int> aborted{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto result = store_->Append(
          OneEvent("race", ExpectedVersion::Exact(1), absl::StrCat("t", i)));
      if (result.ok()) {
        ++wins;
      } else if (result.status().code() == absl::StatusCode::kAborted) {
        ++aborted;
      } else {
        ++other;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(aborted.load(), kThreads - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(store_->StreamVersion("race"), 2u);
  EXPECT_EQ(store_->Head().position, 2u);
}

TEST_P(ConformanceTest, ConcurrentAppendsStayGapFree) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_OK(store_->Append(OneEvent(absl::StrCat("s", (t + i) % 3),
                                          ExpectedVersion::Any(),
                                          absl::StrCat(t, "/", i))));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<RecordedEvent> all = ReadAll();
  ASSERT_EQ(all.size(), size_t{kThreads * kPerThread});
  std::map<std::string, uint64_t> versions;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].position, i + 1);
    EXPECT_EQ(all[i].stream_version, ++versions[all[i].stream_id]);
    if (i > 0) {
      EXPECT_TRUE(record_format::LinksTo(all[i], {i, all[i - 1].hash}));
    }
  }
  for (const auto& [stream, version] : versions) {
    EXPECT_EQ(store_->StreamVersion(stream), version);
  }
}

TEST_P(ConformanceTest, SameRequestIdSameContentReturnsTheFirstResult) {
  MustAppend(OneEvent("other", ExpectedVersion::Any(), "x"));
  AppendRequest request = OneEvent("a", ExpectedVersion::NoStream(), "p1");
  request.metadata.request_id = "req-42";
  AppendResult first = MustAppend(request);
  // A retry may carry new metadata; only the content must match.
  request.metadata.timestamp = absl::FromUnixSeconds(99);
  AppendResult again = MustAppend(request);
  EXPECT_TRUE(again.deduplicated);
  EXPECT_EQ(again.first_position, first.first_position);
  EXPECT_EQ(again.last_position, first.last_position);
  EXPECT_EQ(again.stream_versions, first.stream_versions);
  EXPECT_EQ(store_->Head().position, 2u);

  auto found = store_->FindRequest("req-42");
  ASSERT_OK(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->first_position, first.first_position);
  EXPECT_TRUE((*found)->deduplicated);
  auto missing = store_->FindRequest("req-unknown");
  ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());

  AppendRequest changed = OneEvent("a", ExpectedVersion::NoStream(), "p2");
  changed.metadata.request_id = "req-42";
  EXPECT_THAT(store_->Append(changed),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("req-42")));
  EXPECT_EQ(store_->Head().position, 2u);
}

TEST_P(ConformanceTest, ConcurrentRetriesOfOneRequestWriteOnce) {
  AppendRequest request = OneEvent("a", ExpectedVersion::Any(), "once");
  request.metadata.request_id = "req-concurrent";
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<AppendResult>> results(8);
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = store_->Append(request); });
  }
  for (std::thread& t : threads) t.join();
  int fresh = 0;
  for (const auto& r : results) {
    ASSERT_OK(r);
    EXPECT_EQ(r->first_position, 1u);
    if (!r->deduplicated) ++fresh;
  }
  EXPECT_EQ(fresh, 1);
  EXPECT_EQ(store_->Head().position, 1u);
}

TEST_P(ConformanceTest, MultiStreamAppendIsAllOrNothing) {
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "a1"));
  AppendRequest both;
  both.streams.push_back(
      {"a", ExpectedVersion::Exact(1), {{"TestEvent", "a2", ""}}});
  both.streams.push_back({"b",
                          ExpectedVersion::Exact(5),
                          {{"TestEvent", "b1", ""}, {"TestEvent", "b2", ""}}});
  EXPECT_THAT(store_->Append(both),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("\"b\"")));
  EXPECT_EQ(store_->Head().position, 1u);
  EXPECT_EQ(store_->StreamVersion("a"), 1u);
  EXPECT_EQ(store_->StreamVersion("b"), 0u);

  both.streams[1].expected_version = ExpectedVersion::NoStream();
  AppendResult result = MustAppend(both);
  EXPECT_EQ(result.first_position, 2u);
  EXPECT_EQ(result.last_position, 4u);
  EXPECT_THAT(result.stream_versions, ElementsAre(2u, 2u));
  auto b = store_->ReadStream("b", 1, 10);
  ASSERT_OK(b);
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].position, 3u);
  EXPECT_EQ((*b)[1].position, 4u);
}

TEST_P(ConformanceTest, ReadsInBothDirectionsAndByStream) {
  for (int i = 1; i <= 10; ++i) {
    MustAppend(OneEvent(i % 2 == 0 ? "even" : "odd", ExpectedVersion::Any(),
                        absl::StrCat("p", i)));
  }
  auto forward = store_->ReadForward(4, 3);
  ASSERT_OK(forward);
  ASSERT_EQ(forward->size(), 3u);
  EXPECT_EQ((*forward)[0].position, 4u);
  EXPECT_EQ((*forward)[2].position, 6u);

  auto tail = store_->ReadForward(9, 100);
  ASSERT_OK(tail);
  EXPECT_EQ(tail->size(), 2u);
  auto past = store_->ReadForward(11, 100);
  ASSERT_OK(past);
  EXPECT_TRUE(past->empty());

  auto backward = store_->ReadBackward(UINT64_MAX, 3);
  ASSERT_OK(backward);
  ASSERT_EQ(backward->size(), 3u);
  EXPECT_EQ((*backward)[0].position, 10u);
  EXPECT_EQ((*backward)[2].position, 8u);
  auto backward_from_2 = store_->ReadBackward(2, 10);
  ASSERT_OK(backward_from_2);
  ASSERT_EQ(backward_from_2->size(), 2u);
  EXPECT_EQ((*backward_from_2)[1].position, 1u);

  auto even = store_->ReadStream("even", 2, 2);
  ASSERT_OK(even);
  ASSERT_EQ(even->size(), 2u);
  EXPECT_EQ((*even)[0].stream_version, 2u);
  EXPECT_EQ((*even)[0].payload, "p4");
  EXPECT_EQ((*even)[1].payload, "p6");
  auto unknown = store_->ReadStream("nope", 1, 10);
  ASSERT_OK(unknown);
  EXPECT_TRUE(unknown->empty());
}

TEST_P(ConformanceTest, MalformedAppendsAreRejectedAndWriteNothing) {
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  struct Case {
    std::string name;
    std::function<void(AppendRequest&)> mutate;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"no streams", [](AppendRequest& r) { r.streams.clear(); }, "streams"},
      {"empty stream id",
       [](AppendRequest& r) { r.streams[0].stream_id.clear(); },
       "streams[0].stream_id"},
      {"oversized stream id",
       [](AppendRequest& r) {
         r.streams[0].stream_id = std::string(kMaxStreamIdBytes + 1, 'x');
       },
       "streams[0].stream_id"},
      {"zero events", [](AppendRequest& r) { r.streams[0].events.clear(); },
       "streams[0].events"},
      {"oversized payload",
       [](AppendRequest& r) {
         r.streams[0].events[0].payload = std::string(kMaxPayloadBytes + 1, 'x');
       },
       "streams[0].events[0].payload"},
      {"empty event type",
       [](AppendRequest& r) { r.streams[0].events[0].event_type.clear(); },
       "streams[0].events[0].event_type"},
      {"malformed expected version",
       [](AppendRequest& r) {
         r.streams[0].expected_version = ExpectedVersion::FromRaw(-7);
       },
       "streams[0].expected_version"},
      {"repeated stream",
       [](AppendRequest& r) { r.streams.push_back(r.streams[0]); },
       "streams[1].stream_id"},
      {"oversized request id",
       [](AppendRequest& r) {
         r.metadata.request_id = std::string(kMaxMetadataFieldBytes + 1, 'r');
       },
       "metadata.request_id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    AppendRequest request = OneEvent("a", ExpectedVersion::Any(), "x");
    c.mutate(request);
    EXPECT_THAT(store_->Append(request),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(c.field + ":")));
  }
  EXPECT_EQ(store_->Head().position, 1u);
  EXPECT_EQ(store_->StreamVersion("a"), 1u);
}

TEST_P(ConformanceTest, WaitingReadersCatchUpThenReceiveLiveRecords) {
  for (int i = 0; i < 5; ++i) {
    MustAppend(OneEvent("a", ExpectedVersion::Any(), absl::StrCat(i)));
  }
  constexpr int kReaders = 4;
  constexpr uint64_t kTotal = 25;
  std::vector<std::vector<uint64_t>> seen(kReaders);
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      uint64_t last = 0;
      const absl::Time deadline = absl::Now() + absl::Seconds(30);
      while (last < kTotal && absl::Now() < deadline) {
        auto batch = store_->ReadForward(last + 1, 3);
        ASSERT_OK(batch);
        for (const RecordedEvent& e : *batch) {
          seen[r].push_back(e.position);
          last = e.position;
        }
        if (batch->empty()) store_->WaitForPosition(last, deadline);
      }
    });
  }
  for (uint64_t i = 5; i < kTotal; ++i) {
    MustAppend(OneEvent("b", ExpectedVersion::Any(), absl::StrCat(i)));
    if (i % 5 == 0) absl::SleepFor(absl::Milliseconds(2));
  }
  for (std::thread& t : readers) t.join();
  for (int r = 0; r < kReaders; ++r) {
    ASSERT_EQ(seen[r].size(), kTotal) << "reader " << r;
    for (uint64_t i = 0; i < kTotal; ++i) EXPECT_EQ(seen[r][i], i + 1);
  }
}

TEST_P(ConformanceTest, WaitForPositionTimesOutWithTheHead) {
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  EXPECT_EQ(store_->WaitForPosition(0, absl::Now()), 1u);
  EXPECT_EQ(store_->WaitForPosition(1, absl::Now() + absl::Milliseconds(20)),
            1u);
}

TEST_P(ConformanceTest, CloseWakesWaitersAndRefusesAppends) {
  std::thread waiter([&] {
    EXPECT_EQ(store_->WaitForPosition(0, absl::InfiniteFuture()), 0u);
  });
  absl::SleepFor(absl::Milliseconds(20));
  store_->Close();
  waiter.join();
  EXPECT_THAT(store_->Append(OneEvent("a", ExpectedVersion::Any(), "p")),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_P(ConformanceTest, AsyncAppendsFromOneThreadStayGapFree) {
  constexpr int kAppends = 2000;
  absl::Mutex mu;
  int done = 0;
  std::vector<uint64_t> positions;
  int failures = 0;
  for (int i = 0; i < kAppends; ++i) {
    store_->AppendAsync(
        OneEvent(absl::StrCat("s", i % 7), ExpectedVersion::Any(),
                 absl::StrCat("p", i)),
        [&](absl::StatusOr<AppendResult> result) {
          absl::MutexLock lock(&mu);
          ++done;
          if (result.ok()) {
            positions.push_back(result->first_position);
          } else {
            ++failures;
          }
        });
  }
  {
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(
        absl::Condition(+[](int* d) { return *d == kAppends; }, &done),
        absl::Seconds(60));
    ASSERT_EQ(done, kAppends);
    EXPECT_EQ(failures, 0);
    std::sort(positions.begin(), positions.end());
    for (int i = 0; i < kAppends; ++i) ASSERT_EQ(positions[i], uint64_t(i) + 1);
  }
  EXPECT_EQ(ReadAll().size(), size_t{kAppends});
}

TEST_P(ConformanceTest, AsyncAndBlockingAppendsMix) {
  std::atomic<int> async_done{0};
  std::thread blocking([&] {
    for (int i = 0; i < 200; ++i) {
      EXPECT_OK(store_->Append(OneEvent("sync", ExpectedVersion::Any(), "b")));
    }
  });
  // An async append that re-issues itself from its callback, 200 times.
  std::function<void(absl::StatusOr<AppendResult>)> again;
  again = [&](absl::StatusOr<AppendResult> result) {
    EXPECT_OK(result);
    if (++async_done < 200) {
      store_->AppendAsync(OneEvent("async", ExpectedVersion::Any(), "a"), again);
    }
  };
  store_->AppendAsync(OneEvent("async", ExpectedVersion::Any(), "a"), again);
  blocking.join();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (async_done < 200 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(async_done.load(), 200);
  EXPECT_EQ(store_->StreamVersion("sync"), 200u);
  EXPECT_EQ(store_->StreamVersion("async"), 200u);
  EXPECT_EQ(store_->Head().position, 400u);
}

TEST_P(ConformanceTest, AsyncAppendReportsErrorsThroughTheCallback) {
  absl::Notification called;
  absl::Status status;
  AppendRequest bad = OneEvent("", ExpectedVersion::Any(), "p");
  store_->AppendAsync(bad, [&](absl::StatusOr<AppendResult> result) {
    status = result.status();
    called.Notify();
  });
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  absl::Notification aborted;
  store_->AppendAsync(OneEvent("x", ExpectedVersion::Exact(5), "p"),
                      [&](absl::StatusOr<AppendResult> result) {
                        status = result.status();
                        aborted.Notify();
                      });
  ASSERT_TRUE(aborted.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(store_->Head().position, 0u);
}

// Reads every saved part into a map; returns the saved position.
uint64_t ReadParts(const EventStore& store,
                   std::map<std::string, std::string>* parts,
                   const SnapshotPartFilter& filter = {}) {
  parts->clear();
  absl::StatusOr<uint64_t> position = store.ReadSnapshotParts(
      filter, [&](absl::string_view key, absl::string_view blob) {
        EXPECT_TRUE(parts->emplace(key, blob).second) << key;
        return absl::OkStatus();
      });
  EXPECT_OK(position);
  return position.value_or(~uint64_t{0});
}

// A key names the part it belongs under before a NUL; a filter reads one
// family, or the parts under no other.
TEST_P(ConformanceTest, SnapshotPartFiltersSelectAFamilyOrTheTopLevel) {
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  const std::string nul(1, '\0');
  ASSERT_OK(store_->SaveSnapshotParts(1, {{"a", "1"},
                                          {"a" + nul + "x", "2"},
                                          {"a" + nul + "y", "3"},
                                          {"a-", "4"},
                                          {"ab", "5"},
                                          {"ab" + nul + "x", "6"},
                                          {"b", "7"}}));
  std::map<std::string, std::string> parts;
  EXPECT_EQ(ReadParts(*store_, &parts, {.family = "a"}), 1u);
  EXPECT_THAT(parts,
              ::testing::ElementsAre(::testing::Pair("a", "1"),
                                     ::testing::Pair("a" + nul + "x", "2"),
                                     ::testing::Pair("a" + nul + "y", "3")));
  EXPECT_EQ(ReadParts(*store_, &parts, {.family = "ab"}), 1u);
  EXPECT_THAT(parts,
              ::testing::ElementsAre(::testing::Pair("ab", "5"),
                                     ::testing::Pair("ab" + nul + "x", "6")));
  EXPECT_EQ(ReadParts(*store_, &parts, {.family = "c"}), 1u);
  EXPECT_TRUE(parts.empty());
  EXPECT_EQ(ReadParts(*store_, &parts, {.top_level_only = true}), 1u);
  EXPECT_THAT(parts, ::testing::ElementsAre(::testing::Pair("a", "1"),
                                            ::testing::Pair("a-", "4"),
                                            ::testing::Pair("ab", "5"),
                                            ::testing::Pair("b", "7")));
  EXPECT_EQ(ReadParts(*store_, &parts, {.family = "a", .top_level_only = true}),
            1u);
  EXPECT_THAT(parts, ::testing::ElementsAre(::testing::Pair("a", "1")));
}

// One part on its own: the latest saved blob of that exact key.
TEST_P(ConformanceTest, ASnapshotPartReadsAlone) {
  const std::string nul(1, '\0');
  EXPECT_EQ(SavedPart("a"), std::nullopt);
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  ASSERT_OK(store_->SaveSnapshotParts(1, {{"a", "1"}, {"a" + nul + "x", "2"}}));
  ASSERT_OK(store_->SaveSnapshotParts(2, {{"a" + nul + "x", "3"}}));
  EXPECT_EQ(SavedPart("a"), "1");
  EXPECT_EQ(SavedPart("a" + nul + "x"), "3");
  // Exact keys only: neither a prefix nor a longer key.
  EXPECT_EQ(SavedPart("a" + nul), std::nullopt);
  EXPECT_EQ(SavedPart("a" + nul + "xy"), std::nullopt);
  EXPECT_EQ(SavedPart("b"), std::nullopt);
}

TEST_P(ConformanceTest, SnapshotPartsReplaceByKeyAndKeepTheRest) {
  std::map<std::string, std::string> parts;
  EXPECT_EQ(ReadParts(*store_, &parts), 0u);
  EXPECT_TRUE(parts.empty());
  for (int i = 0; i < 3; ++i) {
    MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  }
  ASSERT_OK(store_->SaveSnapshotParts(1, {{"b", "b@1"}, {"a", "a@1"}}));
  ASSERT_OK(store_->SaveSnapshotParts(3, {{"a", "a@3"}}));
  EXPECT_EQ(ReadParts(*store_, &parts), 3u);
  EXPECT_THAT(parts, ::testing::ElementsAre(::testing::Pair("a", "a@3"),
                                            ::testing::Pair("b", "b@1")));
  // The same position again: parts saved in several calls.
  ASSERT_OK(store_->SaveSnapshotParts(3, {{"c", ""}}));
  EXPECT_EQ(ReadParts(*store_, &parts), 3u);
  EXPECT_EQ(parts.size(), 3u);
}

TEST_P(ConformanceTest, SnapshotPartsRefuseBadInputAndSaveNothing) {
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  ASSERT_OK(store_->SaveSnapshotParts(2, {{"a", "a@2"}}));
  EXPECT_THAT(store_->SaveSnapshotParts(3, {{"a", "future"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("past the head 2")));
  EXPECT_THAT(store_->SaveSnapshotParts(1, {{"a", "older"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("below the saved snapshot's 2")));
  EXPECT_THAT(store_->SaveSnapshotParts(2, {{"b", "ok"}, {"", "no key"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("parts[1].key")));
  EXPECT_THAT(
      store_->SaveSnapshotParts(2, {{std::string(kMaxSnapshotKeyBytes + 1, 'k'), ""}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parts[0].key")));
  EXPECT_THAT(store_->SaveSnapshotParts(2, {{"b", "1"}, {"b", "2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"b\" is repeated")));
  std::map<std::string, std::string> parts;
  EXPECT_EQ(ReadParts(*store_, &parts), 2u);
  EXPECT_THAT(parts, ::testing::ElementsAre(::testing::Pair("a", "a@2")));
}

TEST_P(ConformanceTest, SnapshotPartsReadStopsAtTheVisitorsError) {
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  ASSERT_OK(store_->SaveSnapshotParts(1, {{"a", "1"}, {"b", "2"}}));
  int calls = 0;
  EXPECT_THAT(
      store_->ReadSnapshotParts(SnapshotPartFilter{},
                                [&](absl::string_view, absl::string_view) {
                                  ++calls;
                                  return absl::DataLossError("bad part");
                                }),
      StatusIs(absl::StatusCode::kDataLoss, "bad part"));
  EXPECT_EQ(calls, 1);
}

// Parts saved with an append: in its atomic write, read like a snapshot's,
// without moving the saved position; none when the append is refused or
// deduplicated (the parts are not in the request's content), and bad ones
// refuse the whole append.
TEST_P(ConformanceTest, AnAppendSavesItsPartsWithItself) {
  const std::string nul(1, '\0');
  MustAppend(OneEvent("a", ExpectedVersion::Any(), "p"));
  ASSERT_OK(store_->SaveSnapshotParts(1, {{"a", "a@1"}}));
  AppendRequest request = OneEvent("a", ExpectedVersion::Exact(1), "p");
  request.metadata.request_id = "with-parts";
  request.saved_parts = {{"a" + nul + "x", "x@2"}, {"a", "a@2"}};
  MustAppend(request);
  EXPECT_EQ(SavedPart("a" + nul + "x"), "x@2");
  EXPECT_EQ(SavedPart("a"), "a@2");
  std::map<std::string, std::string> parts;
  EXPECT_EQ(ReadParts(*store_, &parts), 1u);  // The position stays.
  EXPECT_EQ(parts.size(), 2u);

  request.saved_parts = {{"a" + nul + "x", "retried"}};
  absl::StatusOr<AppendResult> retried = store_->Append(request);
  ASSERT_OK(retried);
  EXPECT_TRUE(retried->deduplicated);
  EXPECT_EQ(SavedPart("a" + nul + "x"), "x@2");

  AppendRequest stale = OneEvent("a", ExpectedVersion::Exact(1), "p");
  stale.saved_parts = {{"a" + nul + "y", "y"}};
  EXPECT_THAT(store_->Append(stale), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(SavedPart("a" + nul + "y"), std::nullopt);

  AppendRequest bad = OneEvent("a", ExpectedVersion::Exact(2), "p");
  bad.saved_parts = {{"a" + nul + "z", "z"}, {"", "no key"}};
  EXPECT_THAT(store_->Append(bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("saved_parts[1].key")));
  bad.saved_parts = {{"a" + nul + "z", "z"}, {"a" + nul + "z", "again"}};
  EXPECT_THAT(store_->Append(bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is repeated")));
  EXPECT_EQ(SavedPart("a" + nul + "z"), std::nullopt);
  EXPECT_EQ(store_->Head().position, 2u);

  // Appends in flight together (one commit group, for a store that groups
  // them) saving one key: the later append's part stays.
  absl::Mutex mu;
  int done = 0;
  for (int i = 0; i < 20; ++i) {
    AppendRequest next = OneEvent("a", ExpectedVersion::Any(), "p");
    next.saved_parts = {{"a" + nul + "w", absl::StrCat("w", i)},
                        {absl::StrCat("b", 19 - i), "b"}};
    store_->AppendAsync(std::move(next),
                        [&](absl::StatusOr<AppendResult> result) {
                          EXPECT_OK(result);
                          absl::MutexLock lock(&mu);
                          ++done;
                        });
  }
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* n) { return *n == 20; }, &done));
  }
  EXPECT_EQ(SavedPart("a" + nul + "w"), "w19");
  EXPECT_EQ(SavedPart("b0"), "b");
}

// A leader's log for the replication tests: single and multi-stream appends,
// with and without request ids, across two streams.
void FillLeader(EventStore& leader) {
  for (int i = 0; i < 3; ++i) {
    AppendRequest one =
        OneEvent("a", ExpectedVersion::Exact(leader.StreamVersion("a")),
                 absl::StrCat("a", i));
    if (i == 1) one.metadata.request_id = "req-one";
    ASSERT_OK(leader.Append(one));
  }
  AppendRequest both;
  both.metadata.request_id = "req-both";
  both.metadata.actor = "someone";
  both.metadata.timestamp = absl::FromUnixSeconds(1700000000);
  both.streams.push_back(
      {"b", ExpectedVersion::NoStream(), {{"TestEvent", "b1", "e-b1"}}});
  both.streams.push_back({"a",
                          ExpectedVersion::Exact(3),
                          {{"TestEvent", "a3", ""}, {"TestEvent", "a4", ""}}});
  ASSERT_OK(leader.Append(both));
  ASSERT_OK(leader.Append(OneEvent("b", ExpectedVersion::Any(), "b2")));
}

TEST_P(ConformanceTest, ReplicatedRecordsKeepPositionsHashesAndRequests) {
  InMemoryEventStore leader;
  FillLeader(leader);
  auto records = leader.ReadForward(1, 100);
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), 7u);
  // The two-stream append is one record of three events (positions 4-6).
  EXPECT_EQ((*records)[4].record_first(), 4u);
  EXPECT_EQ((*records)[4].record_last(), 6u);
  // A copy that ends inside a record writes nothing.
  EXPECT_THAT(store_->Replicate({records->begin(), records->begin() + 5}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("position 4: its record is cut short")));
  EXPECT_EQ(store_->Head().position, 0u);
  // In three copies, the second ending with the two-stream append.
  const std::vector<std::vector<RecordedEvent>> parts = {
      {records->begin(), records->begin() + 2},
      {records->begin() + 2, records->begin() + 6},
      {records->begin() + 6, records->end()}};
  for (const auto& part : parts) ASSERT_OK(store_->Replicate(part));
  EXPECT_EQ(ReadAll(), *records);
  EXPECT_EQ(store_->Head().position, leader.Head().position);
  EXPECT_EQ(store_->Head().hash, leader.Head().hash);
  EXPECT_EQ(store_->StreamVersion("a"), 5u);
  EXPECT_EQ(store_->StreamVersion("b"), 2u);
  auto b = store_->ReadStream("b", 1, 10);
  ASSERT_OK(b);
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].position, 4u);
  // The request index travels with the log: a retry after a failover gets
  // the first result, with different content a conflict.
  for (const char* id : {"req-one", "req-both"}) {
    auto here = store_->FindRequest(id);
    auto there = leader.FindRequest(id);
    ASSERT_OK(here);
    ASSERT_OK(there);
    ASSERT_TRUE(here->has_value()) << id;
    EXPECT_EQ((*here)->first_position, (*there)->first_position) << id;
    EXPECT_EQ((*here)->last_position, (*there)->last_position) << id;
    EXPECT_EQ((*here)->stream_versions, (*there)->stream_versions) << id;
  }
  AppendRequest retry = OneEvent("a", ExpectedVersion::Exact(1), "a1");
  retry.metadata.request_id = "req-one";
  absl::StatusOr<AppendResult> again = store_->Append(retry);
  ASSERT_OK(again);
  EXPECT_TRUE(again->deduplicated);
  EXPECT_EQ(again->first_position, 2u);
  retry.streams[0].events[0].payload = "other";
  EXPECT_THAT(store_->Append(retry),
              StatusIs(absl::StatusCode::kAlreadyExists));
  // And the copy goes on as a log of its own.
  EXPECT_EQ(
      MustAppend(OneEvent("a", ExpectedVersion::Exact(5), "a5")).first_position,
      8u);
}

TEST_P(ConformanceTest,
       ReplicateRefusesGapsForgeriesAndDivergenceAndWritesNothing) {
  InMemoryEventStore leader;
  FillLeader(leader);
  auto records = leader.ReadForward(1, 100);
  ASSERT_OK(records);
  ASSERT_OK(store_->Replicate({(*records)[0], (*records)[1]}));
  const LogHead head = store_->Head();

  // A gap, an overlap.
  EXPECT_THAT(store_->Replicate({(*records)[3]}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("next position is 3")));
  EXPECT_THAT(store_->Replicate({(*records)[1]}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // A gap inside the copy.
  EXPECT_THAT(store_->Replicate({(*records)[2], (*records)[6]}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("gap")));
  // A copy that starts inside a record.
  EXPECT_THAT(store_->Replicate({(*records)[2], (*records)[4], (*records)[5]}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("whose start is missing")));
  // A changed payload, a changed hash.
  RecordedEvent forged = (*records)[2];
  forged.payload = "changed";
  EXPECT_THAT(store_->Replicate({forged}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("position 3: its hash does not match")));
  forged = (*records)[2];
  forged.hash[0] ^= 1;
  EXPECT_THAT(store_->Replicate({forged}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 3")));
  // A record of another log at the right position: the logs diverge.
  InMemoryEventStore other;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(other.Append(
        OneEvent("a", ExpectedVersion::Any(), absl::StrCat("other", i))));
  }
  auto theirs = other.ReadForward(3, 1);
  ASSERT_OK(theirs);
  EXPECT_THAT(store_->Replicate(*theirs),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("position 3 does not link")));
  // A record that skips a version of its stream (its hash recomputed).
  RecordedEvent skipped = (*records)[2];
  skipped.stream_version = 7;
  skipped.hash = record_format::ComputeRecordHash(skipped);
  EXPECT_THAT(store_->Replicate({skipped}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("version 7")));
  // An oversized field.
  RecordedEvent big = (*records)[2];
  big.payload.assign(kMaxPayloadBytes + 1, 'x');
  big.hash = record_format::ComputeRecordHash(big);
  EXPECT_THAT(
      store_->Replicate({big}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("payload")));

  EXPECT_EQ(store_->Head().position, head.position);
  EXPECT_EQ(store_->Head().hash, head.hash);
  EXPECT_EQ(ReadAll().size(), 2u);
  // Still usable: the right records copy.
  ASSERT_OK(store_->Replicate({records->begin() + 2, records->end()}));
  EXPECT_EQ(ReadAll(), *records);
}

TEST_P(ConformanceTest, ReplicateWakesWaitingReaders) {
  InMemoryEventStore leader;
  FillLeader(leader);
  auto records = leader.ReadForward(1, 100);
  ASSERT_OK(records);
  std::atomic<uint64_t> seen{0};
  std::thread waiter([&] {
    seen = store_->WaitForPosition(0, absl::Now() + absl::Seconds(30));
  });
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_OK(store_->Replicate(*records));
  waiter.join();
  EXPECT_EQ(seen.load(), 7u);
}

INSTANTIATE_TEST_SUITE_P(
    AllStores, ConformanceTest,
    ::testing::Values(
        StoreFactory{"InMemory",
                     [](const std::string&) -> std::unique_ptr<EventStore> {
                       return std::make_unique<InMemoryEventStore>();
                     }},
        StoreFactory{"RocksDb",
                     [](const std::string& dir) -> std::unique_ptr<EventStore> {
                       RocksDbEventStoreOptions options;
                       options.path = dir + "/log";
                       auto store = RocksDbEventStore::Open(options);
                       EXPECT_OK(store);
                       return store.ok() ? std::move(*store) : nullptr;
                     }}),
    [](const ::testing::TestParamInfo<StoreFactory>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace poledger
