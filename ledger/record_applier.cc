#include "ledger/record_applier.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "core/errors.h"

namespace poledger {

absl::StatusOr<LoggedEvent> DecodeRecord(const RecordedEvent& record,
                                         const PersonalData* keys) {
  LoggedEvent out;
  out.position = record.position;
  out.stream_version = record.stream_version;
  out.time = record.timestamp;
  if (!out.event.ParseFromString(record.payload)) {
    return absl::DataLossError(absl::StrCat(
        "event at position ", record.position, " is not an account event"));
  }
  if (keys != nullptr) {
    absl::string_view account = record.stream_id;
    absl::ConsumePrefix(&account, "account/");
    if (absl::Status opened = keys->Open(std::string(account), out.event);
        !opened.ok()) {
      return absl::Status(opened.code(),
                          absl::StrCat("event at position ", record.position,
                                       ": ", opened.message()));
    }
  }
  return out;
}

std::string InvoicePartKey(absl::string_view account_id,
                           absl::string_view invoice_id) {
  return absl::StrCat(account_id, absl::string_view("\0", 1), invoice_id);
}

absl::StatusOr<std::optional<v1::InvoiceSnapshot>> ReadSavedInvoice(
    const EventStore& store, absl::string_view account_id,
    absl::string_view invoice_id, uint64_t through_version) {
  ASSIGN_OR_RETURN(std::optional<std::string> blob,
                   store.ReadSnapshotPart(InvoicePartKey(account_id, invoice_id)));
  if (!blob.has_value()) return std::nullopt;
  v1::InvoiceSnapshot invoice;
  if (!invoice.ParseFromString(*blob) || invoice.invoice_id() != invoice_id) {
    return absl::DataLossError(absl::StrCat(
        "the snapshot of invoice ", core::Quote(invoice_id), " of account ",
        core::Quote(account_id), " does not decode"));
  }
  if (invoice.recorded_version() > through_version) return std::nullopt;
  return invoice;
}

absl::StatusOr<std::vector<std::string>> ApplyEvent(
    core::AccountState& state, const v1::AccountEvent& event,
    uint64_t position, const EventStore* saved) {
  std::vector<std::string> touched = core::InvoicesChangedBy(event);
  if (saved != nullptr) {
    for (const std::string& id : touched) {
      if (state.invoices.contains(id)) continue;
      ASSIGN_OR_RETURN(std::optional<v1::InvoiceSnapshot> entry,
                       ReadSavedInvoice(*saved, state.account_id, id,
                                        state.version));
      if (entry.has_value()) {
        RETURN_IF_ERROR(core::AddInvoiceSnapshot(state, *entry));
      }
    }
  }
  if (absl::Status applied = core::Apply(state, event); !applied.ok()) {
    return absl::DataLossError(
        absl::StrCat("event at position ", position, ": ", applied.message()));
  }
  return touched;
}

absl::StatusOr<std::vector<std::string>> ApplyRecord(
    core::AccountState& state, const RecordedEvent& record,
    const EventStore* saved, const PersonalData* keys) {
  if (record.stream_version != state.version + 1) {
    return absl::DataLossError(
        absl::StrCat("event at position ", record.position, " is version ",
                     record.stream_version, " of ", record.stream_id,
                     ", expected ", state.version + 1));
  }
  ASSIGN_OR_RETURN(LoggedEvent logged, DecodeRecord(record, keys));
  return ApplyEvent(state, logged.event, record.position, saved);
}

}  // namespace poledger
