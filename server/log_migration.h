// Copying a log written before contacts were sealed into a new one whose
// contacts are sealed (README "Personal data", Logs from before): every
// record again, in order, with its streams, versions, event ids, request
// ids, actors and times, its plain contacts sealed with new subject keys.
// The new log's hashes differ from the old one's (its payloads do); the
// copy prints each record's old and new hash, so that a digest pinned on
// the old log can be followed to the new one.
#ifndef POLEDGER_SERVER_LOG_MIGRATION_H_
#define POLEDGER_SERVER_LOG_MIGRATION_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"

namespace poledger {

struct MigrationReport {
  uint64_t records = 0;   // Appends copied.
  uint64_t events = 0;    // Events copied (the new head's position).
  uint64_t contacts = 0;  // Contacts sealed on the way.
  std::string old_digest;  // The heads' hashes, hex.
  std::string new_digest;
};

// Copies the log of the data directory `from` (not in use; opened
// read-only and verified whole) into the new data directory `to` (which
// must not exist), sealing contacts with `kek`; verifies the new log whole
// and checks that it has every position; writes "position old-hash
// new-hash" for each record's last event to `digests`. Errors:
// INVALID_ARGUMENT (`to` exists, or a bad key); DATA_LOSS if either log
// does not verify; whatever the stores report.
absl::StatusOr<MigrationReport> MigrateLog(const std::string& from,
                                           const std::string& to,
                                           const std::string& kek,
                                           std::ostream& digests);

}  // namespace poledger

#endif  // POLEDGER_SERVER_LOG_MIGRATION_H_
