// The server-streaming methods, SubscribeEvents and SubscribeNotifications,
// on gRPC's callback API: each call is a LogSubscription (see
// subscription.h) fed by the server's LogTail, with no thread of its own.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "api/convert.h"
#include "core/errors.h"
#include "core/proto_time.h"
#include "server/log.h"
#include "server/log_limit.h"
#include "server/log_tail.h"
#include "server/services.h"
#include "server/status_mapping.h"
#include "server/subscription.h"

namespace poledger {
namespace {

// A stream refused before it starts (bad request, still loading).
template <typename Response>
class Refused final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit Refused(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

absl::Status CheckAccountFilter(const std::string& account_id) {
  return account_id.empty() ? absl::OkStatus() : ValidateAccountId(account_id);
}

template <typename Response>
Response CaughtUp(uint64_t head) {
  Response r;
  r.mutable_caught_up()->set_head_position(head);
  return r;
}

template <typename Response>
Response Heartbeat(uint64_t head) {
  Response r;
  r.mutable_heartbeat()->set_head_position(head);
  *r.mutable_heartbeat()->mutable_time() = core::ToProtoTime(absl::Now());
  return r;
}

// The caller a stream is counted against: its identity, or on a server
// without identities its host.
std::string StreamCaller(const ServiceContext& ctx,
                         const grpc::ServerContextBase* context) {
  return ctx.require_identity ? CallerIdentity(ctx, context)
                              : CallerHost(ctx, context);
}

// Starts a subscription of `account` ("" every account) after `after`
// with `hooks` (its markers, access checks and certificate expiry filled in
// here), or refuses it: a malformed account filter, a server still
// loading, a caller with all its streams open. `request` is the call's,
// authorized under policy `generation`.
template <typename Response>
grpc::ServerWriteReactor<Response>* Subscribe(
    ServiceContext* ctx, grpc::CallbackServerContext* context,
    const google::protobuf::Message& request, uint64_t generation,
    const char* method, std::atomic<int64_t>* open,
    const std::string& account, uint64_t after,
    typename LogSubscription<Response>::Hooks hooks) {
  if (absl::Status s = CheckAccountFilter(account); !s.ok()) {
    return new Refused<Response>(ToGrpcStatus(s));
  }
  LogTail* tail = ctx->tail.load(std::memory_order_acquire);
  if (ctx->ledger() == nullptr || tail == nullptr) {
    return new Refused<Response>(NotReady());
  }
  const std::string caller = StreamCaller(*ctx, context);
  if (!ctx->stream_slots.TryTake(caller, ctx->max_streams_per_identity)) {
    ctx->streams_refused.fetch_add(1);
    log::WriteLimited(
        log::Level::kWarning, "stream_refused",
        absl::StrCat("stream_refused|", method, "|", caller),
        absl::StrCat("refused ", method, ": ", caller, " has ",
                     ctx->max_streams_per_identity, " streams open"),
        {{"method", method}, {"identity", caller},
         {"peer", context->peer()}});
    return new Refused<Response>(ToGrpcStatus(core::WithMetadata(
        core::DomainError(
            absl::StatusCode::kResourceExhausted, core::reason::kTooManyStreams,
            absl::StrCat("this caller already has ",
                         ctx->max_streams_per_identity,
                         " streams open (--max-streams-per-identity); close "
                         "one first")),
        "limit", absl::StrCat(ctx->max_streams_per_identity))));
  }
  hooks.caught_up = CaughtUp<Response>;
  hooks.heartbeat = Heartbeat<Response>;
  // Access is checked again on every policy reload; a copy of the request
  // outlives nothing it needs (the context lives until the call is done).
  std::shared_ptr<google::protobuf::Message> kept(request.New());
  kept->CopyFrom(request);
  hooks.recheck = [ctx, context, kept, method, caller]() -> absl::Status {
    absl::StatusOr<std::string> allowed = Authorize(*ctx, context, *kept);
    if (allowed.ok()) return absl::OkStatus();
    ctx->streams_revoked.fetch_add(1);
    log::Warning("stream_revoked",
                 absl::StrCat(method, " ended: its caller's access was taken "
                                      "away by a policy reload"),
                 {{"method", method},
                  {"identity", caller},
                  {"code", absl::StatusCodeToString(allowed.status().code())}});
    return allowed.status();
  };
  hooks.policy_generation = [ctx] { return ctx->policy_generation.load(); };
  hooks.authorized_generation = generation;
  if (ctx->require_identity) {
    hooks.expires = CallerCertificateExpiry(*ctx, context);
    hooks.expired = [ctx, method, caller]() -> absl::Status {
      ctx->streams_expired.fetch_add(1);
      log::Warning("stream_expired",
                   absl::StrCat(method, " ended: its caller's client "
                                        "certificate expired"),
                   {{"method", method}, {"identity", caller}});
      return core::DomainError(absl::StatusCode::kUnauthenticated,
                               core::reason::kCertificateExpired,
                               "the client certificate of this stream expired");
    };
  }
  log::Info("stream_opened", absl::StrCat(method, " opened"),
            {{"method", method}, {"account", account}, {"after", after}});
  open->fetch_add(1);
  hooks.on_done = [ctx, method, account, open, caller](uint64_t last_sent) {
    open->fetch_sub(1);
    ctx->stream_slots.Release(caller);
    log::Info(
        "stream_closed", absl::StrCat(method, " closed"),
        {{"method", method}, {"account", account}, {"last_sent", last_sent}});
  };
  return LogSubscription<Response>::Start(
      ctx->ledger()->store(), tail, account, after, ctx->heartbeat_interval,
      ctx->stream_queue_records, std::move(hooks));
}

}  // namespace

grpc::ServerWriteReactor<v1::SubscribeEventsResponse>*
EventLogServiceImpl::SubscribeEvents(
    grpc::CallbackServerContext* context,
    const v1::SubscribeEventsRequest* request) {
  using Response = v1::SubscribeEventsResponse;
  const uint64_t generation = ctx_->policy_generation.load();
  if (auto denied = Denied(*ctx_, context, *request)) {
    return new Refused<Response>(*denied);
  }
  const std::string account = request->account_id();
  const std::vector<std::string> types(request->event_types().begin(),
                                       request->event_types().end());
  LogSubscription<Response>::Hooks hooks;
  hooks.wants = [account, types](const RecordedEvent& r) {
    if (!account.empty() && AccountOfStream(r.stream_id) != account)
      return false;
    return types.empty() ||
           std::find(types.begin(), types.end(), r.event_type) != types.end();
  };
  hooks.render = [](const RecordedEvent& r) -> absl::StatusOr<Response> {
    absl::StatusOr<v1::Event> event = convert::EventOf(r);
    if (!event.ok()) return event.status();
    Response response;
    *response.mutable_event() = *std::move(event);
    return response;
  };
  return Subscribe<Response>(ctx_, context, *request, generation,
                            "EventLogService.SubscribeEvents",
                             &ctx_->open_event_streams, account,
                             request->after_position(), std::move(hooks));
}

grpc::ServerWriteReactor<v1::SubscribeNotificationsResponse>*
NotificationServiceImpl::SubscribeNotifications(
    grpc::CallbackServerContext* context,
    const v1::SubscribeNotificationsRequest* request) {
  using Response = v1::SubscribeNotificationsResponse;
  const uint64_t generation = ctx_->policy_generation.load();
  if (auto denied = Denied(*ctx_, context, *request)) {
    return new Refused<Response>(*denied);
  }
  const std::string account = request->account_id();
  LogSubscription<Response>::Hooks hooks;
  hooks.wants = [account](const RecordedEvent& r) {
    return r.event_type == "notification_raised" &&
           (account.empty() || AccountOfStream(r.stream_id) == account);
  };
  const PersonalData* keys = ctx_->personal_data;
  hooks.render = [keys](const RecordedEvent& r) -> absl::StatusOr<Response> {
    v1::AccountEvent event;
    if (!event.ParseFromString(r.payload) || !event.has_notification_raised()) {
      return absl::DataLossError(absl::StrCat("event at position ", r.position,
                                              " is not a notification"));
    }
    if (keys != nullptr) {
      RETURN_IF_ERROR(keys->Open(AccountOfStream(r.stream_id), event));
    }
    Response response;
    *response.mutable_notification() =
        convert::NotificationOf(AccountOfStream(r.stream_id), r.position,
                                r.timestamp, event.notification_raised());
    return response;
  };
  return Subscribe<Response>(ctx_, context, *request, generation,
                             "NotificationService.SubscribeNotifications",
                             &ctx_->open_notification_streams, account,
                             request->after_position(), std::move(hooks));
}

}  // namespace poledger
