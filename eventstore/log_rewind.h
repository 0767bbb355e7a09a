// Rewinding a log to a position it shares with another, keeping what it
// takes off: a former leader's records past the point where its log leaves
// the new leader's were never acknowledged to anyone (they were never
// committed), so they leave the log, but into a file of their own in the
// data directory ("set aside"), never silently deleted. poledger-audit reads
// such a file (ReadSetAside).
//
// The rewind removes, in one synced RocksDB write, every record past the
// position, their stream-index entries, the request entries of appends that
// do not end at or before it, the saved snapshot with every saved part (the
// parts an append saved with itself are not told apart from the others; the
// next start replays the whole log), and moves the verified-through mark
// back to it. It runs on a closed log (the server
// rewinds before it opens its store) and refuses to take off a record at or
// below the committed mark.
//
// Set-aside file: "poledger set-aside 1\n", then per record
// fixed64(first position) fixed32(len(value)) value, with value a
// record_value (record_format.h), in log order.
#ifndef POLEDGER_EVENTSTORE_LOG_REWIND_H_
#define POLEDGER_EVENTSTORE_LOG_REWIND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "eventstore/event_store.h"

namespace poledger {

struct RewindResult {
  // The events set aside (0: the log ended at or before the position, and
  // no file was written), and the first and last of their positions.
  uint64_t records = 0;
  uint64_t first = 0;
  uint64_t last = 0;
};

// Rewinds the log in `data_dir` to `keep_through`, writing what it takes off
// to `set_aside_path` (which must not exist) first. Records go whole: a
// record holding `keep_through` and the position after it goes too.
// Errors: FAILED_PRECONDITION if the committed mark is past `keep_through`
// (a committed record would go); ALREADY_EXISTS for the file; DATA_LOSS for
// a record that does not decode; RocksDB's and the file system's errors.
absl::StatusOr<RewindResult> RewindLog(const std::string& data_dir,
                                       uint64_t keep_through,
                                       const std::string& set_aside_path);

// The records of a set-aside file, each one's hash checked and each linked
// to the one before. DATA_LOSS naming what is wrong.
absl::StatusOr<std::vector<RecordedEvent>> ReadSetAside(
    const std::string& path);

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_LOG_REWIND_H_
