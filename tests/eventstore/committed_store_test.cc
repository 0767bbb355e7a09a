// CommittedStore shows a log through its committed position: a node that
// restarts with a tail no leader committed shows (and hashes) only the
// records through its committed position, until told more.

#include "eventstore/committed_store.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "eventstore/memory_event_store.h"
#include "gtest/gtest.h"
#include "tests/eventstore/store_test_util.h"

namespace poledger {
namespace {

TEST(CommittedStoreTest, ARestartedTailIsHiddenUntilCommitted) {
  InMemoryEventStore log;
  for (int i = 1; i <= 7; ++i) {
    ASSERT_TRUE(log.Append(OneEvent("a", ExpectedVersion::Any(),
                                    absl::StrCat("e", i)))
                    .ok());
  }
  const std::vector<RecordedEvent> all = *log.ReadForward(1, 10);
  CommittedStore committed(&log, 2);
  EXPECT_EQ(committed.committed(), 2u);
  EXPECT_EQ(committed.uncommitted(), 5u);
  EXPECT_EQ(committed.Head().position, 2u);
  EXPECT_EQ(committed.Head().hash, all[1].hash);
  EXPECT_EQ(committed.ReadForward(1, 10)->size(), 2u);
  committed.SetCommitted(5);
  EXPECT_EQ(committed.Head().position, 5u);
  EXPECT_EQ(committed.Head().hash, all[4].hash);
  EXPECT_EQ(committed.ReadForward(1, 10)->size(), 5u);
  // Never past the log's head, never back.
  committed.SetCommitted(100);
  EXPECT_EQ(committed.committed(), 7u);
  committed.SetCommitted(3);
  EXPECT_EQ(committed.committed(), 7u);
  EXPECT_EQ(CommittedStore(&log, 100).committed(), 7u);
}

TEST(CommittedStoreTest, AnEmptyLogHasAnEmptyHead) {
  InMemoryEventStore log;
  CommittedStore committed(&log, 0);
  EXPECT_EQ(committed.Head().position, 0u);
  EXPECT_EQ(committed.Head().hash, Hash{});
}

}  // namespace
}  // namespace poledger
