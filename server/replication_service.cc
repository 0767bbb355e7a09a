#include "server/replication_service.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/thread_name.h"
#include "core/errors.h"
#include "eventstore/record_format.h"
#include "server/log.h"
#include "server/status_mapping.h"

namespace poledger {
namespace {

// Records sent in one message at most.
constexpr size_t kBatchRecords = 1000;
// An idle stream still gets a message this often.
constexpr absl::Duration kIdle = absl::Seconds(1);
// While records wait for their commit, how often the commit is looked at
// between new records (new records are sent at once): how late, at most,
// a follower hears that records it stores are committed.
constexpr absl::Duration kCommitPoll = absl::Milliseconds(2);

absl::Status ValidateNode(absl::string_view node) {
  if (node.empty() || node.size() > 64) {
    return core::InvalidField("hello.node", "must be 1 to 64 characters");
  }
  for (char c : node) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_' && c != '.' && c != ':') {
      return core::InvalidField(
          "hello.node", "may hold only letters, digits, '-', '_', '.', ':'");
    }
  }
  return absl::OkStatus();
}

}  // namespace

grpc::Status ReplicationServiceImpl::Replicate(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ReplicateResponse, v1::ReplicateRequest>*
        stream) {
  EventStore* const log = log_.load(std::memory_order_acquire);
  if (log == nullptr) return NotReady();
  v1::ReplicateRequest first;
  if (!stream->Read(&first)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "no hello");
  }
  if (auto denied = Denied(*ctx_, context, first)) return *denied;
  if (!first.has_hello()) {
    return ToGrpcStatus(core::InvalidField(
        "hello", "the first message of a stream must be a hello"));
  }
  const v1::ReplicaHello& hello = first.hello();
  if (absl::Status valid = ValidateNode(hello.node()); !valid.ok()) {
    return ToGrpcStatus(valid);
  }
  const RoleState role = ctx_->role.state();
  const uint64_t term = ctx_->serving_term();
  if (term == 0) {
    return ToGrpcStatus(core::WithMetadata(
        core::DomainError(absl::StatusCode::kFailedPrecondition,
                          core::reason::kReadOnlyReplica,
                          absl::StrCat("this server does not lead; follow ",
                                       role.leader)),
        "leader", role.leader));
  }
  // The follower's head must be a record of this log.
  const uint64_t head = hello.head_position();
  if (head > 0) {
    absl::StatusOr<std::vector<RecordedEvent>> at = log->ReadForward(head, 1);
    if (!at.ok()) return ToGrpcStatus(at.status());
    const bool same =
        !at->empty() && at->front().position == head &&
        hello.head_hash() ==
            std::string(at->front().hash.begin(), at->front().hash.end());
    if (!same) {
      return ToGrpcStatus(core::DomainError(
          absl::StatusCode::kFailedPrecondition, core::reason::kLogsDiffer,
          absl::StrCat("the follower's head (position ", head,
                       ") is not a record of this leader's log (head ",
                       log->Head().position, ")")));
    }
  }
  const std::string peer = context->peer();
  int id = 0;
  if (tracker_ != nullptr) {
    id = tracker_->Join({hello.node(), peer, hello.synchronous(), head,
                         absl::InfinitePast()});
    tracker_->Ack(id, head, absl::Now());
  }
  log::Info("follower_joined",
            absl::StrCat(hello.node(), " follows from position ", head,
                         hello.synchronous() ? " (synchronous)" : ""),
            {{"node", hello.node()},
             {"peer", peer},
             {"head", head},
             {"synchronous", hello.synchronous()}});
  // The follower's acknowledgements, read on a thread of their own.
  std::atomic<bool> ended{false};
  std::thread acks([&] {
    SetCurrentThreadName("pl-repl-acks");
    v1::ReplicateRequest request;
    while (stream->Read(&request)) {
      if (request.has_ack() && tracker_ != nullptr) {
        tracker_->Ack(id, request.ack().durable_position(), absl::Now());
      }
    }
    ended = true;
  });
  uint64_t next = head + 1;
  uint64_t sent_committed = 0;
  uint64_t whole_through = head;
  absl::Time sent_at = absl::InfinitePast();
  std::string why = "the follower ended the stream";
  while (!ended && !context->IsCancelled() && !stopping_) {
    if (ctx_->serving_term() != term) {
      why = "this server no longer leads";
      break;
    }
    const absl::Time now = absl::Now();
    // New records go out at once. While some wait for their commit, the
    // commit is looked at every kCommitPoll too, so that followers learn it
    // promptly.
    const uint64_t committed_now = Committed(*log);
    if (committed_now == sent_committed) {
      log->WaitForPosition(
          next - 1, committed_now < next - 1
                        ? now + kCommitPoll
                        : std::min(now + kIdle, sent_at + kIdle));
    }
    // The head ends a group commit, so an append: reading no further than
    // it, a batch that reaches it ends whole.
    const uint64_t head_now = log->Head().position;
    absl::StatusOr<std::vector<RecordedEvent>> records =
        head_now < next ? std::vector<RecordedEvent>()
                        : log->ReadForward(
                              next, static_cast<size_t>(std::min<uint64_t>(
                                        kBatchRecords, head_now - next + 1)));
    // Whole records only: a read its limit cut ends before the cut record,
    // or, if that record is the first, reads all of it.
    if (records.ok() && !records->empty()) {
      const size_t whole = record_format::WholeRecordEvents(*records);
      if (whole > 0) {
        records->resize(whole);
      } else {
        records = log->ReadForward(next, records->back().record_events);
      }
    }
    if (!records.ok()) {
      why = records.status().ToString();
      break;
    }
    const uint64_t committed = Committed(*log);
    if (records->empty() && committed == sent_committed &&
        absl::Now() - sent_at < kIdle) {
      continue;
    }
    v1::ReplicateResponse response;
    absl::Status framed = record_format::ForEachRecord(
        *records, [&](size_t first, size_t count) {
          v1::LogRecord* out = response.add_records();
          out->set_position((*records)[first].position);
          out->set_value(record_format::EncodeRecordValue(
              record_format::RecordEvents(&(*records)[first], count)));
          return absl::OkStatus();
        });
    if (!framed.ok()) {
      why = framed.ToString();
      break;
    }
    if (!records->empty()) {
      absl::StatusOr<std::vector<KeyEntry>> keys = log->KeysAddedIn(
          records->front().position, records->back().position);
      if (!keys.ok() && !absl::IsUnimplemented(keys.status())) {
        why = keys.status().ToString();
        break;
      }
      if (keys.ok()) {
        for (KeyEntry& key : *keys) {
          v1::LogKey* out = response.add_keys();
          out->set_id(std::move(key.id));
          out->set_value(std::move(key.value));
        }
      }
    }
    response.set_committed_position(committed);
    response.set_head_position(log->Head().position);
    response.set_term(term);
    if (!records->empty() && records->back().position == head_now) {
      whole_through = head_now;
    }
    response.set_whole_through(whole_through);
    if (!stream->Write(response)) break;
    if (!records->empty()) next = records->back().position + 1;
    sent_committed = committed;
    sent_at = absl::Now();
  }
  context->TryCancel();
  acks.join();
  if (tracker_ != nullptr) tracker_->Leave(id);
  log::Info("follower_left", absl::StrCat(hello.node(), ": ", why),
            {{"node", hello.node()}, {"peer", peer}, {"sent_through", next - 1}});
  return grpc::Status::OK;
}

}  // namespace poledger
