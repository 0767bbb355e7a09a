// The Elector's decisions, run deterministically: nodes tick in turn on a
// manual clock against a MemoryCoordinator.
#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "ledger/clock.h"
#include "server/elector.h"
#include "server/memory_coordinator.h"

namespace poledger {
namespace {

class ElectorTest : public ::testing::Test {
 protected:
  struct Node {
    std::unique_ptr<MemoryCoordinator> coordinator;
    std::unique_ptr<Elector> elector;
    uint64_t head = 0;
    ElectorView last;
  };

  Node& Add(const std::string& name, uint64_t head, bool may_lead = true) {
    auto node = std::make_unique<Node>();
    node->coordinator = std::make_unique<MemoryCoordinator>(&arbiter_);
    ElectorOptions options;
    options.me = {name, name + ":1", 0};
    options.may_lead = may_lead;
    node->elector = std::make_unique<Elector>(node->coordinator.get(), &clock_,
                                              options);
    node->head = head;
    nodes_.push_back(std::move(node));
    return *nodes_.back();
  }

  void Tick(Node& n) { n.last = n.elector->Tick(n.head); }
  // `seconds` of time in steps of 100 ms, every live node ticking each step.
  void Run(double seconds, const std::vector<Node*>& live) {
    for (int i = 0; i < static_cast<int>(seconds * 10); ++i) {
      clock_.Set(clock_.Now() + absl::Milliseconds(100));
      for (Node* n : live) Tick(*n);
    }
  }

  ManualClock clock_{absl::FromUnixSeconds(1769904000)};
  MemoryArbiter arbiter_{&clock_};
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(ElectorTest, ANodeAloneLeadsAfterTheSettleTimeAndKeepsLeading) {
  Node& a = Add("a", 5);
  Tick(a);
  EXPECT_FALSE(a.last.leads);  // Not before the settle time.
  Run(1.1, {&a});
  ASSERT_TRUE(a.last.leads);
  EXPECT_EQ(a.last.term, 1u);
  EXPECT_TRUE(a.elector->MayAcknowledge());
  // It renews: a minute later it still leads, in term 1.
  Run(60, {&a});
  EXPECT_TRUE(a.last.leads);
  EXPECT_EQ(a.last.term, 1u);
  EXPECT_TRUE(a.elector->MayAcknowledge());
}

TEST_F(ElectorTest, ALeaderThatStopsIsFencedBeforeItsSuccessorIsElected) {
  Node& a = Add("a", 10);
  Node& b = Add("b", 10);
  Node& c = Add("c", 12);
  Run(2, {&a, &b, &c});
  // The most advanced leads; the others follow it.
  ASSERT_TRUE(c.last.leads);
  EXPECT_EQ(a.last.leader_node, "c");
  EXPECT_EQ(b.last.leader_address, "c:1");
  // c stops (paused, or dead): its last renewal ages on.
  bool fenced_first = false;
  for (int i = 0; i < 200 && !a.last.leads && !b.last.leads; ++i) {
    Run(0.1, {&a, &b});
    if (c.elector->MayAcknowledge()) {
      EXPECT_FALSE(a.last.leads || b.last.leads)
          << "a successor while the old leader still acknowledges";
    } else {
      fenced_first = true;
    }
  }
  EXPECT_TRUE(fenced_first);
  // a and b have the same head: the smaller name campaigns, once.
  EXPECT_TRUE(a.last.leads);
  EXPECT_FALSE(b.last.leads);
  EXPECT_EQ(a.last.term, 2u);
  Run(1, {&a, &b});
  EXPECT_EQ(b.last.leader_node, "a");
  // c wakes: it learns it lost the lease and follows a.
  Run(0.5, {&a, &b, &c});
  EXPECT_FALSE(c.last.leads);
  EXPECT_FALSE(c.elector->MayAcknowledge());
  EXPECT_EQ(c.last.leader_node, "a");
  EXPECT_EQ(c.last.term, 2u);
}

TEST_F(ElectorTest, OnlyTheMostAdvancedCampaigns) {
  Node& a = Add("a", 30);
  Node& b = Add("b", 10);
  Node& c = Add("c", 12);
  Run(2, {&a});  // a leads alone first.
  ASSERT_TRUE(a.last.leads);
  Run(1, {&a, &b, &c});
  // a is gone; b is behind c, so c takes over.
  Run(15, {&b, &c});
  EXPECT_TRUE(c.last.leads);
  EXPECT_FALSE(b.last.leads);
  EXPECT_EQ(b.last.leader_node, "c");
}

TEST_F(ElectorTest, AReadReplicaNeverLeads) {
  Node& r = Add("r", 100, /*may_lead=*/false);
  Node& a = Add("a", 1);
  Run(3, {&r, &a});
  EXPECT_FALSE(r.last.leads);
  EXPECT_TRUE(a.last.leads);
}

TEST_F(ElectorTest, ALeaderCutOffFromTheArbiterStopsAcknowledgingInTime) {
  Node& a = Add("a", 1);
  Node& b = Add("b", 1);
  Run(2, {&a, &b});
  ASSERT_TRUE(a.last.leads);
  arbiter_.SetDown(true);
  // Its renewals fail. Its last success was at most renew_every (2 s)
  // before: it acknowledges for at least 6 s more, and stops within
  // fence_after (8 s), before the 10 s lease could run out at the arbiter.
  Run(5.5, {&a, &b});
  EXPECT_TRUE(a.elector->MayAcknowledge());
  Run(2.5, {&a, &b});
  EXPECT_FALSE(a.elector->MayAcknowledge());
  EXPECT_FALSE(a.last.leads);
  EXPECT_FALSE(b.last.leads);
  // Back: one leader again, in a new term.
  arbiter_.SetDown(false);
  Run(15, {&a, &b});
  EXPECT_NE(a.last.leads, b.last.leads);
  EXPECT_EQ(std::max(a.last.term, b.last.term), 2u);
}

TEST_F(ElectorTest, ALeaderThatCanNoLongerWriteHandsOverAtOnce) {
  Node& a = Add("a", 5);
  Node& b = Add("b", 5);
  Run(2, {&a, &b});
  ASSERT_TRUE(a.last.leads);
  a.elector->GiveUp("the disk is full");
  Tick(a);
  EXPECT_FALSE(a.last.leads);
  EXPECT_EQ(a.last.change, "gave the leadership up: the disk is full");
  // b does not wait for a's lease: after the settle time it leads.
  a.head = 0;  // a publishes nothing better, and steps aside.
  Run(1.5, {&a, &b});
  EXPECT_TRUE(b.last.leads);
  EXPECT_EQ(b.last.term, 2u);
}

// Random schedules, each replayable from its seed: nodes pause and resume,
// the arbiter goes down and comes back, heads grow. At every step at most
// one node may acknowledge, a new leader always gets a higher term than
// every leader before it, and a leader is elected again within bounded
// time once the arbiter is up and a node is live.
TEST_F(ElectorTest, RandomPausesAndOutagesNeverMakeTwoAcknowledgingLeaders) {
  const int seeds = 40;
  for (int seed = 1; seed <= seeds; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    ManualClock clock(absl::FromUnixSeconds(1769904000));
    MemoryArbiter arbiter(&clock);
    std::mt19937 rng(seed);
    struct Sim {
      std::unique_ptr<MemoryCoordinator> coordinator;
      std::unique_ptr<Elector> elector;
      uint64_t head = 0;
      bool paused = false;
    };
    std::vector<Sim> sims(3);
    for (size_t i = 0; i < sims.size(); ++i) {
      sims[i].coordinator = std::make_unique<MemoryCoordinator>(&arbiter);
      ElectorOptions options;
      options.me = {absl::StrCat("n", i), absl::StrCat("n", i, ":1"), 0};
      sims[i].elector = std::make_unique<Elector>(sims[i].coordinator.get(),
                                                  &clock, options);
    }
    bool down = false;
    uint64_t highest_term = 0;
    int steps_without_leader = 0;
    for (int step = 0; step < 3000; ++step) {
      clock.Set(clock.Now() + absl::Milliseconds(100));
      // Now and then: a node pauses or resumes, the arbiter fails or heals.
      const int event = std::uniform_int_distribution<int>(0, 199)(rng);
      if (event < 3) {
        Sim& s = sims[std::uniform_int_distribution<size_t>(0, 2)(rng)];
        s.paused = !s.paused;
      } else if (event == 3) {
        down = !down;
        arbiter.SetDown(down);
      }
      std::vector<size_t> order = {0, 1, 2};
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t i : order) {
        Sim& s = sims[i];
        if (s.paused) continue;
        s.head += std::uniform_int_distribution<uint64_t>(0, 3)(rng);
        const ElectorView before = s.elector->view();
        const ElectorView now = s.elector->Tick(s.head);
        if (now.leads && !before.leads) {
          ASSERT_GT(now.term, highest_term) << "a term given twice";
          highest_term = now.term;
        }
      }
      int acknowledging = 0;
      for (Sim& s : sims) acknowledging += s.elector->MayAcknowledge();
      ASSERT_LE(acknowledging, 1) << "two leaders acknowledge at step " << step;
      // Liveness: with the arbiter up and every node live, somebody leads
      // within lease + settle + a few ticks.
      bool all_live = !down;
      for (const Sim& s : sims) all_live = all_live && !s.paused;
      steps_without_leader =
          (acknowledging == 0 && all_live) ? steps_without_leader + 1 : 0;
      ASSERT_LT(steps_without_leader, 150) << "no leader at step " << step;
    }
  }
}

}  // namespace
}  // namespace poledger
