// Status propagation macros for absl::Status and absl::StatusOr<T>.
//
// Debian 12's Abseil (20220623) ships no status macros, so poledger keeps
// this one small header. Safe to use from any thread (macros only).
#ifndef POLEDGER_BASE_STATUS_MACROS_H_
#define POLEDGER_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define POLEDGER_STATUS_CONCAT_INNER_(x, y) x##y
#define POLEDGER_STATUS_CONCAT_(x, y) POLEDGER_STATUS_CONCAT_INNER_(x, y)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function if it is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status poledger_status_ = (expr);            \
    if (!poledger_status_.ok()) return poledger_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from
// the enclosing function, otherwise moves the value into `lhs`, which may be
// a declaration such as `auto x`.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL_(            \
      POLEDGER_STATUS_CONCAT_(poledger_statusor_, __LINE__), lhs, rexpr)

#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                           \
  if (!statusor.ok()) return statusor.status();      \
  lhs = std::move(statusor).value()

#endif  // POLEDGER_BASE_STATUS_MACROS_H_
