// Repeated log lines kept from flooding the log: a refusal that repeats
// (the same event, method, code, reason and caller, a full disk refusing
// every write, a client retrying in a loop) is written at most
// kLimitedLines times per kLimitWindow; the rest are counted, and one
// "log_suppressed" line per key says how many were left out once its window
// closes. Metrics keep the exact counts of calls; SuppressedLines() the
// count of lines left out.
//
// Security refusals stay visible: the caller is part of the key, so every
// caller keeps its own lines in every window.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_LOG_LIMIT_H_
#define POLEDGER_SERVER_LOG_LIMIT_H_

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/log.h"

namespace poledger {
namespace log {

inline constexpr int kLimitedLines = 5;
inline constexpr absl::Duration kLimitWindow = absl::Seconds(1);
// Keys tracked at once; past that, new keys share one (so a flood of
// distinct callers costs bounded memory and still at most a few lines).
inline constexpr size_t kMaxLimitKeys = 10000;

// Writes the line as Write does, unless `key`'s lines of this window
// already number kLimitedLines.
void WriteLimited(Level level, absl::string_view event, absl::string_view key,
                  absl::string_view message,
                  std::initializer_list<Field> fields = {});

// The host of a peer address ("ipv4:127.0.0.1:5000" -> "ipv4:127.0.0.1"):
// one key per caller host, whatever port each connection has.
std::string PeerHost(absl::string_view peer);

// Lines left out so far, by event.
std::map<std::string, uint64_t> SuppressedLines();

}  // namespace log
}  // namespace poledger

#endif  // POLEDGER_SERVER_LOG_LIMIT_H_
