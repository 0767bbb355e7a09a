// Conversions between absl::Time and google.protobuf.Timestamp, and from
// absl::Duration to google.protobuf.Duration.
// Thread safety: pure functions.
#ifndef POLEDGER_CORE_PROTO_TIME_H_
#define POLEDGER_CORE_PROTO_TIME_H_

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace poledger {
namespace core {

inline google::protobuf::Timestamp ToProtoTime(absl::Time t) {
  google::protobuf::Timestamp out;
  const int64_t seconds = absl::ToUnixSeconds(t);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  return out;
}

inline absl::Time FromProtoTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// A finite duration (an infinite one is clamped by absl's conversions).
inline google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t seconds = absl::ToInt64Seconds(d);
  out.set_seconds(seconds);
  out.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(d - absl::Seconds(seconds))));
  return out;
}

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_PROTO_TIME_H_
