// Conversions between absl::Time and google.protobuf.Timestamp.
// Thread safety: pure functions.
#ifndef POLEDGER_CORE_PROTO_TIME_H_
#define POLEDGER_CORE_PROTO_TIME_H_

#include "absl/time/time.h"
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

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_PROTO_TIME_H_
