#include "server/follower.h"

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/thread_name.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "ledger/ledger.h"
#include "eventstore/positions.h"
#include "eventstore/record_format.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/replication.grpc.pb.h"
#include "server/log.h"

namespace poledger {
namespace {

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

// Records queued ahead of the store, in batches.
constexpr size_t kQueueBatches = 4;
constexpr absl::Duration kFirstRetry = absl::Milliseconds(100);
constexpr absl::Duration kLastRetry = absl::Seconds(2);

}  // namespace

const char* FollowerStateName(FollowerState state) {
  switch (state) {
    case FollowerState::kConnecting:
      return "connecting";
    case FollowerState::kFollowing:
      return "following";
    case FollowerState::kStopped:
      return "stopped";
  }
  return "unknown";
}

Follower::Follower(EventStore* store, CommittedStore* committed,
                   Ledger* ledger, FollowerOptions options)
    : store_(store),
      committed_(committed),
      ledger_(ledger),
      options_(std::move(options)) {
  {
    absl::MutexLock lock(&mu_);
    applied_ = committed_->committed();
    stored_ = store_->Head().position;
    term_ = options_.term;
  }
  store_thread_ = std::thread([this] {
    SetCurrentThreadName("pl-replicate");
    StoreLoop();
  });
  commit_thread_ = std::thread([this] {
    SetCurrentThreadName("pl-repl-apply");
    CommitLoop();
  });
  session_thread_ = std::thread([this] {
    SetCurrentThreadName("pl-follow");
    absl::Duration retry = kFirstRetry;
    std::string last_logged;
    while (!stopping()) {
      const absl::Time started = absl::Now();
      absl::Status ended = Session();
      if (stopping()) break;
      {
        absl::MutexLock lock(&mu_);
        if (!fatal_.ok()) break;
      }
      if (ended.code() == absl::StatusCode::kDataLoss) {
        Fail(ended);
        break;
      }
      {
        absl::MutexLock lock(&mu_);
        state_ = FollowerState::kConnecting;
        last_error_ = ended.ToString();
      }
      if (ended.ToString() != last_logged) {
        last_logged = ended.ToString();
        log::Warning("replication_interrupted",
                     absl::StrCat("following ", options_.leader, ": ",
                                  last_logged, "; retrying"),
                     {{"leader", options_.leader}});
      }
      // A session that ran a while was fine: start the backoff over.
      if (absl::Now() - started > absl::Seconds(10)) retry = kFirstRetry;
      stop_.WaitForNotificationWithTimeout(retry);
      retry = std::min(retry * 2, kLastRetry);
    }
  });
}

Follower::~Follower() { Stop(); }

void Follower::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (call_ != nullptr) call_->TryCancel();
  }
  if (session_thread_.joinable()) session_thread_.join();
  if (store_thread_.joinable()) store_thread_.join();
  if (commit_thread_.joinable()) commit_thread_.join();
}

ReplicationStatus Follower::status() const {
  ReplicationStatus s;
  s.leader = options_.leader;
  const uint64_t head = store_->Head().position;
  absl::MutexLock lock(&mu_);
  s.state = state_;
  s.leader_head = std::max(leader_head_, head);
  s.lag_events = s.leader_head - head;
  if (s.lag_events > 0 || state_ != FollowerState::kFollowing) {
    s.lag = absl::Now() - caught_up_at_;
  }
  s.last_error = last_error_;
  return s;
}

void Follower::Fail(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (!fatal_.ok()) return;
    fatal_ = status;
    state_ = FollowerState::kStopped;
    last_error_ = status.ToString();
    if (call_ != nullptr) call_->TryCancel();
  }
  log::Error("replication_stopped",
             absl::StrCat("stopped following ", options_.leader, ": ",
                          status.ToString()),
             {{"leader", options_.leader},
              {"code", absl::StatusCodeToString(status.code())}});
  if (options_.on_fatal) options_.on_fatal(status);
}

absl::StatusOr<uint64_t> Follower::FirstDifference() {
  const LogHead mine = store_->Head();
  if (mine.position == 0) return 0;
  auto stub = v1::EventLogService::NewStub(options_.channel);
  auto leader_hash = [&](uint64_t position) -> absl::StatusOr<std::string> {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    v1::GetLogDigestRequest request;
    request.set_at_position(position);
    v1::GetLogDigestResponse response;
    {
      absl::MutexLock lock(&mu_);
      if (stopping()) return absl::CancelledError("stopping");
      call_ = &context;
    }
    grpc::Status s = stub->GetLogDigest(&context, request, &response);
    {
      absl::MutexLock lock(&mu_);
      call_ = nullptr;
    }
    if (!s.ok()) return FromGrpc(s, "the leader's log digest");
    if (position == 0) {
      absl::MutexLock lock(&mu_);
      leader_head_ = std::max(leader_head_, response.head_position());
      return absl::StrCat(response.head_position());
    }
    return response.chain_hash();
  };
  auto differs = [&](uint64_t position) -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> ours,
                     store_->ReadForward(position, 1));
    if (ours.empty()) {
      return absl::DataLossError(
          absl::StrCat("this replica has no record at position ", position));
    }
    ASSIGN_OR_RETURN(std::string theirs, leader_hash(position));
    return HashToHex(ours.front().hash) != theirs;
  };
  ASSIGN_OR_RETURN(std::string head_text, leader_hash(0));
  const uint64_t leader_head = std::stoull(head_text);
  const uint64_t common = std::min(leader_head, mine.position);
  uint64_t first = common + 1;  // The leader's log is shorter.
  bool differ = false;
  if (common > 0) {
    ASSIGN_OR_RETURN(differ, differs(common));
  }
  if (differ) {
    // The first differing position: logs that agree at a position agree
    // before it (each hash covers the one before).
    uint64_t lo = 1, hi = common;
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      ASSIGN_OR_RETURN(bool d, differs(mid));
      if (d) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    first = lo;
  } else if (leader_head >= mine.position) {
    return 0;
  }
  return first;
}

void Follower::WaitUntilApplied() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Follower* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) {
        return (f->queue_.empty() && !f->applying_) || f->stopping() ||
               !f->fatal_.ok();
      },
      this));
}

absl::Status Follower::Session() {
  // Resume after the store's head, once what an earlier session queued is
  // stored.
  WaitUntilApplied();
  const LogHead from = store_->Head();
  auto stub = v1::ReplicationService::NewStub(options_.channel);
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (stopping() || !fatal_.ok()) return absl::CancelledError("stopping");
    call_ = &context;
  }
  std::shared_ptr<grpc::ClientReaderWriter<v1::ReplicateRequest,
                                           v1::ReplicateResponse>>
      stream = stub->Replicate(&context);
  v1::ReplicateRequest hello;
  hello.mutable_hello()->set_node(options_.node);
  hello.mutable_hello()->set_head_position(from.position);
  if (from.position > 0) {
    hello.mutable_hello()->set_head_hash(
        std::string(from.hash.begin(), from.hash.end()));
  }
  hello.mutable_hello()->set_synchronous(options_.synchronous);
  stream->Write(hello);
  {
    absl::MutexLock lock(&ack_mu_);
    ack_ = [stream](uint64_t durable) {
      v1::ReplicateRequest ack;
      ack.mutable_ack()->set_durable_position(durable);
      return stream->Write(ack);
    };
  }
  uint64_t expected = PositionAfter(from.position);
  absl::Status ended;
  v1::ReplicateResponse message;
  while (ended.ok() && stream->Read(&message)) {
    std::vector<RecordedEvent> records;
    records.reserve(message.records_size());
    for (const v1::LogRecord& r : message.records()) {
      if (r.position() != expected) {
        ended = absl::InternalError(absl::StrCat("the leader sent position ",
                                                 r.position(), " where ",
                                                 expected, " was next"));
        break;
      }
      // Replicate checks each record's hash and link as it stores it.
      ended = record_format::DecodeRecordValue(r.position(), r.value(),
                                               /*verify=*/false, &records);
      if (!ended.ok()) break;
      expected = PositionAfter(records.back().position);
    }
    if (!ended.ok()) break;
    // The keys the records need, stored before them (and kept if the
    // records are not: a key without a record is harmless).
    if (message.keys_size() > 0 && !records.empty()) {
      std::vector<KeyEntry> keys;
      keys.reserve(message.keys_size());
      for (const v1::LogKey& key : message.keys()) {
        keys.push_back({key.id(), key.value()});
      }
      ended = store_->PutKeys(records.front().position, keys);
      if (!ended.ok()) break;
      if (PersonalData* personal = ledger_->personal_data()) {
        personal->Remember(keys);
      }
    }
    absl::MutexLock lock(&mu_);
    if (message.term() < term_) {
      ended = absl::FailedPreconditionError(absl::StrCat(
          options_.leader, " leads term ", message.term(),
          ", older than term ", term_, " this node has seen"));
      break;
    }
    term_ = message.term();
    // A read replica stores committed records only: its log is then a
    // prefix of every later leader's, and it follows across failovers.
    storable_ = std::max({storable_, message.committed_position(),
                          options_.synchronous ? message.whole_through()
                                               : uint64_t{0}});
    state_ = FollowerState::kFollowing;
    leader_head_ = std::max(leader_head_, message.head_position());
    leader_committed_ =
        std::max(leader_committed_, message.committed_position());
    for (RecordedEvent& record : records) queue_.push_back(std::move(record));
    if (queue_.empty() && !applying_ &&
        store_->Head().position >= leader_head_) {
      caught_up_at_ = absl::Now();
    }
    // Backpressure: the stream waits while the store is behind (not while
    // the queue waits for the end of an append).
    mu_.Await(absl::Condition(
        +[](Follower* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) {
          return f->queue_.size() < kQueueBatches * f->options_.batch_records ||
                 f->queue_.front().position > f->storable_ ||
                 f->stopping() || !f->fatal_.ok();
        },
        this));
  }
  {
    // What cannot be stored (an append the stream ended inside) is copied
    // again by the next session.
    absl::MutexLock lock(&mu_);
    while (!queue_.empty() && queue_.back().position > storable_) {
      queue_.pop_back();
    }
  }
  {
    absl::MutexLock lock(&ack_mu_);
    ack_ = nullptr;
  }
  if (ended.ok()) {
    // The stream ended: the leader stopped, or the connection broke.
    grpc::Status finished = stream->Finish();
    ended = finished.ok()
                ? absl::UnavailableError("the leader ended the stream")
                : FromGrpc(finished, "the leader's stream");
    if (finished.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
        absl::StrContains(finished.error_message(), "is not a record of")) {
      // The logs differ: find where, for the operator (or the rewind).
      absl::StatusOr<uint64_t> first = FirstDifference();
      if (!first.ok()) {
        ended = first.status();
      } else if (*first == 0) {
        ended = absl::DataLossError(finished.error_message());
      } else {
        ended = absl::DataLossError(absl::StrCat(
            "the leader's log differs from this replica's from position ",
            *first, " (replica head ", from.position,
            "): a replica follows only the log it was copied from"));
        if (options_.on_diverged) {
          {
            absl::MutexLock lock(&mu_);
            call_ = nullptr;  // `context` ends with this call.
            state_ = FollowerState::kStopped;
            last_error_ = ended.ToString();
            fatal_ = ended;
          }
          log::Warning("logs_differ",
                       absl::StrCat("this node's log leaves ", options_.leader,
                                    "'s at position ", *first),
                       {{"leader", options_.leader}, {"first", *first}});
          options_.on_diverged(*first);
          return ended;
        }
      }
    }
  } else {
    context.TryCancel();
    (void)stream->Finish();
  }
  absl::MutexLock lock(&mu_);
  call_ = nullptr;
  return ended;
}

void Follower::Acknowledge(uint64_t durable) {
  absl::MutexLock lock(&ack_mu_);
  if (ack_) ack_(durable);
}

absl::Status Follower::ApplyCommitted() {
  uint64_t target;
  uint64_t applied;
  {
    absl::MutexLock lock(&mu_);
    target = leader_committed_;
    applied = applied_;
  }
  committed_->SetCommitted(target);
  target = committed_->committed();
  while (applied < target) {
    ASSIGN_OR_RETURN(
        std::vector<RecordedEvent> records,
        store_->ReadForward(applied + 1,
                            static_cast<size_t>(std::min<uint64_t>(
                                options_.batch_records, target - applied))));
    if (records.empty()) break;
    RETURN_IF_ERROR(ledger_->ApplyReplicated(records));
    applied = records.back().position;
    absl::MutexLock lock(&mu_);
    applied_ = applied;
  }
  return absl::OkStatus();
}

void Follower::StoreLoop() {
  for (;;) {
    std::vector<RecordedEvent> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Follower* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) {
            return (!f->queue_.empty() &&
                    f->queue_.front().position <= f->storable_) ||
                   f->stopping() || !f->fatal_.ok();
          },
          this));
      // Stopping: what is queued and not stored is copied again next time.
      if (stopping() || !fatal_.ok()) return;
      batch.reserve(std::min(queue_.size(), options_.batch_records));
      // Whole records: a record the batch's size would cut goes in whole.
      while (!queue_.empty() && queue_.front().position <= storable_ &&
             (batch.size() < options_.batch_records ||
              batch.back().position != batch.back().record_last())) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      applying_ = true;
    }
    const absl::Status stored = store_->Replicate(batch);
    if (stored.ok()) Acknowledge(batch.back().position);
    {
      absl::MutexLock lock(&mu_);
      applying_ = false;
      if (stored.ok()) stored_ = batch.back().position;
      if (stored.ok() && queue_.empty() &&
          store_->Head().position >= leader_head_) {
        caught_up_at_ = absl::Now();
      }
    }
    if (!stored.ok()) {
      if (stopping()) return;
      // The store refused the copy (the logs diverge): the follower cannot
      // go on.
      Fail(stored);
      return;
    }
  }
}

void Follower::CommitLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Follower* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) {
            return std::min(f->leader_committed_, f->stored_) > f->applied_ ||
                   f->stopping() || !f->fatal_.ok();
          },
          this));
      if (stopping() || !fatal_.ok()) return;
    }
    if (absl::Status applied = ApplyCommitted(); !applied.ok()) {
      if (stopping()) return;
      // The ledger could not apply a record: its state no longer follows
      // the log.
      Fail(applied);
      return;
    }
  }
}

}  // namespace poledger
