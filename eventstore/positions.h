// Positions count events, not records: an append of N events takes N
// consecutive positions, although the log stores it as one record
// (record_format.h), and a reader may start or stop at any of them. Code
// that steps from one position to another does it with these, so that the
// rule lives in one place.
//
// Thread safety: pure functions.
#ifndef POLEDGER_EVENTSTORE_POSITIONS_H_
#define POLEDGER_EVENTSTORE_POSITIONS_H_

#include <cstddef>
#include <cstdint>

#include "eventstore/event_store.h"

namespace poledger {

// The position a reader that has `position` reads next.
inline constexpr uint64_t PositionAfter(uint64_t position) {
  return position + 1;
}

// The last position before `position` (0, no position, before the first).
inline constexpr uint64_t PositionBefore(uint64_t position) {
  return position == 0 ? 0 : position - 1;
}

// The number of events an append took (0 for none).
inline constexpr uint64_t EventCount(const AppendResult& appended) {
  return appended.first_position == 0
             ? 0
             : appended.last_position - appended.first_position + 1;
}

// The position of the `k`-th event (from 0) of an append whose first event
// is at `first`; 0 while the append has no position (a preview).
inline constexpr uint64_t NthPosition(uint64_t first, size_t k) {
  return first == 0 ? 0 : first + k;
}

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_POSITIONS_H_
