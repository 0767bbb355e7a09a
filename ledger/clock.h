// Clocks: the server's only source of time. The real clock reads the
// system; the manual clock moves only when told (tests, --clock=manual:...).
//
// Thread safety: both are safe for concurrent use.
#ifndef POLEDGER_LEDGER_CLOCK_H_
#define POLEDGER_LEDGER_CLOCK_H_

#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace poledger {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  virtual bool is_manual() const = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  bool is_manual() const override { return false; }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  bool is_manual() const override { return true; }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace poledger

#endif  // POLEDGER_LEDGER_CLOCK_H_
