// HttpWorkerPool runs the HTTP gateway's connections (cpp-httplib's task
// queue) on a fixed number of workers, and keeps that number for calls
// while server-sent-event streams are open: a handler about to stream
// calls DetachForStream, its thread leaves the pool for the rest of its
// connection and a new worker takes its place. cpp-httplib writes a
// response from the thread that handles it, so a stream still has a thread
// of its own, parked on its gRPC stream between messages; the pool bounds
// how many (max_streams) and keeps every worker free for calls.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_HTTP_POOL_H_
#define POLEDGER_SERVER_HTTP_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "httplib.h"

namespace poledger {

class HttpWorkerPool final : public httplib::TaskQueue {
 public:
  HttpWorkerPool(size_t workers, size_t max_streams);
  ~HttpWorkerPool() override;

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then waits for every worker and every stream
  // thread to end (streams end when their gRPC streams do).
  void shutdown() override;

  // Called by a handler on one of the pool's workers before it streams:
  // the thread leaves the pool when its connection ends, and a new worker
  // serves calls meanwhile. False, with nothing changed, when max_streams
  // threads already stream, or when not called on a worker of a pool.
  static bool DetachForStream();

  // Threads streaming now.
  size_t streaming() const;

 private:
  void Work();

  const size_t max_streams_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
  size_t streaming_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_HTTP_POOL_H_
