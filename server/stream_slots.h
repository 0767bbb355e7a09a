// StreamSlots counts the streams each caller has open, so that one caller
// (a script, or a console left open in many tabs) cannot hold every
// stream the server can serve.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_STREAM_SLOTS_H_
#define POLEDGER_SERVER_STREAM_SLOTS_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace poledger {

class StreamSlots {
 public:
  // Takes one of `caller`'s `limit` slots (0: no limit); false when all
  // are taken. Each true is paired with one Release.
  bool TryTake(const std::string& caller, int limit) {
    absl::MutexLock lock(&mu_);
    int& open = open_[caller];
    if (limit > 0 && open >= limit) {
      if (open == 0) open_.erase(caller);
      return false;
    }
    ++open;
    return true;
  }

  void Release(const std::string& caller) {
    absl::MutexLock lock(&mu_);
    auto it = open_.find(caller);
    if (it == open_.end()) return;
    if (--it->second <= 0) open_.erase(it);
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_STREAM_SLOTS_H_
