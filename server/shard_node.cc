#include "server/shard_node.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/thread_name.h"
#include "core/errors.h"
#include "eventstore/log_rewind.h"
#include "ledger/term_record.h"
#include "server/log.h"
#include "server/services.h"

namespace poledger {
namespace {

// The elector's clock: monotonic, so that a step of the wall clock neither
// extends nor cuts a lease (a pause of the process does count).
class MonotonicClock final : public Clock {
 public:
  absl::Time Now() const override {
    return absl::UnixEpoch() +
           absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
  }
  bool is_manual() const override { return false; }
};

const MonotonicClock* Monotonic() {
  static const MonotonicClock* clock = new MonotonicClock();
  return clock;
}

}  // namespace

std::string RewindRequestPath(const std::string& data_dir) {
  return data_dir + "/rewind-request";
}

absl::Status PrepareRewind(const std::string& data_dir) {
  const std::string request = RewindRequestPath(data_dir);
  std::error_code ec;
  if (!std::filesystem::exists(request, ec)) return absl::OkStatus();
  std::ifstream in(request);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  uint64_t keep = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &keep)) {
    return absl::DataLossError(
        absl::StrCat(request, " names no position: '", text, "'"));
  }
  const std::string dir = data_dir + "/set-aside";
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", dir, ": ", ec.message()));
  }
  const std::string file = absl::StrCat(
      dir, "/after-", keep, "-",
      absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone()),
      ".log");
  absl::StatusOr<RewindResult> rewound = RewindLog(data_dir, keep, file);
  if (!rewound.ok()) return rewound.status();
  if (rewound->records > 0) {
    log::Warning("log_rewound",
                 absl::StrCat("the log left the leader's after position ",
                              keep, ": records ", rewound->first, " to ",
                              rewound->last,
                              " (never acknowledged) are set aside in ", file),
                 {{"kept_through", keep},
                  {"first", rewound->first},
                  {"last", rewound->last},
                  {"file", file}});
  }
  std::filesystem::remove(request, ec);
  return absl::OkStatus();
}

ShardNode::ShardNode(std::unique_ptr<Coordinator> coordinator,
                     ShardNodeParts parts, ShardNodeOptions options)
    : coordinator_(std::move(coordinator)),
      parts_(parts),
      options_(std::move(options)),
      elector_(coordinator_.get(), Monotonic(), options_.elector) {
  thread_ = std::thread([this] {
    SetCurrentThreadName("pl-shard-node");
    Loop();
  });
}

ShardNode::~ShardNode() { Stop(); }

void ShardNode::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
  StopFollowing();
  if (phase_ == Phase::kLeading || phase_ == Phase::kTakingOver) {
    (void)coordinator_->Resign();
  }
}

ReplicationStatus ShardNode::replication() const {
  absl::MutexLock lock(&mu_);
  if (follower_ != nullptr) return follower_->status();
  ReplicationStatus s;
  s.leader = following_;
  return s;
}

LogRank ShardNode::Rank() const {
  absl::StatusOr<TermInfo> last = LastTerm(*parts_.store);
  return {last.ok() ? last->term : 0, parts_.store->Head().position};
}

void ShardNode::Loop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.tick)) {
    const ElectorView view = elector_.Tick(Rank());
    if (!view.change.empty()) {
      log::Info("shard_view",
                absl::StrCat("term ", view.term, ": ", view.change),
                {{"term", view.term},
                 {"leads", view.leads},
                 {"leader", view.leader_node}});
    }
    SaveCommittedMark();
    Act(view);
    if (phase_ == Phase::kDone) return;
  }
}

void ShardNode::Act(const ElectorView& view) {
  switch (phase_) {
    case Phase::kLeading:
      if (!view.leads) StepDown(view.change);
      return;
    case Phase::kTakingOver:
      if (!view.leads) {
        StepDown(view.change);
      } else if (FinishTakeOver(view.term)) {
        phase_ = Phase::kLeading;
      }
      return;
    case Phase::kFollowing:
      if (view.leads) {
        BeginTakeOver(view.term);
        phase_ = Phase::kTakingOver;
      } else if (!view.leader_address.empty()) {
        Follow(view);
      }
      return;
    case Phase::kDone:
      return;
  }
}

void ShardNode::Follow(const ElectorView& view) {
  const std::string why =
      absl::StrCat("following ", view.leader_node, " (", view.leader_address,
                   ") in term ", view.term);
  {
    absl::MutexLock lock(&mu_);
    if (follower_ != nullptr && following_ == view.leader_address) {
      // The same address, perhaps a new term (a leader that restarted and
      // was elected again): the follower reconnects by itself.
      parts_.context->role.Set(
          {RoleKind::kReplica, view.term, view.leader_address}, why);
      return;
    }
  }
  StopFollowing();
  FollowerOptions follow;
  follow.leader = view.leader_address;
  follow.channel = options_.connect(view.leader_address);
  follow.node = options_.elector.me.node;
  follow.synchronous = true;
  follow.term = Rank().term;
  // The copy does not apply: start again from what the log holds.
  follow.on_fatal = [this](const absl::Status& status) {
    Restart(absl::StrCat("following stopped: ", status.message()));
  };
  follow.on_diverged = [this](uint64_t first) {
    std::ofstream out(options_.rewind_request, std::ios::trunc);
    out << (first - 1) << "\n";
    out.close();
    Restart(absl::StrCat("its log leaves the leader's at position ", first,
                         ": rewinding to ", first - 1));
  };
  auto follower = std::make_unique<Follower>(
      parts_.store, parts_.committed, parts_.ledger, std::move(follow));
  {
    absl::MutexLock lock(&mu_);
    follower_ = std::move(follower);
    following_ = view.leader_address;
  }
  parts_.context->role.Set({RoleKind::kReplica, view.term, view.leader_address},
                           why);
}

void ShardNode::StopFollowing() {
  std::unique_ptr<Follower> follower;
  {
    absl::MutexLock lock(&mu_);
    follower = std::move(follower_);
  }
  // Outside mu_: replication() may be waiting for it.
  if (follower != nullptr) follower->Stop();
}

void ShardNode::BeginTakeOver(uint64_t term) {
  StopFollowing();
  take_over_started_ = absl::Now();
  parts_.context->taking_over.store(term, std::memory_order_release);
  parts_.context->role.Set(
      {RoleKind::kReplica, term, ""},
      absl::StrCat("elected in term ", term,
                   ": waiting for the followers to commit its first record"));
  {
    absl::MutexLock lock(&mu_);
    following_.clear();
    term_record_.reset();
  }
  parts_.committed->AppendAsync(
      TermRecord(term, options_.elector.me.node, options_.elector.me.address,
                 absl::Now()),
      [this](absl::StatusOr<AppendResult> result) {
        absl::MutexLock lock(&mu_);
        term_record_ = std::move(result);
      });
}

bool ShardNode::FinishTakeOver(uint64_t term) {
  std::optional<absl::StatusOr<AppendResult>> recorded;
  {
    absl::MutexLock lock(&mu_);
    recorded = term_record_;
  }
  if (!recorded.has_value()) {
    if (absl::Now() - take_over_started_ > options_.take_over_timeout) {
      elector_.GiveUp(absl::StrCat("no follower committed the record of term ",
                                   term, " within ",
                                   absl::FormatDuration(
                                       options_.take_over_timeout)));
    }
    return false;
  }
  if (!recorded->ok()) {
    elector_.GiveUp(absl::StrCat("the record of term ", term,
                                 " was not written: ",
                                 recorded->status().message()));
    return false;
  }
  // The tail the last leader had not said was committed, and the term's
  // record: committed now, applied before the first write.
  const uint64_t through = (*recorded)->last_position;
  for (uint64_t next = parts_.ledger->applied_through() + 1; next <= through;) {
    absl::StatusOr<std::vector<RecordedEvent>> records =
        parts_.store->ReadForward(
            next, static_cast<size_t>(std::min<uint64_t>(1000, through - next + 1)));
    absl::Status applied = records.ok()
                               ? parts_.ledger->ApplyReplicated(*records)
                               : records.status();
    if (applied.ok() && records->empty()) {
      applied = absl::DataLossError(
          absl::StrCat("the log has no record at position ", next));
    }
    if (!applied.ok()) {
      elector_.GiveUp(absl::StrCat("the stored tail does not apply: ",
                                   applied.message()));
      return false;
    }
    next = records->back().position + 1;
  }
  parts_.context->role.Set(
      {RoleKind::kLeader, term, ""},
      absl::StrCat("leads term ", term, " from position ", through,
                   " after ", absl::FormatDuration(absl::Now() -
                                                   take_over_started_)));
  parts_.context->taking_over.store(0, std::memory_order_release);
  takeovers_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ShardNode::StepDown(const std::string& why) {
  const RoleState was = parts_.context->role.state();
  parts_.context->taking_over.store(0, std::memory_order_release);
  parts_.context->role.Set({RoleKind::kReplica, was.term, ""},
                           absl::StrCat("stepped down: ", why));
  // Nothing waiting is acknowledged any more: its records are committed
  // by the next leader or set aside when this node rejoins.
  parts_.committed->FailWaiting(core::DomainError(
      absl::StatusCode::kUnavailable, core::reason::kNotReplicated,
      absl::StrCat("this server no longer leads (", why,
                   "); the write may or may not be committed: send it again "
                   "with its request id")));
  Restart(absl::StrCat("stepped down: ", why));
  phase_ = Phase::kDone;
}

void ShardNode::Restart(const std::string& why) {
  {
    absl::MutexLock lock(&mu_);
    if (restarting_) return;
    restarting_ = true;
  }
  log::Warning("restarting", absl::StrCat("restarting as a follower: ", why),
               {{"reason", why}});
  if (options_.restart) options_.restart(why);
}

void ShardNode::SaveCommittedMark() {
  const uint64_t committed = parts_.committed->committed();
  if (committed <= saved_mark_) return;
  if (parts_.store->SaveCommittedMark(committed).ok()) saved_mark_ = committed;
}

}  // namespace poledger
