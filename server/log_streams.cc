// The server-streaming methods: SubscribeEvents and SubscribeNotifications.
//
// Each subscriber catches up from the log in bounded batches, sends a
// CaughtUp marker when it reaches the head, then waits for new records
// without polling (EventStore::WaitForPosition) and sends heartbeats when
// idle. A slow subscriber only blocks its own handler in Write (gRPC flow
// control): it holds no lock the writer needs and buffers at most one batch,
// so it can neither stall appends nor grow memory. Every end of a stream
// carries an explicit status, mapped as unary calls' are: CANCELLED when
// the client went away, UNAVAILABLE when the server shuts down (resume
// after the last position received) or is still loading (reason
// STARTING), DATA_LOSS naming the position of a record that does not
// decode, or the store's error.
#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "api/convert.h"
#include "core/errors.h"
#include "core/proto_time.h"
#include "server/services.h"
#include "server/status_mapping.h"

namespace poledger {
namespace {

constexpr size_t kBatch = 256;
// Longest a waiting stream goes without checking for cancellation.
constexpr absl::Duration kPollSlice = absl::Milliseconds(200);

absl::Status ClientGone() {
  return absl::CancelledError("client stopped reading");
}

// Calls `emit` for each record after `after`, forever, until the client
// cancels, the server shuts down, `emit` fails (ClientGone() when a write
// fails, DATA_LOSS for a record that does not decode) or the store fails.
// `caught_up` and `heartbeat` write those markers with the head position.
grpc::Status FollowLog(
    ServiceContext* ctx, grpc::ServerContext* context, uint64_t after,
    const std::function<absl::Status(const RecordedEvent&)>& emit,
    const std::function<bool(uint64_t)>& caught_up,
    const std::function<bool(uint64_t)>& heartbeat) {
  if (ctx->ledger() == nullptr) return NotReady();
  EventStore* store = ctx->ledger()->store();
  uint64_t next = after + 1;
  bool sent_caught_up = false;
  absl::Time last_sent = absl::Now();
  for (;;) {
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled");
    }
    if (ctx->shutting_down != nullptr && ctx->shutting_down->HasBeenNotified()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("server is shutting down; resume after "
                                       "position ", next - 1));
    }
    absl::StatusOr<std::vector<RecordedEvent>> batch =
        store->ReadForward(next, kBatch);
    if (!batch.ok()) return ToGrpcStatus(batch.status());
    for (const RecordedEvent& r : *batch) {
      next = r.position + 1;
      if (absl::Status emitted = emit(r); !emitted.ok()) {
        return ToGrpcStatus(emitted);
      }
      last_sent = absl::Now();
    }
    if (batch->size() == kBatch) continue;  // More to catch up on.
    if (!sent_caught_up) {
      if (!caught_up(next - 1)) return ToGrpcStatus(ClientGone());
      sent_caught_up = true;
      last_sent = absl::Now();
    }
    const absl::Time heartbeat_at = last_sent + ctx->heartbeat_interval;
    const absl::Time wake = std::min(heartbeat_at, absl::Now() + kPollSlice);
    const uint64_t head = store->WaitForPosition(next - 1, wake);
    if (head < next && absl::Now() >= heartbeat_at) {
      if (!heartbeat(head)) return ToGrpcStatus(ClientGone());
      last_sent = absl::Now();
    }
  }
}

absl::Status CheckAccountFilter(const std::string& account_id) {
  return account_id.empty() ? absl::OkStatus() : ValidateAccountId(account_id);
}

}  // namespace

grpc::Status EventLogServiceImpl::SubscribeEvents(
    grpc::ServerContext* context, const v1::SubscribeEventsRequest* request,
    grpc::ServerWriter<v1::SubscribeEventsResponse>* writer) {
  if (absl::Status s = CheckAccountFilter(request->account_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  const auto& types = request->event_types();
  return FollowLog(
      ctx_, context, request->after_position(),
      [&](const RecordedEvent& r) {
        if (!request->account_id().empty() &&
            AccountOfStream(r.stream_id) != request->account_id()) {
          return absl::OkStatus();
        }
        if (!types.empty() &&
            std::find(types.begin(), types.end(), r.event_type) == types.end()) {
          return absl::OkStatus();
        }
        v1::SubscribeEventsResponse response;
        absl::StatusOr<v1::Event> event = convert::EventOf(r);
        if (!event.ok()) return event.status();
        *response.mutable_event() = std::move(*event);
        return writer->Write(response) ? absl::OkStatus() : ClientGone();
      },
      [&](uint64_t head) {
        v1::SubscribeEventsResponse response;
        response.mutable_caught_up()->set_head_position(head);
        return writer->Write(response);
      },
      [&](uint64_t head) {
        v1::SubscribeEventsResponse response;
        response.mutable_heartbeat()->set_head_position(head);
        *response.mutable_heartbeat()->mutable_time() =
            core::ToProtoTime(absl::Now());
        return writer->Write(response);
      });
}

grpc::Status NotificationServiceImpl::SubscribeNotifications(
    grpc::ServerContext* context,
    const v1::SubscribeNotificationsRequest* request,
    grpc::ServerWriter<v1::SubscribeNotificationsResponse>* writer) {
  if (absl::Status s = CheckAccountFilter(request->account_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  return FollowLog(
      ctx_, context, request->after_position(),
      [&](const RecordedEvent& r) {
        if (r.event_type != "notification_raised") return absl::OkStatus();
        const std::string account = AccountOfStream(r.stream_id);
        if (!request->account_id().empty() && account != request->account_id()) {
          return absl::OkStatus();
        }
        v1::AccountEvent event;
        if (!event.ParseFromString(r.payload) ||
            !event.has_notification_raised()) {
          return absl::DataLossError(absl::StrCat(
              "event at position ", r.position, " is not a notification"));
        }
        v1::SubscribeNotificationsResponse response;
        v1::Notification* n = response.mutable_notification();
        n->set_position(r.position);
        n->set_account_id(account);
        *n->mutable_time() = core::ToProtoTime(r.timestamp);
        *n->mutable_notification() = event.notification_raised();
        return writer->Write(response) ? absl::OkStatus() : ClientGone();
      },
      [&](uint64_t head) {
        v1::SubscribeNotificationsResponse response;
        response.mutable_caught_up()->set_head_position(head);
        return writer->Write(response);
      },
      [&](uint64_t head) {
        v1::SubscribeNotificationsResponse response;
        response.mutable_heartbeat()->set_head_position(head);
        *response.mutable_heartbeat()->mutable_time() =
            core::ToProtoTime(absl::Now());
        return writer->Write(response);
      });
}

}  // namespace poledger
