// RocksDB's statuses as absl::Status, for the files that call RocksDB.
#ifndef POLEDGER_EVENTSTORE_ROCKS_STATUS_H_
#define POLEDGER_EVENTSTORE_ROCKS_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace poledger {

// OK, or `what` and RocksDB's message under the closest code: NOT_FOUND,
// DATA_LOSS for corruption, INVALID_ARGUMENT, UNAVAILABLE for I/O errors
// and contention, INTERNAL for the rest.
inline absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_ROCKS_STATUS_H_
