// Scrubber re-verifies the whole event log in the background: every
// record's hash and chain link, from the first record to the head as it
// was when the pass began, once soon after the start and then every
// interval. Reads below the verified-through mark are otherwise trusted at
// open and checked only when someone reads them; the scrub finds a damaged
// record nobody reads. It reports a break (an error line naming the
// position, metrics, GetServerInfo) and never repairs anything.
//
// It runs at low priority (nice 19, idle I/O class, reads around the block
// cache) in steps of kScrubStep records, resting after each step so that
// it uses at most `duty` of one core: writes slow by a few percent at most
// (README, When things go wrong, has the measurement).
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_SCRUBBER_H_
#define POLEDGER_SERVER_SCRUBBER_H_

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "eventstore/rocksdb_event_store.h"

namespace poledger {

inline constexpr size_t kScrubStep = 4096;

// What the scrubs found.
struct ScrubReport {
  bool running = false;
  // The last finished pass (passes == 0: none yet).
  uint64_t passes = 0;
  uint64_t failures = 0;
  absl::Time finished = absl::InfinitePast();
  absl::Duration took;
  // OK, or DATA_LOSS naming the first broken position.
  absl::Status result;
  // The position it verified through: the head when it began, or the last
  // good record before the break.
  uint64_t verified_through = 0;
  uint64_t records = 0;
};

struct ScrubberOptions {
  // Time between the end of one pass and the start of the next.
  // Default: 24 h
  absl::Duration interval = absl::Hours(24);
  // Time from the start to the first pass (after the start's own work).
  // Default: 10 s
  absl::Duration first_pass_after = absl::Seconds(10);
  // The share of one core a pass may use (it rests between steps).
  // Default: 0.1
  double duty = 0.1;
  // Called after each pass, on the scrub's thread.
  std::function<void(const ScrubReport&)> on_pass;
};

class Scrubber {
 public:
  // Starts the scrub's thread over `store` (not owned; must outlive it).
  Scrubber(const RocksDbEventStore* store, ScrubberOptions options);
  // Stops, abandoning a pass in progress.
  ~Scrubber();

  ScrubReport report() const;

 private:
  void Run();
  // One pass; false if stopped meanwhile.
  bool Pass();
  // Waits for `d` or until stopped; false if stopped.
  bool Rest(absl::Duration d);

  const RocksDbEventStore* const store_;
  const ScrubberOptions options_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  ScrubReport report_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_SCRUBBER_H_
