// A leader with --sync-followers acknowledges a write only once its
// followers store it. WriteFinisher makes sure such a write still answers
// before its caller's deadline when they do not: at the deadline (or
// --sync-timeout, whichever is first), a write still waiting for its
// followers fails UNAVAILABLE with reason NOT_REPLICATED, naming the
// followers and where each stands. The write is not acknowledged; it stays
// in the leader's log and may still be committed, so the caller sends it
// again with its request id.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_WRITE_DEADLINE_H_
#define POLEDGER_SERVER_WRITE_DEADLINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace grpc {
class CallbackServerContext;
class ServerUnaryReactor;
}  // namespace grpc

namespace poledger {

class CommitTracker;
class CommittedStore;

// Runs functions at given times on a thread of its own.
class DeadlineTimer {
 public:
  DeadlineTimer();
  ~DeadlineTimer();

  using Id = uint64_t;
  // Runs `fn` at `when` (at once if past), unless cancelled before.
  Id Schedule(absl::Time when, std::function<void()> fn);
  void Cancel(Id id);

 private:
  void Loop();

  absl::Mutex mu_;
  Id next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::multimap<absl::Time, std::pair<Id, std::function<void()>>> due_
      ABSL_GUARDED_BY(mu_);
  std::map<Id, absl::Time> when_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar wake_;
  std::thread thread_;
};

// What a write waits for (ServiceContext::commit_wait); all null on a
// server that acknowledges on its own commit.
struct CommitWait {
  CommitTracker* tracker = nullptr;
  CommittedStore* committed = nullptr;
  DeadlineTimer* timer = nullptr;
  absl::Duration timeout = absl::Seconds(10);
};

// Finishes one unary write call once: with its result (Answer), or with
// NOT_REPLICATED at its deadline if it is still waiting for followers then.
class WriteFinisher {
 public:
  // Null when `wait` has no tracker: Answer on a null finisher just runs.
  static std::shared_ptr<WriteFinisher> Start(
      const CommitWait& wait, const grpc::CallbackServerContext* context,
      grpc::ServerUnaryReactor* reactor);
  ~WriteFinisher();

  // Runs `finish` (which fills the response and finishes the call) unless
  // the deadline answered the call already; returns whether it ran.
  static bool Answer(const std::shared_ptr<WriteFinisher>& finisher,
                     const std::function<void()>& finish);
  // Runs `fill` (part of the response) unless the deadline answered the
  // call already; the call stays open.
  static void Fill(const std::shared_ptr<WriteFinisher>& finisher,
                   const std::function<void()>& fill);

 private:
  WriteFinisher(const CommitWait& wait, grpc::ServerUnaryReactor* reactor)
      : wait_(wait), reactor_(reactor) {}
  void AtDeadline();

  const CommitWait wait_;
  grpc::ServerUnaryReactor* const reactor_;
  absl::Mutex mu_;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  DeadlineTimer::Id timer_id_ = 0;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_WRITE_DEADLINE_H_
