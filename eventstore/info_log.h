// InfoLog is RocksDB's diagnostic log ("LOG" in the data directory) written
// so that a full disk cannot stop the server: a line that does not fit is
// dropped (and counted) rather than failing, where RocksDB's own file logger
// asserts on the next line after a failed write. At open the previous LOG
// becomes LOG.old; past max_bytes the current one does too.
//
// Thread safety: safe for concurrent use (RocksDB logs from many threads).
#ifndef POLEDGER_EVENTSTORE_INFO_LOG_H_
#define POLEDGER_EVENTSTORE_INFO_LOG_H_

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/env.h"

namespace poledger {

class InfoLog final : public rocksdb::Logger {
 public:
  // Logs to `dir`/LOG (the directory must exist), at INFO and above.
  static std::shared_ptr<InfoLog> Open(const std::string& dir,
                                       uint64_t max_bytes = 64u << 20);
  ~InfoLog() override;

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;
  size_t GetLogFileSize() const override;

  // Lines that could not be written (a full disk).
  uint64_t dropped() const;

  // The first line RocksDB logged about a damaged record it skipped (a
  // WAL that ends in a torn record, recovered to the record before), ""
  // if none: point-in-time recovery says so only here.
  std::string first_corruption() const;

 private:
  InfoLog(std::string dir, uint64_t max_bytes);
  // Moves LOG to LOG.old and starts a new LOG.
  void RotateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const uint64_t max_bytes_;
  mutable absl::Mutex mu_;
  std::FILE* file_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_corruption_ ABSL_GUARDED_BY(mu_);
};

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_INFO_LOG_H_
