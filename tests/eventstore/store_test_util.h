// Helpers shared by the event store tests.
#ifndef POLEDGER_TESTS_EVENTSTORE_STORE_TEST_UTIL_H_
#define POLEDGER_TESTS_EVENTSTORE_STORE_TEST_UTIL_H_

#include <cstdlib>
#include <filesystem>
#include <string>

#include "eventstore/event_store.h"

namespace poledger {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents when
// the object goes away.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
        "/poledger-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Returns an append of one "TestEvent" with `payload` to `stream`.
inline AppendRequest OneEvent(const std::string& stream,
                              ExpectedVersion expected,
                              const std::string& payload) {
  AppendRequest request;
  request.streams.push_back({stream, expected, {{"TestEvent", payload, ""}}});
  return request;
}

}  // namespace poledger

#endif  // POLEDGER_TESTS_EVENTSTORE_STORE_TEST_UTIL_H_
