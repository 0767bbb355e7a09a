// The records that open a term in a replicated shard's log: a new leader's
// first record names the term that begins, on a stream of its own
// (kTermStream) that no account shares, so that every record of the log
// shows under which term it was written and an auditor can list the terms.
#ifndef POLEDGER_LEDGER_TERM_RECORD_H_
#define POLEDGER_LEDGER_TERM_RECORD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "eventstore/event_store.h"

namespace poledger {

inline constexpr char kTermStream[] = "shard/terms";
inline constexpr char kTermBeganType[] = "term_began";

// A term as its record says.
struct TermInfo {
  uint64_t term = 0;
  std::string node;
  std::string address;
  // The record's position: the term's records start here.
  uint64_t position = 0;
  absl::Time time;
};

// The append that opens `term` (led by `node` at `address`).
AppendRequest TermRecord(uint64_t term, const std::string& node,
                         const std::string& address, absl::Time now);

// The term `record` opens, or std::nullopt if it opens none. DATA_LOSS if it
// is on the term stream and does not decode.
absl::StatusOr<std::optional<TermInfo>> TermOf(const RecordedEvent& record);

// The last term `log` records (term 0 at position 0 if none).
absl::StatusOr<TermInfo> LastTerm(const EventStore& log);

// Every term `log` records, in log order.
absl::StatusOr<std::vector<TermInfo>> ListTerms(const EventStore& log);

}  // namespace poledger

#endif  // POLEDGER_LEDGER_TERM_RECORD_H_
