#include "server/log_limit.h"

#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/thread_name.h"

namespace poledger {
namespace log {
namespace {

// Lines of one key in its current window.
struct Window {
  absl::Time start;
  int written = 0;
  uint64_t suppressed = 0;
  std::string event;
  Level level = Level::kInfo;
};

// A window that closed with lines left out: its summary line.
struct Summary {
  std::string key;
  Window window;
};

void WriteSummaries(const std::vector<Summary>& closed) {
  for (const Summary& s : closed) {
    Write(s.window.level, "log_suppressed",
          absl::StrCat(s.window.suppressed, " more ", s.window.event,
                       " lines like the ones before were left out (",
                       kLimitedLines, " a key per ",
                       absl::FormatDuration(kLimitWindow), ")"),
          {{"suppressed_event", s.window.event},
           {"key", s.key},
           {"suppressed", s.window.suppressed},
           {"window_seconds", absl::ToDoubleSeconds(kLimitWindow)}});
  }
}

class Limiter {
 public:
  static Limiter& Get() {
    static Limiter* limiter = new Limiter();  // Never destroyed: threads log.
    return *limiter;
  }

  // Whether the line may be written now; summaries of closed windows to
  // write go to `closed`.
  bool Admit(Level level, absl::string_view event, absl::string_view key,
             std::vector<Summary>& closed) {
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    StartFlusherLocked();
    std::string k(key);
    if (windows_.size() >= kMaxLimitKeys && !windows_.contains(k)) {
      k = "(too many keys)";
    }
    auto [it, fresh] = windows_.try_emplace(k);
    Window& w = it->second;
    if (!fresh && now - w.start >= kLimitWindow) {
      if (w.suppressed > 0) closed.push_back({k, w});
      w = Window();
      fresh = true;
    }
    if (fresh) {
      w.start = now;
      w.event = std::string(event);
      w.level = level;
    }
    if (w.written < kLimitedLines) {
      ++w.written;
      return true;
    }
    ++w.suppressed;
    ++suppressed_[w.event];
    return false;
  }

  std::map<std::string, uint64_t> Suppressed() {
    absl::MutexLock lock(&mu_);
    return suppressed_;
  }

 private:
  void StartFlusherLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (flusher_started_) return;
    flusher_started_ = true;
    std::thread([this] {
      SetCurrentThreadName("pl-logflush");
      for (;;) {
        absl::SleepFor(kLimitWindow);
        std::vector<Summary> closed;
        {
          absl::MutexLock lock(&mu_);
          const absl::Time now = absl::Now();
          for (auto it = windows_.begin(); it != windows_.end();) {
            if (now - it->second.start < kLimitWindow) {
              ++it;
              continue;
            }
            if (it->second.suppressed > 0) closed.push_back({it->first, it->second});
            windows_.erase(it++);
          }
        }
        WriteSummaries(closed);
      }
    }).detach();
  }

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Window> windows_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> suppressed_ ABSL_GUARDED_BY(mu_);
  bool flusher_started_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

void WriteLimited(Level level, absl::string_view event, absl::string_view key,
                  absl::string_view message,
                  std::initializer_list<Field> fields) {
  std::vector<Summary> closed;
  const bool admit = Limiter::Get().Admit(level, event, key, closed);
  WriteSummaries(closed);
  if (admit) Write(level, event, message, fields);
}

std::string PeerHost(absl::string_view peer) {
  const size_t colon = peer.rfind(':');
  const size_t bracket = peer.rfind(']');
  if (colon == absl::string_view::npos ||
      (bracket != absl::string_view::npos && colon < bracket)) {
    return std::string(peer);
  }
  return std::string(peer.substr(0, colon));
}

std::map<std::string, uint64_t> SuppressedLines() {
  return Limiter::Get().Suppressed();
}

}  // namespace log
}  // namespace poledger
