#include "server/scrubber.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/thread_name.h"

namespace poledger {
namespace {

// The calling thread at the lowest CPU priority and in the idle I/O class:
// the scrub takes what writers leave.
void LowerThisThreadsPriority() {
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 19);
  constexpr int kIoprioWhoProcess = 1;
  constexpr int kIoprioClassIdle = 3;
  constexpr int kIoprioClassShift = 13;
  (void)syscall(SYS_ioprio_set, kIoprioWhoProcess, tid,
                kIoprioClassIdle << kIoprioClassShift);
}

}  // namespace

Scrubber::Scrubber(const RocksDbEventStore* store, ScrubberOptions options)
    : store_(store), options_(std::move(options)) {
  thread_ = std::thread([this] {
    SetCurrentThreadName("pl-scrub");
    LowerThisThreadsPriority();
    Run();
  });
}

Scrubber::~Scrubber() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

ScrubReport Scrubber::report() const {
  absl::MutexLock lock(&mu_);
  return report_;
}

bool Scrubber::Rest(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
  mu_.AwaitWithTimeout(absl::Condition(&stopping), d);
  return !stopping_;
}

void Scrubber::Run() {
  if (!Rest(options_.first_pass_after)) return;
  while (Pass() && Rest(options_.interval)) {
  }
}

bool Scrubber::Pass() {
  const absl::Time started = absl::Now();
  const LogHead target = store_->Head();
  {
    absl::MutexLock lock(&mu_);
    report_.running = true;
  }
  const double rest_per_work = (1.0 - options_.duty) / options_.duty;
  LogHead at;
  absl::Status result;
  while (at.position < target.position) {
    const absl::Time step_started = absl::Now();
    absl::StatusOr<LogHead> step =
        store_->VerifyAfter(at, target.position, kScrubStep);
    if (!step.ok()) {
      // Record by record up to the break, so the report says how far the
      // log is good.
      for (;;) {
        absl::StatusOr<LogHead> one = store_->VerifyAfter(at, target.position, 1);
        if (!one.ok() || one->position == at.position) break;
        at = *one;
      }
      result = step.status();
      break;
    }
    if (step->position == at.position) {
      result = absl::DataLossError(absl::StrCat(
          "event log record at position ", at.position + 1, ": missing"));
      break;
    }
    at = *step;
    if (!Rest((absl::Now() - step_started) * rest_per_work)) return false;
  }
  if (result.ok() && at.hash != target.hash) {
    result = absl::DataLossError(absl::StrCat(
        "event log record at position ", target.position,
        ": differs from the head the server holds"));
  }
  ScrubReport report;
  {
    absl::MutexLock lock(&mu_);
    report_.running = false;
    ++report_.passes;
    if (!result.ok()) ++report_.failures;
    report_.finished = absl::Now();
    report_.took = report_.finished - started;
    report_.result = result;
    report_.verified_through = at.position;
    report_.records = at.position;
    report = report_;
  }
  if (options_.on_pass) options_.on_pass(report);
  return true;
}

}  // namespace poledger
