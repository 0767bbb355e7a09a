#include "server/log.h"

#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace poledger {
namespace log {
namespace {

std::atomic<Format> g_format{Format::kText};

spdlog::logger& Logger() {
  static spdlog::logger* logger = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto* l = new spdlog::logger("poledger", sink);
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::info);
    return l;
  }();
  return *logger;
}

google::protobuf::Value ToValue(const Value& v) {
  google::protobuf::Value out;
  if (const auto* s = std::get_if<std::string>(&v)) {
    out.set_string_value(*s);
  } else if (const auto* i = std::get_if<int64_t>(&v)) {
    out.set_number_value(static_cast<double>(*i));
  } else if (const auto* d = std::get_if<double>(&v)) {
    out.set_number_value(*d);
  } else {
    out.set_bool_value(std::get<bool>(v));
  }
  return out;
}

// One value as JSON (strings quoted and escaped by protobuf).
std::string Json(const google::protobuf::Value& v) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(v, &out);
  return out;
}

spdlog::level::level_enum SpdLevel(Level level) {
  switch (level) {
    case Level::kWarning:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    default:
      return spdlog::level::info;
  }
}

}  // namespace

void Init(Format format) {
  g_format = format;
  if (format == Format::kJson) {
    // The line is the Struct printed by protobuf, with time and level first.
    Logger().set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v)",
                         spdlog::pattern_time_type::utc);
  } else {
    Logger().set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v",
                         spdlog::pattern_time_type::utc);
  }
}

void Write(Level level, absl::string_view event, absl::string_view message,
           std::initializer_list<Field> fields) {
  if (g_format.load() == Format::kJson) {
    google::protobuf::Struct line;
    auto& f = *line.mutable_fields();
    f["event"].set_string_value(std::string(event));
    f["msg"].set_string_value(std::string(message));
    for (const Field& field : fields)
      f[std::string(field.key)] = ToValue(field.value);
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(line, &json);
    // Drop the Struct's opening brace: the pattern has it, with the time.
    Logger().log(SpdLevel(level), "{}", json.substr(1));
    return;
  }
  std::string text(message);
  for (const Field& field : fields) {
    const google::protobuf::Value v = ToValue(field.value);
    absl::StrAppend(
        &text, " ", field.key, "=",
        v.has_string_value() &&
                v.string_value().find_first_of(" \"=") == std::string::npos &&
                !v.string_value().empty()
            ? v.string_value()
            : Json(v));
  }
  Logger().log(SpdLevel(level), "{}", text);
}

}  // namespace log
}  // namespace poledger
