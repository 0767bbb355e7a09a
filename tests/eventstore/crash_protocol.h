// What eventstore_crash_child reports to eventstore_crash_test.
#ifndef POLEDGER_TESTS_EVENTSTORE_CRASH_PROTOCOL_H_
#define POLEDGER_TESTS_EVENTSTORE_CRASH_PROTOCOL_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace poledger {
namespace crash {

// One acknowledged append: `seq` (from 0) of `thread` is at `position`.
struct Ack {
  uint64_t position;
  uint32_t thread;
  uint32_t seq;
};

// Each thread of each cycle appends to a stream of its own, so an append's
// stream version is seq + 1.
inline std::string StreamId(uint32_t cycle, uint32_t thread) {
  return absl::StrCat("crash-c", cycle, "-t", thread);
}

// About 300 bytes, derived from the append so the parent can check it.
inline std::string Payload(uint32_t cycle, uint32_t thread, uint32_t seq) {
  std::string p = absl::StrCat("cycle=", cycle, " thread=", thread,
                               " seq=", seq, " ");
  while (p.size() < 300) p.push_back(static_cast<char>('a' + p.size() % 26));
  return p;
}

}  // namespace crash
}  // namespace poledger

#endif  // POLEDGER_TESTS_EVENTSTORE_CRASH_PROTOCOL_H_
