#include "server/write_deadline.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/thread_name.h"
#include "core/errors.h"
#include "eventstore/committed_store.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "server/commit_tracker.h"
#include "server/status_mapping.h"

namespace poledger {

DeadlineTimer::DeadlineTimer() {
  thread_ = std::thread([this] {
    SetCurrentThreadName("pl-deadlines");
    Loop();
  });
}

DeadlineTimer::~DeadlineTimer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.Signal();
  }
  thread_.join();
}

DeadlineTimer::Id DeadlineTimer::Schedule(absl::Time when,
                                          std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  const Id id = next_id_++;
  auto it = due_.emplace(when, std::make_pair(id, std::move(fn)));
  when_[id] = when;
  if (it == due_.begin()) wake_.Signal();
  return id;
}

void DeadlineTimer::Cancel(Id id) {
  absl::MutexLock lock(&mu_);
  auto it = when_.find(id);
  if (it == when_.end()) return;
  auto [first, last] = due_.equal_range(it->second);
  for (auto d = first; d != last; ++d) {
    if (d->second.first == id) {
      due_.erase(d);
      break;
    }
  }
  when_.erase(it);
}

void DeadlineTimer::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const absl::Time next =
        due_.empty() ? absl::Now() + absl::Seconds(1) : due_.begin()->first;
    if (next > absl::Now()) {
      // Schedule and the destructor wake it early.
      wake_.WaitWithDeadline(&mu_, next);
      continue;
    }
    std::function<void()> fn = std::move(due_.begin()->second.second);
    when_.erase(due_.begin()->second.first);
    due_.erase(due_.begin());
    mu_.Unlock();
    fn();
    mu_.Lock();
  }
}

std::shared_ptr<WriteFinisher> WriteFinisher::Start(
    const CommitWait& wait, const grpc::CallbackServerContext* context,
    grpc::ServerUnaryReactor* reactor) {
  if (wait.tracker == nullptr) return nullptr;
  std::shared_ptr<WriteFinisher> finisher(new WriteFinisher(wait, reactor));
  // Answer a little before the caller's deadline, so that it hears why.
  const absl::Time now = absl::Now();
  absl::Time when = now + wait.timeout;
  const absl::Time deadline = absl::FromChrono(context->deadline());
  if (deadline < when) {
    when = deadline - std::min(absl::Milliseconds(200), (deadline - now) / 10);
  }
  std::weak_ptr<WriteFinisher> weak = finisher;
  finisher->timer_id_ = wait.timer->Schedule(when, [weak] {
    if (std::shared_ptr<WriteFinisher> f = weak.lock()) f->AtDeadline();
  });
  return finisher;
}

WriteFinisher::~WriteFinisher() { wait_.timer->Cancel(timer_id_); }

bool WriteFinisher::Answer(const std::shared_ptr<WriteFinisher>& finisher,
                           const std::function<void()>& finish) {
  if (finisher == nullptr) {
    finish();
    return true;
  }
  absl::MutexLock lock(&finisher->mu_);
  if (finisher->answered_) return false;
  finisher->answered_ = true;
  finish();
  return true;
}

void WriteFinisher::Fill(const std::shared_ptr<WriteFinisher>& finisher,
                         const std::function<void()>& fill) {
  if (finisher == nullptr) {
    fill();
    return;
  }
  absl::MutexLock lock(&finisher->mu_);
  if (!finisher->answered_) fill();
}

void WriteFinisher::AtDeadline() {
  absl::MutexLock lock(&mu_);
  if (answered_) return;
  // Waiting for something else (its turn, the store): the call's own
  // deadline applies.
  if (wait_.committed->uncommitted() == 0) return;
  answered_ = true;
  const uint64_t head = wait_.committed->committed() +
                        wait_.committed->uncommitted();
  reactor_->Finish(ToGrpcStatus(core::WithMetadata(
      core::DomainError(
          absl::StatusCode::kUnavailable, core::reason::kNotReplicated,
          absl::StrCat("the write is not acknowledged: ",
                       wait_.tracker->Shortfall(head, absl::Now()),
                       "; it may still be committed: send it again with its "
                       "request id")),
      core::kRetryDelayMsKey, "1000")));
}

}  // namespace poledger
