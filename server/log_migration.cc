#include "server/log_migration.h"

#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "eventstore/rocksdb_event_store.h"
#include "ledger/ledger.h"
#include "ledger/personal_data.h"
#include "poledger/v1/events.pb.h"

namespace poledger {
namespace {

constexpr size_t kBatch = 4096;

// The append that writes `record` (the events of one old record) again,
// its contacts sealed. Adds the contacts it sealed to `sealed`.
absl::StatusOr<AppendRequest> CopyOf(const std::vector<RecordedEvent>& record,
                                     PersonalData& keys, uint64_t* sealed) {
  AppendRequest request;
  const RecordedEvent& first = record.front();
  request.metadata.request_id = first.request_id;
  request.metadata.correlation_id = first.correlation_id;
  request.metadata.actor = first.actor;
  request.metadata.timestamp = first.timestamp;
  for (const RecordedEvent& e : record) {
    if (request.streams.empty() ||
        request.streams.back().stream_id != e.stream_id) {
      StreamAppend& stream = request.streams.emplace_back();
      stream.stream_id = e.stream_id;
      stream.expected_version = ExpectedVersion::Exact(e.stream_version - 1);
    }
    NewEvent copy{e.event_type, e.payload, e.event_id};
    const std::string account = AccountOfStream(e.stream_id);
    if (!account.empty()) {
      std::vector<v1::AccountEvent> events(1);
      if (!events[0].ParseFromString(e.payload)) {
        return absl::DataLossError(absl::StrCat(
            "event at position ", e.position, " is not an account event"));
      }
      uint64_t plain = 0;
      ForEachContactList(events[0], [&](auto& contacts) {
        for (const v1::Contact& c : contacts) {
          if (c.sealed().empty() && !c.erased()) ++plain;
        }
      });
      if (plain > 0) {
        RETURN_IF_ERROR(keys.Seal(account, events, request.keys));
        copy.payload = PersonalData::StoredPayload(events[0]);
        *sealed += plain;
      }
    }
    request.streams.back().events.push_back(std::move(copy));
  }
  return request;
}

}  // namespace

absl::StatusOr<MigrationReport> MigrateLog(const std::string& from,
                                           const std::string& to,
                                           const std::string& kek,
                                           std::ostream& digests) {
  std::error_code error;
  if (std::filesystem::exists(to, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(to, " exists; the copy goes to a new directory"));
  }
  RocksDbEventStoreOptions old_options;
  old_options.path = from;
  old_options.create_if_missing = false;
  old_options.read_only = true;
  old_options.verify_from_mark = false;  // The whole old log, first.
  ASSIGN_OR_RETURN(std::unique_ptr<RocksDbEventStore> old_log,
                   RocksDbEventStore::Open(old_options));
  RocksDbEventStoreOptions new_options;
  new_options.path = to;
  ASSIGN_OR_RETURN(std::unique_ptr<RocksDbEventStore> new_log,
                   RocksDbEventStore::Open(new_options));
  ASSIGN_OR_RETURN(std::unique_ptr<PersonalData> keys,
                   PersonalData::Open(new_log.get(), kek));
  if (!keys->can_seal()) {
    return absl::InvalidArgumentError("the copy needs a data key to seal with");
  }
  MigrationReport report;
  uint64_t next = 1;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> batch,
                     old_log->ReadForward(next, kBatch));
    if (batch.empty()) break;
    // Whole records only: the last one may be cut by the batch's limit.
    if (batch.back().record_last() != batch.back().position) {
      const uint64_t cut = batch.back().record_first();
      while (!batch.empty() && batch.back().position >= cut) batch.pop_back();
      if (batch.empty()) {
        ASSIGN_OR_RETURN(batch, old_log->ReadForward(
                                    next, kMaxEventsPerAppend));
      }
    }
    // Nor an old log's append cut in two (see below): its records of the
    // batch's last request wait for the next batch, unless they are all.
    if (batch.size() >= kBatch && !batch.back().request_id.empty()) {
      const std::string request = batch.back().request_id;
      size_t keep = batch.size();
      while (keep > 0 && batch[keep - 1].request_id == request) --keep;
      if (keep > 0) batch.resize(keep);
    }
    size_t i = 0;
    while (i < batch.size()) {
      // One append: a record, and the records after it of the same
      // request (a log from before one record per append stored each event
      // of an append as its own record, all with the append's request id).
      std::vector<RecordedEvent> record;
      uint64_t last = batch[i].record_last();
      for (;;) {
        while (i < batch.size() && batch[i].position <= last) {
          record.push_back(std::move(batch[i++]));
        }
        if (i == batch.size() || record.front().request_id.empty() ||
            batch[i].request_id != record.front().request_id) {
          break;
        }
        last = batch[i].record_last();
      }
      ASSIGN_OR_RETURN(AppendRequest request,
                       CopyOf(record, *keys, &report.contacts));
      std::vector<KeyEntry> written = request.keys;
      ASSIGN_OR_RETURN(AppendResult appended, new_log->Append(request));
      keys->Remember(written);
      if (appended.first_position != record.front().position ||
          appended.last_position != record.back().position) {
        return absl::InternalError(absl::StrCat(
            "the copy of positions ", record.front().position, "-",
            record.back().position, " landed at ", appended.first_position,
            "-", appended.last_position));
      }
      ASSIGN_OR_RETURN(std::vector<RecordedEvent> copied,
                       new_log->ReadForward(appended.last_position, 1));
      digests << record.back().position << " " << HashToHex(record.back().hash)
              << " " << HashToHex(copied.front().hash) << "\n";
      ++report.records;
      report.events = record.back().position;
      next = record.back().position + 1;
    }
  }
  ASSIGN_OR_RETURN(LogHead old_head, old_log->VerifyLog());
  ASSIGN_OR_RETURN(LogHead new_head, new_log->VerifyLog());
  if (new_head.position != old_head.position) {
    return absl::DataLossError(absl::StrCat(
        "the copy ends at position ", new_head.position, ", the log at ",
        old_head.position));
  }
  report.old_digest = HashToHex(old_head.hash);
  report.new_digest = HashToHex(new_head.hash);
  return report;
}

}  // namespace poledger
