// The server's structured log: one line per event (lifecycle, refused write,
// slow call, snapshot, stream opened and closed), as text for a terminal or
// as JSON lines (--log-format=json), through spdlog on stderr. Fields are
// built as a protobuf Struct and printed by protobuf's JSON printer, so
// values are escaped by a library, not by hand. Never log a secret or a
// whole request body.
//
// Thread safety: every function is safe for concurrent use.
#ifndef POLEDGER_SERVER_LOG_H_
#define POLEDGER_SERVER_LOG_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <variant>

#include "absl/strings/string_view.h"

namespace poledger {
namespace log {

enum class Format { kText, kJson };
enum class Level { kInfo, kWarning, kError };

// Sets the format (default text). Call once, before the server starts.
void Init(Format format);

using Value = std::variant<std::string, int64_t, double, bool>;
struct Field {
  Field(absl::string_view k, std::string v) : key(k), value(std::move(v)) {}
  Field(absl::string_view k, const char* v) : key(k), value(std::string(v)) {}
  Field(absl::string_view k, absl::string_view v)
      : key(k), value(std::string(v)) {}
  Field(absl::string_view k, int v) : key(k), value(int64_t{v}) {}
  Field(absl::string_view k, int64_t v) : key(k), value(v) {}
  Field(absl::string_view k, uint64_t v)
      : key(k), value(static_cast<int64_t>(v)) {}
  Field(absl::string_view k, double v) : key(k), value(v) {}
  Field(absl::string_view k, bool v) : key(k), value(v) {}
  absl::string_view key;
  Value value;
};

// Logs `event` (a short stable name, e.g. "server_listening") with a human
// `message` and `fields`. Text: "TIME LEVEL message key=value ...". JSON:
// {"time":..., "level":..., "event":..., "msg":..., key: value, ...}.
void Write(Level level, absl::string_view event, absl::string_view message,
           std::initializer_list<Field> fields = {});

inline void Info(absl::string_view event, absl::string_view message,
                 std::initializer_list<Field> fields = {}) {
  Write(Level::kInfo, event, message, fields);
}
inline void Warning(absl::string_view event, absl::string_view message,
                    std::initializer_list<Field> fields = {}) {
  Write(Level::kWarning, event, message, fields);
}
inline void Error(absl::string_view event, absl::string_view message,
                  std::initializer_list<Field> fields = {}) {
  Write(Level::kError, event, message, fields);
}

}  // namespace log
}  // namespace poledger

#endif  // POLEDGER_SERVER_LOG_H_
