// Kills a process that appends from many threads at random moments with
// SIGKILL and checks that every acknowledged append survived, intact, in a
// gap-free log.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "eventstore/rocksdb_event_store.h"
#include "gtest/gtest.h"
#include "tests/eventstore/crash_protocol.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

constexpr int kCycles = 20;
constexpr int kThreads = 8;

// Runs the child for about `run_for`, kills it and returns its acks.
std::vector<crash::Ack> RunAndKill(const std::string& dir, int cycle,
                                   absl::Duration run_for) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    const std::string cycle_arg = absl::StrCat(cycle);
    const std::string threads_arg = absl::StrCat(kThreads);
    execl(POLEDGER_CRASH_CHILD, POLEDGER_CRASH_CHILD, dir.c_str(),
          cycle_arg.c_str(), threads_arg.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::vector<crash::Ack> acks;
  std::string pending;
  auto drain = [&](int timeout_ms) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) return false;
    pending.append(buf, static_cast<size_t>(n));
    while (pending.size() >= sizeof(crash::Ack)) {
      crash::Ack ack;
      memcpy(&ack, pending.data(), sizeof(ack));
      acks.push_back(ack);
      pending.erase(0, sizeof(ack));
    }
    return true;
  };
  // Wait for the first ack so each cycle kills a process that is writing.
  const absl::Time start_deadline = absl::Now() + absl::Seconds(30);
  while (acks.empty() && absl::Now() < start_deadline) drain(100);
  const absl::Time kill_at = absl::Now() + run_for;
  while (absl::Now() < kill_at) drain(5);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  while (drain(0)) {
  }
  close(fds[0]);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "child ended by itself (status " << status
      << "); see its stderr above";
  return acks;
}

TEST(CrashTest, AcknowledgedAppendsSurviveSigkill) {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::uniform_int_distribution<int> run_ms(5, 120);
  size_t total_acks = 0;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    SCOPED_TRACE(absl::StrCat("cycle ", cycle));
    const std::vector<crash::Ack> acks =
        RunAndKill(path, cycle, absl::Milliseconds(run_ms(rng)));
    ASSERT_FALSE(acks.empty());
    total_acks += acks.size();

    RocksDbEventStoreOptions options;
    options.path = path;
    auto store = RocksDbEventStore::Open(options);  // Verifies the chain.
    ASSERT_OK(store);
    auto all = (*store)->ReadForward(1, SIZE_MAX);
    ASSERT_OK(all);
    ASSERT_EQ(all->size(), (*store)->Head().position);
    std::map<std::string, uint64_t> versions;
    size_t many = 0;
    for (size_t i = 0; i < all->size(); ++i) {
      const RecordedEvent& r = (*all)[i];
      ASSERT_EQ(r.position, i + 1);
      ASSERT_EQ(r.stream_version, ++versions[r.stream_id]) << r.stream_id;
      // Records are whole: every event of one is there, one stream each.
      ASSERT_LE(r.record_last(), all->size());
      ASSERT_EQ((*all)[r.record_first() - 1].stream_id, r.stream_id);
      if (r.record_last() > r.record_first()) ++many;
    }
    EXPECT_GT(many, 0u) << "no record of several events was written";
    for (const crash::Ack& ack : acks) {
      ASSERT_LE(ack.position, all->size()) << "acknowledged append lost";
      const RecordedEvent& r = (*all)[ack.position - 1];
      EXPECT_EQ(r.stream_id, crash::StreamId(cycle, ack.thread));
      EXPECT_EQ(r.stream_version, ack.seq + 1u);
      EXPECT_EQ(r.payload, crash::Payload(cycle, ack.thread, ack.seq));
    }
    if (::testing::Test::HasFailure()) return;
  }
  std::printf("crash test: %d cycles, %zu acknowledged appends checked\n",
              kCycles, total_acks);
}

}  // namespace
}  // namespace poledger
