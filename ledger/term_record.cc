#include "ledger/term_record.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "poledger/v1/events.pb.h"

namespace poledger {

AppendRequest TermRecord(uint64_t term, const std::string& node,
                         const std::string& address, absl::Time now) {
  v1::TermBegan began;
  began.set_term(term);
  began.set_node(node);
  began.set_address(address);
  AppendRequest request;
  StreamAppend& stream = request.streams.emplace_back();
  stream.stream_id = kTermStream;
  stream.expected_version = ExpectedVersion::Any();
  stream.events.push_back({kTermBeganType, began.SerializeAsString(), ""});
  request.metadata.actor = node;
  request.metadata.timestamp = now;
  return request;
}

absl::StatusOr<std::optional<TermInfo>> TermOf(const RecordedEvent& record) {
  if (record.stream_id != kTermStream) return std::nullopt;
  v1::TermBegan began;
  if (record.event_type != kTermBeganType ||
      !began.ParseFromString(record.payload)) {
    return absl::DataLossError(absl::StrCat(
        "the record at position ", record.position, " is not a term record"));
  }
  return TermInfo{began.term(), began.node(), began.address(), record.position,
                  record.timestamp};
}

absl::StatusOr<TermInfo> LastTerm(const EventStore& log) {
  const uint64_t version = log.StreamVersion(kTermStream);
  if (version == 0) return TermInfo{};
  ASSIGN_OR_RETURN(std::vector<RecordedEvent> last,
                   log.ReadStream(kTermStream, version, 1));
  if (last.empty()) return TermInfo{};
  ASSIGN_OR_RETURN(std::optional<TermInfo> term, TermOf(last.front()));
  return term.value_or(TermInfo{});
}

absl::StatusOr<std::vector<TermInfo>> ListTerms(const EventStore& log) {
  std::vector<TermInfo> terms;
  for (uint64_t version = 1;;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                     log.ReadStream(kTermStream, version, 1000));
    if (records.empty()) break;
    for (const RecordedEvent& record : records) {
      ASSIGN_OR_RETURN(std::optional<TermInfo> term, TermOf(record));
      if (term.has_value()) terms.push_back(*term);
      version = record.stream_version + 1;
    }
  }
  return terms;
}

}  // namespace poledger
