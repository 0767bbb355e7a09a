// RemoteEventStore reads a running server's event log through
// EventLogService.ReadEvents, so the audit operations work online as they
// do on a data directory. It recomputes each record's hash from the fields
// the server sends (the payload re-encoded) and checks chain links, so a
// server that altered its log is caught as a local read would catch it.
//
// Read-only: Append, SaveSnapshotParts and WaitForPosition are not supported.
// Thread safety: safe for concurrent reads.
#ifndef POLEDGER_CLIENTS_REMOTE_EVENT_STORE_H_
#define POLEDGER_CLIENTS_REMOTE_EVENT_STORE_H_

#include <functional>
#include <memory>
#include <string>

#include "eventstore/event_store.h"
#include "poledger/v1/log.grpc.pb.h"

namespace poledger {

// The event an Event of the API carries (DATA_LOSS naming the position if
// a hash is malformed). The payload is re-encoded: its bytes, and so the
// record's hash, are the original's as long as the message has no unknown
// fields.
absl::StatusOr<RecordedEvent> RecordFromEvent(const v1::Event& event);

// Checks the hash of every record that `events` (ascending) touch against
// its events' fields, reading through `whole_record` the events of a record
// they hold only in part. DATA_LOSS naming the position on a mismatch.
absl::Status CheckRecordHashes(
    const std::vector<RecordedEvent>& events,
    const std::function<absl::StatusOr<std::vector<RecordedEvent>>(
        uint64_t first, size_t count)>& whole_record);

class RemoteEventStore final : public EventStore {
 public:
  // Reads through `channel` (see clients/channel.h).
  explicit RemoteEventStore(std::shared_ptr<grpc::Channel> channel);

  absl::StatusOr<AppendResult> Append(const AppendRequest&) override;
  absl::Status Replicate(const std::vector<RecordedEvent>&) override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadForward(
      uint64_t from, size_t limit) const override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadBackward(
      uint64_t from, size_t limit) const override;
  absl::StatusOr<std::vector<RecordedEvent>> ReadStream(
      const std::string& stream_id, uint64_t from_version,
      size_t limit) const override;
  absl::StatusOr<std::optional<AppendResult>> FindRequest(
      const std::string& request_id) const override;
  LogHead Head() const override;
  uint64_t StreamVersion(const std::string& stream_id) const override;
  uint64_t WaitForPosition(uint64_t after, absl::Time deadline) const override;
  absl::Status SaveSnapshotParts(uint64_t position,
                                 const std::vector<SnapshotPart>& parts) override;
  // No parts: the audit tool rebuilds from the log alone.
  absl::StatusOr<uint64_t> ReadSnapshotParts(
      const SnapshotPartFilter& filter,
      const SnapshotPartVisitor& visit) const override;
  absl::StatusOr<std::optional<std::string>> ReadSnapshotPart(
      absl::string_view key) const override;
  void Close() override {}

 private:
  // Reads events from `from` whose account is `account_id` ("" = any),
  // checking their records' hashes and, reading every account, the links
  // between records.
  absl::StatusOr<std::vector<RecordedEvent>> Read(
      uint64_t from, size_t limit, const std::string& account_id) const;
  // Reads as Read does, checking the links only.
  absl::StatusOr<std::vector<RecordedEvent>> Fetch(
      uint64_t from, size_t limit, const std::string& account_id) const;

  std::unique_ptr<v1::EventLogService::Stub> stub_;
};

}  // namespace poledger

#endif  // POLEDGER_CLIENTS_REMOTE_EVENT_STORE_H_
