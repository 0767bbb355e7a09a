// The Coordinator's contract, run against both implementations: in memory
// (on a manual clock) and on a real etcd started by the test on 127.0.0.1
// (leases expire in real time there).
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/clock.h"
#include "server/etcd_coordinator.h"
#include "server/memory_coordinator.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/etcd_process.h"

namespace poledger {
namespace {

using ::testing::HasSubstr;

// What a test needs of a coordinator's world: coordinators for two nodes,
// time to pass, and the arbiter to go away and come back.
class World {
 public:
  virtual ~World() = default;
  virtual std::unique_ptr<Coordinator> NewNode() = 0;
  virtual void Pass(absl::Duration d) = 0;
  virtual void SetDown(bool down) = 0;
  // The shortest lease the arbiter grants, and how late it may expire.
  virtual absl::Duration Ttl() const = 0;
  virtual absl::Duration ExpiryGrace() const = 0;
};

class MemoryWorld : public World {
 public:
  std::unique_ptr<Coordinator> NewNode() override {
    return std::make_unique<MemoryCoordinator>(&arbiter_);
  }
  void Pass(absl::Duration d) override { clock_.Set(clock_.Now() + d); }
  void SetDown(bool down) override { arbiter_.SetDown(down); }
  absl::Duration Ttl() const override { return absl::Seconds(10); }
  absl::Duration ExpiryGrace() const override { return absl::ZeroDuration(); }

 private:
  ManualClock clock_{absl::FromUnixSeconds(1769904000)};
  MemoryArbiter arbiter_{&clock_};
};

class EtcdWorld : public World {
 public:
  EtcdWorld() : etcd_(dir_.path()) {
    etcd_.Start();
    // Up once it answers.
    auto probe = NewNode();
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (!probe->Term().ok() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  std::unique_ptr<Coordinator> NewNode() override {
    EtcdCoordinatorOptions options;
    options.endpoints = {etcd_.endpoint()};
    options.prefix = "/poledger/test-shard";
    options.call_timeout = absl::Seconds(1);
    return *EtcdCoordinator::Create(options);
  }
  void Pass(absl::Duration d) override { absl::SleepFor(d); }
  void SetDown(bool down) override {
    if (down) {
      etcd_.Pause();
    } else {
      etcd_.Resume();
    }
  }
  // etcd's shortest lease is about 2 s (1.5 election timeouts); it checks
  // for expired leases every 0.5 s.
  absl::Duration Ttl() const override { return absl::Seconds(2); }
  absl::Duration ExpiryGrace() const override { return absl::Seconds(1.5); }

 private:
  TempDir dir_;
  testing::EtcdProcess etcd_;
};

class CoordinatorTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (std::string(GetParam()) == "memory") {
      world_ = std::make_unique<MemoryWorld>();
    } else {
      world_ = std::make_unique<EtcdWorld>();
    }
    a_ = world_->NewNode();
    b_ = world_->NewNode();
  }

  std::unique_ptr<World> world_;
  std::unique_ptr<Coordinator> a_, b_;
  const Leadership node_a_{"a", "127.0.0.1:1", 0};
  const Leadership node_b_{"b", "127.0.0.1:2", 0};
};

TEST_P(CoordinatorTest, OneLeaderATermAndTheTermOnlyRises) {
  ASSERT_EQ(*a_->Term(), 0u);
  ASSERT_FALSE(a_->Leader()->has_value());
  absl::StatusOr<Leadership> led = a_->Campaign({node_a_, world_->Ttl()});
  ASSERT_TRUE(led.ok()) << led.status();
  EXPECT_EQ(*led, (Leadership{"a", "127.0.0.1:1", 1}));
  EXPECT_EQ(**b_->Leader(), *led);
  EXPECT_EQ(*b_->Term(), 1u);
  // Taken: b is told who holds it.
  absl::StatusOr<Leadership> refused = b_->Campaign({node_b_, world_->Ttl()});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("a (127.0.0.1:1) leads in term 1"));
  // a resigns: b leads, in term 2.
  ASSERT_TRUE(a_->Resign().ok());
  EXPECT_FALSE(b_->Leader()->has_value());
  led = b_->Campaign({node_b_, world_->Ttl()});
  ASSERT_TRUE(led.ok()) << led.status();
  EXPECT_EQ(led->term, 2u);
  // a's lease is gone: renewing it says so.
  EXPECT_EQ(a_->Renew().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(b_->Renew().ok());
}

TEST_P(CoordinatorTest, ALeaseNotRenewedExpiresAndAnotherTakesOver) {
  ASSERT_TRUE(a_->Campaign({node_a_, world_->Ttl()}).ok());
  // Renewed within its TTL, it lasts past it.
  world_->Pass(world_->Ttl() / 2);
  ASSERT_TRUE(a_->Renew().ok());
  world_->Pass(world_->Ttl() * 3 / 4);
  ASSERT_TRUE(a_->Renew().ok());
  EXPECT_EQ((*b_->Leader())->node, "a");
  // Not renewed: gone after its TTL, and b takes it in term 2.
  world_->Pass(world_->Ttl() + world_->ExpiryGrace());
  EXPECT_FALSE(b_->Leader()->has_value());
  absl::StatusOr<Leadership> led = b_->Campaign({node_b_, world_->Ttl()});
  ASSERT_TRUE(led.ok()) << led.status();
  EXPECT_EQ(led->term, 2u);
  // a learns it lost the lease when it tries to renew.
  EXPECT_EQ(a_->Renew().code(), absl::StatusCode::kNotFound);
}

TEST_P(CoordinatorTest, HeadsArePublishedPerNode) {
  ASSERT_TRUE(a_->PublishHead("a", 10).ok());
  ASSERT_TRUE(b_->PublishHead("b", 12).ok());
  ASSERT_TRUE(a_->PublishHead("a", 15).ok());
  absl::StatusOr<std::map<std::string, LogRank>> heads = b_->Heads();
  ASSERT_TRUE(heads.ok()) << heads.status();
  EXPECT_EQ(*heads, (std::map<std::string, LogRank>{{"a", 15}, {"b", 12}}));
}

TEST_P(CoordinatorTest, ACandidateBehindAnotherPublishedHeadLoses) {
  ASSERT_TRUE(a_->PublishHead("a", 10).ok());
  ASSERT_TRUE(b_->PublishHead("b", 12).ok());
  absl::StatusOr<Leadership> led = a_->Campaign({node_a_, world_->Ttl(), 10});
  EXPECT_EQ(led.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(led.status().message(),
              HasSubstr("b is ahead: it stores through 12, this node 10"));
  EXPECT_FALSE(b_->Leader()->has_value());
  // b was the leader that was lost: its head does not count.
  led = a_->Campaign({node_a_, world_->Ttl(), 10, "b"});
  ASSERT_TRUE(led.ok()) << led.status();
  EXPECT_EQ(led->term, 1u);
  // Heads of 9 and 10 digits compare as numbers.
  ASSERT_TRUE(a_->Resign().ok());
  ASSERT_TRUE(b_->PublishHead("b", 999999999).ok());
  EXPECT_TRUE(a_->Campaign({node_a_, world_->Ttl(), 1000000000}).ok());
}

TEST_P(CoordinatorTest, ALogOfALaterTermRanksAboveALongerOlderOne) {
  // a led term 1 and wrote a tail nobody acknowledged; b leads term 2 from
  // a shorter log: b's log holds every committed record, a's may not.
  ASSERT_TRUE(a_->PublishHead("a", LogRank(1, 900)).ok());
  ASSERT_TRUE(b_->PublishHead("b", LogRank(2, 500)).ok());
  absl::StatusOr<Leadership> led =
      a_->Campaign({node_a_, world_->Ttl(), LogRank(1, 900)});
  EXPECT_EQ(led.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(led.status().message(),
              HasSubstr("b is ahead: it stores through 500 in term 2, this "
                        "node 900 in term 1"));
  led = b_->Campaign({node_b_, world_->Ttl(), LogRank(2, 500)});
  ASSERT_TRUE(led.ok()) << led.status();
}

TEST_P(CoordinatorTest, AnArbiterThatDoesNotAnswerIsUnavailable) {
  // A lease that outlasts the outage (each call below waits out its
  // timeout while etcd is paused).
  ASSERT_TRUE(a_->Campaign({node_a_, world_->Ttl() * 5}).ok());
  world_->SetDown(true);
  EXPECT_EQ(a_->Renew().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b_->Leader().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b_->Campaign({node_b_, world_->Ttl()}).status().code(),
            absl::StatusCode::kUnavailable);
  world_->SetDown(false);
  EXPECT_TRUE(a_->Renew().ok());
  EXPECT_EQ((*b_->Leader())->node, "a");
}

INSTANTIATE_TEST_SUITE_P(Both, CoordinatorTest,
                         ::testing::Values("memory", "etcd"),
                         [](const auto& info) { return info.param; });

TEST(EtcdCoordinatorTest, OptionsAreChecked) {
  EXPECT_EQ(EtcdCoordinator::Create({}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EtcdCoordinatorOptions options;
  options.endpoints = {"127.0.0.1:2379"};
  options.prefix = "/p";
  EXPECT_THAT(EtcdCoordinator::Create(options).status().message(),
              HasSubstr("is not an http:// or https:// URL"));
  options.endpoints = {"http://127.0.0.1:2379"};
  options.prefix = "/p/";
  EXPECT_EQ(EtcdCoordinator::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace poledger
