#include "eventstore/info_log.h"

#include <sys/time.h>

#include <cstdio>
#include <ctime>
#include <string_view>
#include <utility>

namespace poledger {

std::shared_ptr<InfoLog> InfoLog::Open(const std::string& dir,
                                       uint64_t max_bytes) {
  std::shared_ptr<InfoLog> log(new InfoLog(dir, max_bytes));
  absl::MutexLock lock(&log->mu_);
  log->RotateLocked();
  return log;
}

InfoLog::InfoLog(std::string dir, uint64_t max_bytes)
    : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
      dir_(std::move(dir)),
      max_bytes_(max_bytes) {}

InfoLog::~InfoLog() {
  absl::MutexLock lock(&mu_);
  if (file_ != nullptr) std::fclose(file_);
}

void InfoLog::RotateLocked() {
  if (file_ != nullptr) std::fclose(file_);
  const std::string path = dir_ + "/LOG";
  (void)std::rename(path.c_str(), (path + ".old").c_str());
  file_ = std::fopen(path.c_str(), "w");
  bytes_ = 0;
}

void InfoLog::Logv(const char* format, va_list ap) {
  char line[1024];
  struct timeval now;
  gettimeofday(&now, nullptr);
  struct tm t;
  gmtime_r(&now.tv_sec, &t);
  int n = std::snprintf(line, sizeof(line), "%04d/%02d/%02d-%02d:%02d:%02d.%06ld ",
                        t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour,
                        t.tm_min, t.tm_sec, static_cast<long>(now.tv_usec));
  va_list copy;
  va_copy(copy, ap);
  const int body = std::vsnprintf(line + n, sizeof(line) - n - 1, format, copy);
  va_end(copy);
  if (body > 0) n += std::min<int>(body, static_cast<int>(sizeof(line)) - n - 2);
  line[n++] = '\n';
  absl::MutexLock lock(&mu_);
  const std::string_view text(line, n);
  if (first_corruption_.empty() &&
      (text.find("Corruption") != text.npos ||
       text.find("dropping") != text.npos)) {
    first_corruption_.assign(line + 27, n - 28);  // Without time and "\n".
  }
  if (bytes_ + n > max_bytes_) RotateLocked();
  // A line that does not fit (a full disk) is dropped: the log is for
  // diagnosis, and must never take the server down.
  if (file_ == nullptr ||
      std::fwrite(line, 1, n, file_) != static_cast<size_t>(n) ||
      std::fflush(file_) != 0) {
    ++dropped_;
    if (file_ != nullptr) std::clearerr(file_);
    return;
  }
  bytes_ += n;
}

size_t InfoLog::GetLogFileSize() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

std::string InfoLog::first_corruption() const {
  absl::MutexLock lock(&mu_);
  return first_corruption_;
}

uint64_t InfoLog::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace poledger
