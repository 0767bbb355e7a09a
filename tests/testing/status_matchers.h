// GoogleTest matchers for absl::Status and absl::StatusOr<T>.
//
// Debian 12's Abseil ships none, so poledger keeps this small header:
//   EXPECT_THAT(store.Append(req), StatusIs(absl::StatusCode::kAborted));
//   EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
//                           HasSubstr("stream_id")));
//   ASSERT_OK(status_or);
#ifndef POLEDGER_TESTS_TESTING_STATUS_MATCHERS_H_
#define POLEDGER_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace poledger {
namespace testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P2(StatusIsImpl, code, message_matcher,
           "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& status = ::poledger::testing::GetStatus(arg);
  if (status.code() != code) {
    *result_listener << "whose status is " << status;
    return false;
  }
  return ::testing::ExplainMatchResult(message_matcher,
                                       std::string(status.message()),
                                       result_listener);
}

inline auto StatusIs(absl::StatusCode code) {
  return StatusIsImpl(code, ::testing::_);
}

template <typename M>
auto StatusIs(absl::StatusCode code, M message_matcher) {
  return StatusIsImpl(code, ::testing::MatcherCast<std::string>(message_matcher));
}

}  // namespace testing
}  // namespace poledger

#define ASSERT_OK(expr) \
  ASSERT_THAT((expr), ::poledger::testing::StatusIs(absl::StatusCode::kOk))
#define EXPECT_OK(expr) \
  EXPECT_THAT((expr), ::poledger::testing::StatusIs(absl::StatusCode::kOk))

#endif  // POLEDGER_TESTS_TESTING_STATUS_MATCHERS_H_
