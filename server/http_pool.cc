#include "server/http_pool.h"

#include <algorithm>
#include <utility>

#include "base/thread_name.h"

namespace poledger {
namespace {

// The pool the current thread works for, and whether it left it.
thread_local HttpWorkerPool* tls_pool = nullptr;
thread_local bool tls_detached = false;

}  // namespace

HttpWorkerPool::HttpWorkerPool(size_t workers, size_t max_streams)
    : max_streams_(max_streams) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < std::max<size_t>(workers, 1); ++i) {
    workers_.emplace_back([this] { Work(); });
  }
}

HttpWorkerPool::~HttpWorkerPool() { shutdown(); }

void HttpWorkerPool::enqueue(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  jobs_.push_back(std::move(fn));
}

void HttpWorkerPool::shutdown() {
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](size_t* streaming) { return *streaming == 0; }, &streaming_));
}

bool HttpWorkerPool::DetachForStream() {
  HttpWorkerPool* pool = tls_pool;
  if (pool == nullptr || tls_detached) return false;
  absl::MutexLock lock(&pool->mu_);
  if (pool->streaming_ >= pool->max_streams_) return false;
  ++pool->streaming_;
  tls_detached = true;
  // The thread is no longer the pool's to join: it ends with its stream.
  const std::thread::id self = std::this_thread::get_id();
  auto it = std::find_if(pool->workers_.begin(), pool->workers_.end(),
                         [self](const std::thread& t) {
                           return t.get_id() == self;
                         });
  if (it != pool->workers_.end()) {
    it->detach();
    pool->workers_.erase(it);
  }
  if (!pool->shutdown_) pool->workers_.emplace_back([pool] { pool->Work(); });
  return true;
}

size_t HttpWorkerPool::streaming() const {
  absl::MutexLock lock(&mu_);
  return streaming_;
}

void HttpWorkerPool::Work() {
  SetCurrentThreadName("pl-http");
  tls_pool = this;
  for (;;) {
    std::function<void()> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](HttpWorkerPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return !p->jobs_.empty() || p->shutdown_;
          },
          this));
      if (jobs_.empty()) return;  // Shut down, nothing left.
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
    if (tls_detached) {
      // A stream's thread: its replacement serves the pool.
      absl::MutexLock lock(&mu_);
      --streaming_;
      return;
    }
  }
}

}  // namespace poledger
