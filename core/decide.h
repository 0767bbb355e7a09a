// Decide: the rules. Given an account's state, a command and the time, it
// returns the events that carry the command out, or refuses it with a
// domain error (errors.h) and no events.
//
// Decide reads no clock and no storage: `now` is passed in, and the state is
// whatever Apply built. Applying the returned events, in order, to the same
// state gives the state after the command.
//
// Thread safety: Decide only reads `state` (but Match may build its index;
// see matching.h).
#ifndef POLEDGER_CORE_DECIDE_H_
#define POLEDGER_CORE_DECIDE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/account.h"
#include "core/commands.h"
#include "poledger/v1/events.pb.h"

namespace poledger {
namespace core {

struct Decision {
  std::vector<v1::AccountEvent> events;
  // Non-zero when the command repeats an invoice, credit memo or marketplace
  // transaction already recorded with the same content: nothing is to be
  // appended, and the original event is at this account version.
  uint64_t duplicate_of_version = 0;
};

// Errors: see errors.h for the codes and reasons.
absl::StatusOr<Decision> Decide(const AccountState& state,
                                const Command& command, absl::Time now);

// The ids of the invoices and credit memos whose entries in
// AccountState::invoices deciding `command` reads: the one it records and,
// for a credit memo, its original. Deciding needs those entries (or their
// absence) as they are; it reads no other. Empty for other commands.
std::vector<std::string> InvoicesReadBy(const Command& command);

// A copy of `state` on which each of `commands` in turn decides as it would
// on `state` with the decisions before it applied. When every command
// records an invoice, credit memo or marketplace transaction, the copy
// holds only the invoices and transactions they name (their ids, and the
// originals that credit memos credit): all that those decisions read of
// them, so a billing run does not copy an account's whole history. For any
// other command, it is a copy of all of `state`.
AccountState ScratchFor(const AccountState& state,
                        const std::vector<Command>& commands);

// The expiration reminders to plan when the expiration month is set to
// `expiration` at `now` (domain.md, Notifications and Time). Reminders
// already past at `now` are left out.
std::vector<v1::ScheduledReminder> PlanReminders(YearMonth expiration,
                                                 absl::Time now);

// The characters every id may hold (purchase order, invoice, credit memo
// original, marketplace transaction and request ids): ASCII letters,
// digits, space and these.
inline constexpr char kIdPunctuation[] = " _.:/=+-%@#";

// Returns INVALID_ARGUMENT (naming `field`) unless `id` is 1 to
// `max_chars` characters of letters, digits and kIdPunctuation; the
// message names the first other character escaped, never as itself.
absl::Status ValidateId(absl::string_view id, absl::string_view field,
                        size_t max_chars);

// The earliest time at which a Tick has work for `state`: the expiry of a
// live (active or suspended) purchase order, or a reminder of one not yet
// raised. nullopt if there is none. Past that time a Tick raises it; how far
// the clock is past the oldest such time is the scheduler's lag.
std::optional<absl::Time> NextDue(const AccountState& state);

// Sets the fields of `to` that `mask` names (top-level field names of its
// message, other than `identity`) to their values in `from`, a message of
// the same type; an empty mask names every field but `identity`. An unknown
// name is INVALID_ARGUMENT naming "update_mask.paths[i]" and changes nothing.
absl::Status MergeMasked(const google::protobuf::Message& from,
                         const std::vector<std::string>& mask,
                         absl::string_view identity,
                         google::protobuf::Message* to);

// ValidateId with the purchase order id's limit of 100 characters.
absl::Status ValidatePurchaseOrderId(absl::string_view id,
                                     absl::string_view field);

// Limits of the other ids.
inline constexpr size_t kMaxInvoiceId = 128;
inline constexpr size_t kMaxRequestId = 128;

// Returns INVALID_ARGUMENT unless `email` is a plausible address.
absl::Status ValidateEmail(absl::string_view email, absl::string_view field);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_DECIDE_H_
