#include "clients/remote_event_store.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "clients/channel.h"
#include "eventstore/record_format.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "ledger/ledger.h"

namespace poledger {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("server: ", s.error_message()));
}

bool HashFromHex(const std::string& hex, Hash* out) {
  const std::string bytes = absl::HexStringToBytes(hex);
  if (hex.size() != 64 || bytes.size() != 32) return false;
  std::copy(bytes.begin(), bytes.end(), out->begin());
  return true;
}

}  // namespace

absl::StatusOr<RecordedEvent> RecordFromEvent(const v1::Event& e) {
  RecordedEvent r;
  r.position = e.position();
  r.stream_id = e.stream_id();
  r.stream_version = e.stream_version();
  r.event_type = e.event_type();
  r.payload = e.payload().SerializeAsString();
  r.event_id = e.event_id();
  r.request_id = e.request_id();
  r.correlation_id = e.correlation_id();
  r.actor = e.actor();
  r.timestamp = absl::FromUnixSeconds(e.time().seconds()) +
                absl::Nanoseconds(e.time().nanos());
  if (!HashFromHex(e.hash(), &r.hash) || !HashFromHex(e.prev_hash(), &r.prev_hash)) {
    return absl::DataLossError(
        absl::StrCat("event log record at position ", e.position(),
                     ": malformed hash from the server"));
  }
  r.record_position = e.record_position();
  r.record_events = e.record_events();
  return r;
}

absl::Status CheckRecordHashes(
    const std::vector<RecordedEvent>& events,
    const std::function<absl::StatusOr<std::vector<RecordedEvent>>(
        uint64_t first, size_t count)>& whole_record) {
  size_t i = 0;
  while (i < events.size()) {
    const RecordedEvent& head = events[i];
    const uint64_t first = head.record_first();
    const size_t count = head.record_last() - first + 1;
    size_t end = i + 1;
    while (end < events.size() && events[end].record_first() == first) ++end;
    // The events of the record this read holds; the rest read on their own.
    std::vector<RecordedEvent> fetched;
    record_format::RecordEvents record(&events[i], end - i);
    if (end - i != count || head.position != first) {
      ASSIGN_OR_RETURN(fetched, whole_record(first, count));
      record = record_format::RecordEvents(fetched);
    }
    const auto mismatch = [&](uint64_t position) {
      return absl::DataLossError(
          absl::StrCat("event log record at position ", position,
                       ": checksum mismatch (record hash)"));
    };
    if (record.size() != count || record.front().position != first) {
      return mismatch(first);
    }
    for (size_t k = i; k < end; ++k) {
      const RecordedEvent& e = events[k];
      if (e.position < first || e.position - first >= count ||
          !(record[e.position - first] == e)) {
        return mismatch(e.position);
      }
    }
    for (const RecordedEvent& e : record) {
      if (e.hash != head.hash || e.prev_hash != head.prev_hash) {
        return mismatch(e.position);
      }
    }
    if (record_format::ComputeRecordHash(record) != head.hash) {
      return mismatch(first);
    }
    i = end;
  }
  return absl::OkStatus();
}

RemoteEventStore::RemoteEventStore(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::EventLogService::NewStub(std::move(channel))) {}

absl::StatusOr<std::vector<RecordedEvent>> RemoteEventStore::Read(
    uint64_t from, size_t limit, const std::string& account_id) const {
  ASSIGN_OR_RETURN(std::vector<RecordedEvent> out,
                   Fetch(from, limit, account_id));
  RETURN_IF_ERROR(CheckRecordHashes(
      out, [this](uint64_t first, size_t count) {
        return Fetch(first, count, "");
      }));
  return out;
}

absl::StatusOr<std::vector<RecordedEvent>> RemoteEventStore::Fetch(
    uint64_t from, size_t limit, const std::string& account_id) const {
  std::vector<RecordedEvent> out;
  v1::ReadEventsRequest req;
  req.set_from_position(from);
  req.set_account_id(account_id);
  while (out.size() < limit) {
    req.set_page_size(static_cast<int>(std::min<size_t>(limit - out.size(), 1000)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::ReadEventsResponse resp;
    grpc::Status s = stub_->ReadEvents(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s);
    for (const v1::Event& e : resp.events()) {
      absl::StatusOr<RecordedEvent> r = RecordFromEvent(e);
      if (!r.ok()) return r.status();
      if (account_id.empty() && !out.empty() &&
          r->record_first() != out.back().record_first() &&
          r->prev_hash != out.back().hash) {
        return absl::DataLossError(
            absl::StrCat("event log record at position ", r->position,
                         ": chain link broken (previous hash does not match)"));
      }
      out.push_back(*std::move(r));
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  return out;
}

absl::StatusOr<std::vector<RecordedEvent>> RemoteEventStore::ReadForward(
    uint64_t from, size_t limit) const {
  return Read(std::max<uint64_t>(from, 1), limit, "");
}

absl::StatusOr<std::vector<RecordedEvent>> RemoteEventStore::ReadBackward(
    uint64_t from, size_t limit) const {
  const uint64_t to = std::min(from, Head().position);
  if (to == 0 || limit == 0) return std::vector<RecordedEvent>();
  const uint64_t start = to >= limit ? to - limit + 1 : 1;
  absl::StatusOr<std::vector<RecordedEvent>> out =
      Read(start, to - start + 1, "");
  if (out.ok()) std::reverse(out->begin(), out->end());
  return out;
}

absl::StatusOr<std::vector<RecordedEvent>> RemoteEventStore::ReadStream(
    const std::string& stream_id, uint64_t from_version, size_t limit) const {
  const std::string account = AccountOfStream(stream_id);
  if (account.empty()) {
    return absl::UnimplementedError("only account streams can be read remotely");
  }
  // The server filters by account; versions below from_version are skipped.
  std::vector<RecordedEvent> out;
  uint64_t from = 1;
  for (;;) {
    absl::StatusOr<std::vector<RecordedEvent>> batch = Read(from, 1000, account);
    if (!batch.ok()) return batch.status();
    if (batch->empty()) return out;
    for (RecordedEvent& r : *batch) {
      from = r.position + 1;
      if (r.stream_version < from_version) continue;
      out.push_back(std::move(r));
      if (out.size() == limit) return out;
    }
  }
}

absl::StatusOr<std::optional<AppendResult>> RemoteEventStore::FindRequest(
    const std::string&) const {
  return absl::UnimplementedError("the remote log is read-only");
}

LogHead RemoteEventStore::Head() const {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetLogDigestResponse resp;
  LogHead head;
  if (stub_->GetLogDigest(&ctx, v1::GetLogDigestRequest(), &resp).ok()) {
    head.position = resp.head_position();
    HashFromHex(resp.chain_hash(), &head.hash);
  }
  return head;
}

absl::StatusOr<AppendResult> RemoteEventStore::Append(const AppendRequest&) {
  return absl::UnimplementedError("the remote log is read-only");
}
absl::Status RemoteEventStore::Replicate(const std::vector<RecordedEvent>&) {
  return absl::UnimplementedError("the remote log is read-only");
}
uint64_t RemoteEventStore::StreamVersion(const std::string&) const { return 0; }
uint64_t RemoteEventStore::WaitForPosition(uint64_t, absl::Time) const {
  return Head().position;
}
absl::Status RemoteEventStore::SaveSnapshotParts(
    uint64_t, const std::vector<SnapshotPart>&) {
  return absl::UnimplementedError("the remote log is read-only");
}
absl::StatusOr<uint64_t> RemoteEventStore::ReadSnapshotParts(
    const SnapshotPartFilter&, const SnapshotPartVisitor&) const {
  return uint64_t{0};
}
absl::StatusOr<std::optional<std::string>> RemoteEventStore::ReadSnapshotPart(
    absl::string_view) const {
  return std::nullopt;
}

}  // namespace poledger
