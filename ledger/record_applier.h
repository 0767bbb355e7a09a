// Applying logged events to an account's state: the one rule that the
// ledger's own commands, the records a replica copies, an account's load
// and the rebuilding of its past all follow. Decode a record into its event,
// check that it is the account's next version, bring in the saved invoice
// entries it touches that the state does not hold, apply it, and say which
// invoice entries it changed (the caller marks them for the next snapshot).
#ifndef POLEDGER_LEDGER_RECORD_APPLIER_H_
#define POLEDGER_LEDGER_RECORD_APPLIER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/account.h"
#include "eventstore/event_store.h"
#include "ledger/personal_data.h"
#include "poledger/v1/events.pb.h"
#include "poledger/v1/snapshot.pb.h"

namespace poledger {

// A recorded event of an account, with where and when it was logged.
struct LoggedEvent {
  uint64_t position = 0;
  uint64_t stream_version = 0;
  absl::Time time;
  v1::AccountEvent event;
};

// Decodes a record's payload as an account event, with its sealed contacts
// opened if `keys` is given; DATA_LOSS naming its position if it is not
// one, or the contacts' error.
absl::StatusOr<LoggedEvent> DecodeRecord(const RecordedEvent& record,
                                         const PersonalData* keys = nullptr);

// The key of the saved part of an account's invoice or credit memo: the
// account id, NUL, the invoice id (a part under the account's own).
std::string InvoicePartKey(absl::string_view account_id,
                           absl::string_view invoice_id);

// The saved entry of an account's invoice or credit memo, or std::nullopt
// if none is saved or the saved one was recorded after `through_version`:
// an append saves the entries it records before its events are applied, so
// a state at `through_version` does not reflect it yet. DATA_LOSS if it
// does not decode.
absl::StatusOr<std::optional<v1::InvoiceSnapshot>> ReadSavedInvoice(
    const EventStore& store, absl::string_view account_id,
    absl::string_view invoice_id, uint64_t through_version);

// Applies `event`, logged at `position` (0: not logged yet), to `state`.
// With `saved` set, the invoice entries the event changes that `state` does
// not hold are read from the saved snapshot first (some entries of the
// account may live only there). Returns the ids of the invoice entries it
// changed. DATA_LOSS naming the position if it does not apply.
absl::StatusOr<std::vector<std::string>> ApplyEvent(
    core::AccountState& state, const v1::AccountEvent& event,
    uint64_t position, const EventStore* saved);

// Decodes `record` and applies it as ApplyEvent does. DATA_LOSS too if it is
// not the next version of the state's stream.
absl::StatusOr<std::vector<std::string>> ApplyRecord(
    core::AccountState& state, const RecordedEvent& record,
    const EventStore* saved, const PersonalData* keys = nullptr);

}  // namespace poledger

#endif  // POLEDGER_LEDGER_RECORD_APPLIER_H_
