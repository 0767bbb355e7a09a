#include "server/services.h"

#include <algorithm>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "api/convert.h"
#include "api/error_model.h"
#include "api/field_paths.h"
#include "api/page_token.h"
#include "base/status_macros.h"
#include "base/thread_name.h"
#include "core/decide.h"
#include "core/errors.h"
#include "core/matching.h"
#include "core/proto_time.h"
#include "eventstore/committed_store.h"
#include "eventstore/positions.h"
#include "openssl/crypto.h"
#include "server/commit_tracker.h"
#include "server/erasure.h"
#include "server/log.h"
#include "server/log_limit.h"
#include "server/log_tail.h"
#include "server/status_mapping.h"
#include "server/tls.h"

namespace poledger {

grpc::Status NotReady() {
  return ToGrpcStatus(core::DomainError(
      absl::StatusCode::kUnavailable, core::reason::kStarting,
      "the server is still loading its event log; retry shortly"));
}

namespace {

// The identity the HTTP gateway vouches for, if the call is the gateway's.
std::optional<std::string> GatewayIdentity(
    const ServiceContext& ctx, const grpc::ServerContextBase* context) {
  if (ctx.gateway_secret.empty()) return std::nullopt;
  const auto& metadata = context->client_metadata();
  auto secret = metadata.find(kGatewaySecretHeader);
  if (secret == metadata.end() ||
      secret->second.size() != ctx.gateway_secret.size() ||
      CRYPTO_memcmp(secret->second.data(), ctx.gateway_secret.data(),
                    ctx.gateway_secret.size()) != 0) {
    return std::nullopt;
  }
  auto identity = metadata.find(kGatewayIdentityHeader);
  if (identity == metadata.end()) return std::string();
  return std::string(identity->second.data(), identity->second.size());
}

// For a call from a trusted proxy (its certificate's `identity`): the DER
// certificate it forwards for its caller, "" if none. nullopt for a call
// from anyone else.
std::optional<std::string> ForwardedCertificate(
    const ServiceContext& ctx, const std::string& identity,
    const grpc::ServerContextBase* context) {
  if (identity.empty() ||
      std::find(ctx.trusted_proxies.begin(), ctx.trusted_proxies.end(),
                identity) == ctx.trusted_proxies.end()) {
    return std::nullopt;
  }
  auto header = context->client_metadata().find(kForwardedCertHeader);
  std::string der;
  if (header == context->client_metadata().end() ||
      !absl::Base64Unescape(
          absl::string_view(header->second.data(), header->second.size()),
          &der)) {
    return std::string();
  }
  return der;
}

}  // namespace

std::string CallerIdentity(const ServiceContext& ctx,
                           const grpc::ServerContextBase* context) {
  if (std::optional<std::string> via_gateway = GatewayIdentity(ctx, context)) {
    return *std::move(via_gateway);
  }
  std::string identity = IdentityOf(context);
  std::optional<std::string> forwarded = ForwardedCertificate(ctx, identity, context);
  if (!forwarded.has_value()) return identity;
  // "": the proxy's caller presented no certificate.
  return forwarded->empty() ? "" : IdentityOfDer(*forwarded);
}

std::string CallerHost(const ServiceContext& ctx,
                       const grpc::ServerContextBase* context) {
  if (GatewayIdentity(ctx, context).has_value()) {
    auto peer = context->client_metadata().find(kGatewayPeerHeader);
    if (peer != context->client_metadata().end()) {
      return absl::StrCat(
          "http:", log::PeerHost(absl::string_view(peer->second.data(),
                                                   peer->second.size())));
    }
  }
  return log::PeerHost(context->peer());
}

std::optional<absl::Time> CallerCertificateExpiry(
    const ServiceContext& ctx, const grpc::ServerContextBase* context) {
  if (GatewayIdentity(ctx, context).has_value()) {
    auto expiry = context->client_metadata().find(kGatewayCertExpiryHeader);
    int64_t seconds = 0;
    if (expiry == context->client_metadata().end() ||
        !absl::SimpleAtoi(absl::string_view(expiry->second.data(),
                                            expiry->second.size()),
                          &seconds)) {
      return std::nullopt;
    }
    return absl::FromUnixSeconds(seconds);
  }
  std::optional<std::string> forwarded =
      ForwardedCertificate(ctx, IdentityOf(context), context);
  if (forwarded.has_value()) {
    if (forwarded->empty()) return std::nullopt;
    return CertificateExpiryOfDer(*forwarded);
  }
  return CertificateExpiryOf(context);
}

absl::Status CheckAccountRouting(const ServiceContext& ctx,
                                 const grpc::ServerContextBase* context,
                                 const std::string& account_id) {
  auto header = context->client_metadata().find(kAccountHeader);
  if (header != context->client_metadata().end() &&
      absl::string_view(header->second.data(), header->second.size()) !=
          account_id) {
    return core::InvalidField(
        "account_id",
        absl::StrCat("differs from the ", kAccountHeader, " header (",
                     core::Quote(absl::string_view(header->second.data(),
                                                   header->second.size())),
                     ")"));
  }
  if (!ctx.shard.Owns(account_id)) {
    const uint32_t owner = core::ShardOf(account_id, ctx.shard.count);
    return core::WithMetadata(
        core::WithMetadata(
            core::DomainError(
                absl::StatusCode::kFailedPrecondition,
                core::reason::kWrongShard,
                absl::StrCat("account ", core::Quote(account_id),
                             " belongs to shard ", owner, " of ",
                             ctx.shard.count, ", not to this server's shard ",
                             ctx.shard.index, ": send it there (", kShardHeader,
                             ": ", owner, ", or the header ", kAccountHeader,
                             " through the proxy)")),
            "owning_shard", absl::StrCat(owner)),
        "shard_count", absl::StrCat(ctx.shard.count));
  }
  return absl::OkStatus();
}

namespace {

// Whether the method taking `request` writes to the log, or decides as a
// write would (dry runs, the manual clock): a replica refuses these.
bool ChangesTheLog(const google::protobuf::Descriptor* request) {
  if (request == v1::SetTimeRequest::descriptor() ||
      request == v1::AdvanceTimeRequest::descriptor() ||
      request == v1::ErasePersonalDataRequest::descriptor()) {
    return true;
  }
  const api::MethodRule* rule = api::RuleFor(request);
  return rule != nullptr && (rule->access == api::Access::kPurchase ||
                             rule->access == api::Access::kBill);
}

}  // namespace

absl::StatusOr<std::string> Authorize(
    const ServiceContext& ctx, const grpc::ServerContextBase* context,
    const google::protobuf::Message& request) {
  // A plaintext server has no client certificates to read.
  std::string identity =
      ctx.require_identity ? CallerIdentity(ctx, context) : "";
  if (identity.empty() && ctx.require_identity) {
    return core::DomainError(
        absl::StatusCode::kUnauthenticated, core::reason::kUnauthenticated,
        "this server needs a client certificate signed by its client CA");
  }
  if (ctx.require_identity && GatewayIdentity(ctx, context).has_value()) {
    auto token = context->client_metadata().find(kGatewayTokenHashHeader);
    if (token != context->client_metadata().end() &&
        ctx.authorizer()->IdentityOfTokenHash(std::string(
            token->second.data(), token->second.size())) != identity) {
      // The gateway checked the token: only a reload since took it away.
      return core::DomainError(
          absl::StatusCode::kPermissionDenied, core::reason::kPermissionDenied,
          "a policy reload removed the bearer token of this call");
    }
  }
  std::string account;
  const google::protobuf::FieldDescriptor* field =
      request.GetDescriptor()->FindFieldByName("account_id");
  if (field != nullptr &&
      field->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
    account = request.GetReflection()->GetString(request, field);
  }
  if (!account.empty())
    RETURN_IF_ERROR(CheckAccountRouting(ctx, context, account));
  // A batch's items name their own accounts: each is checked as it is
  // taken; the call needs the access on some account.
  absl::Status allowed =
      request.GetDescriptor() == v1::BatchRecordInvoicesRequest::descriptor()
          ? ctx.authorizer()->CheckSomeAccount(identity,
                                               request.GetDescriptor())
          : ctx.authorizer()->Check(identity, request.GetDescriptor(), account);
  if (!allowed.ok()) return allowed;
  if (ChangesTheLog(request.GetDescriptor())) {
    if (const RoleState role = ctx.role.state(); role.kind != RoleKind::kLeader) {
      if (ctx.failover) {
        return core::WithMetadata(
            core::WithMetadata(
                core::DomainError(
                    absl::StatusCode::kUnavailable, core::reason::kNotLeader,
                    role.leader.empty()
                        ? std::string("this node does not lead its shard and "
                                      "no leader is known (a failover): "
                                      "retry")
                        : absl::StrCat("this node does not lead its shard; ",
                                       role.leader, " does: retry")),
                "leader", role.leader),
            core::kRetryDelayMsKey, "500");
      }
      return core::WithMetadata(
          core::DomainError(
              absl::StatusCode::kFailedPrecondition,
              core::reason::kReadOnlyReplica,
              absl::StrCat("this server is a read replica of ", role.leader,
                           ": send writes (and dry runs) to the leader")),
          "leader", role.leader);
    }
  }
  return identity;
}

std::optional<grpc::Status> Denied(const ServiceContext& ctx,
                                   const grpc::ServerContextBase* context,
                                   const google::protobuf::Message& request) {
  absl::StatusOr<std::string> identity = Authorize(ctx, context, request);
  if (identity.ok()) return std::nullopt;
  const api::MethodRule* rule = api::RuleFor(request.GetDescriptor());
  const absl::StatusCode code = identity.status().code();
  if (code != absl::StatusCode::kUnauthenticated &&
      code != absl::StatusCode::kPermissionDenied) {
    // Sent to the wrong shard, or a header that disagrees with the body: a
    // client's routing mistake, not a security event.
    log::WriteLimited(log::Level::kInfo, "call_misrouted",
              absl::StrCat("call_misrouted|", rule != nullptr ? rule->method : "",
                           "|", absl::StatusCodeToString(code), "|",
                           core::ReasonOf(identity.status()), "|",
                           CallerHost(ctx, context)),
              absl::StrCat("refused ",
                           rule != nullptr ? rule->method
                                           : request.GetDescriptor()->name(),
                           ": ", identity.status().message()),
              {{"code", absl::StatusCodeToString(code)},
               {"reason", core::ReasonOf(identity.status())},
               {"method", rule != nullptr ? rule->method : ""},
               {"peer", context->peer()}});
    return ToGrpcStatus(identity.status());
  }
  const std::string caller = CallerIdentity(ctx, context);
  log::WriteLimited(
      log::Level::kWarning, "call_refused",
      absl::StrCat("call_refused|", rule != nullptr ? rule->method : "", "|",
                   absl::StatusCodeToString(identity.status().code()), "|",
                   caller, "|", CallerHost(ctx, context)),
      absl::StrCat(
          "refused ",
          rule != nullptr ? rule->method : request.GetDescriptor()->name(),
          ": ", absl::StatusCodeToString(identity.status().code())),
      {{"code", absl::StatusCodeToString(identity.status().code())},
       {"identity", caller},
       {"method", rule != nullptr ? rule->method : ""},
       {"peer", context->peer()}});
  return ToGrpcStatus(identity.status());
}

namespace {

// Runs a handler body returning absl::StatusOr<Response> and maps the
// status: the one helper every unary method goes through.
template <typename Response, typename Fn>
grpc::Status Unary(const ServiceContext* ctx, Response* response, Fn&& fn) {
  if (ctx->ledger() == nullptr) return NotReady();
  absl::StatusOr<Response> result = fn();
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

// Finishes a callback-API call with `status`.
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context,
                                const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

std::string Metadata(const grpc::ServerContextBase* context, const char* key) {
  auto it = context->client_metadata().find(key);
  if (it == context->client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

RequestContext ContextOf(const ServiceContext& service,
                         const grpc::ServerContextBase* context,
                         const std::string& account_id,
                         const std::string& request_id) {
  RequestContext ctx;
  ctx.account_id = account_id;
  ctx.request_id = request_id;
  // Who did it: the caller's identity, never a value the caller sends.
  if (service.require_identity) ctx.actor = CallerIdentity(service, context);
  if (ctx.actor.empty()) ctx.actor = "anonymous";
  ctx.correlation_id = Metadata(context, "x-correlation-id");
  return ctx;
}

absl::StatusOr<int> PageSize(int32_t requested) {
  if (requested < 0) {
    return core::InvalidField("page_size", "must not be negative");
  }
  if (requested == 0) return kDefaultPageSize;
  return std::min<int>(requested, kMaxPageSize);
}

// The query a page token belongs to: the method and every request field
// that selects what is listed (not the page size, which may change between
// pages).
std::string TokenQuery(absl::string_view method,
                       std::initializer_list<absl::string_view> fields) {
  std::string query(method);
  for (absl::string_view f : fields) absl::StrAppend(&query, "\n", f.size(), ":", f);
  return query;
}

absl::Status NotFound(const std::string& po_id) {
  return core::DomainError(
      absl::StatusCode::kNotFound, core::reason::kPurchaseOrderNotFound,
      absl::StrCat("purchase order ", core::Quote(po_id), " not found"));
}

absl::StatusOr<v1::PurchaseOrder> CurrentPo(Ledger* ledger,
                                            const std::string& account_id,
                                            const std::string& po_id) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  RETURN_IF_ERROR(core::ValidatePurchaseOrderId(po_id, "purchase_order_id"));
  std::optional<v1::PurchaseOrder> out;
  RETURN_IF_ERROR(ledger->Read(account_id, [&](const core::AccountState& s) {
    auto it = s.purchase_orders.find(po_id);
    if (it != s.purchase_orders.end()) out = convert::ToApi(account_id, it->second);
  }));
  if (!out.has_value()) return NotFound(po_id);
  return *std::move(out);
}

// Who a refusal is counted against in the log's repeat limit: the caller's
// identity where there is one, and its host.
std::string CallerKey(const ServiceContext& ctx,
                      const grpc::ServerContextBase* context) {
  return absl::StrCat(ctx.require_identity ? CallerIdentity(ctx, context) : "",
                      "@", CallerHost(ctx, context));
}

// One log line for a write the server refused: code, reason, method,
// account and request id (never the request's body), at most a few a
// second for each method, code, reason and caller.
void LogRefusedWrite(const absl::Status& status,
                     const google::protobuf::Descriptor* request,
                     const std::string& account_id,
                     const std::string& request_id, const std::string& caller) {
  const api::MethodRule* rule = api::RuleFor(request);
  const std::string method = rule != nullptr ? rule->method : request->name();
  const std::string code = absl::StatusCodeToString(status.code());
  const std::string reason = core::ReasonOf(status);
  log::WriteLimited(log::Level::kInfo, "write_refused",
            absl::StrCat("write_refused|", method, "|", code, "|", reason,
                         "|", caller),
            absl::StrCat("refused ", method, ": ",
                         absl::StatusCodeToString(status.code())),
            {{"code", absl::StatusCodeToString(status.code())},
             {"reason", core::ReasonOf(status)},
             {"field", core::FieldOf(status)},
             {"method", method},
             {"account", account_id},
             {"request_id", request_id}});
}

// Runs `command` through the Ledger without blocking and finishes the call
// from its completion: with then(result) on success, or the error (its field
// made a path in the request of `shape`).
template <typename Response, typename Then>
grpc::ServerUnaryReactor* ExecuteThen(
    ServiceContext* ctx, grpc::CallbackServerContext* context,
    const std::string& account_id, const std::string& request_id,
    core::Command command, api::RequestShape shape, Response* response,
    Then then, const ExecuteOptions& options = {}) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Ledger* ledger = ctx->ledger();
  // A dry run writes nothing and waits for no follower.
  std::shared_ptr<WriteFinisher> finisher =
      options.validate_only
          ? nullptr
          : WriteFinisher::Start(ctx->commit_wait, context, reactor);
  ledger->ExecuteAsync(
      ContextOf(*ctx, context, account_id, request_id), std::move(command),
      options,
      [reactor, response, shape, account_id, request_id,
       caller = CallerKey(*ctx, context), preview = options.validate_only,
       then = std::move(then), finisher = std::move(finisher)](
          absl::StatusOr<ExecuteResult> result) mutable {
        WriteFinisher::Answer(finisher, [&] {
          absl::StatusOr<Response> out =
              result.ok() ? then(*result)
                          : absl::StatusOr<Response>(result.status());
          if (!out.ok()) {
            const absl::Status refused = api::InRequest(out.status(), shape);
            if (!preview) {
              LogRefusedWrite(refused, shape.request, account_id, request_id,
                              caller);
            }
            reactor->Finish(ToGrpcStatus(refused));
            return;
          }
          *response = *std::move(out);
          reactor->Finish(grpc::Status::OK);
        });
      });
  return reactor;
}

// Runs a purchase-order command and answers with the purchase order as the
// command left it (taken when its events are applied, so a later command's
// change never shows); a repeated request or a command that changed nothing
// answers with the purchase order now.
grpc::ServerUnaryReactor* ExecuteForPo(
    ServiceContext* ctx, grpc::CallbackServerContext* context,
    const std::string& account_id, const std::string& request_id,
    const std::string& po_id, core::Command command, api::RequestShape shape,
    v1::PurchaseOrder* response) {
  Ledger* ledger = ctx->ledger();
  auto after = std::make_shared<std::optional<v1::PurchaseOrder>>();
  ExecuteOptions options;
  options.on_applied = [after, account_id,
                        po_id](const core::AccountState& state) {
    auto it = state.purchase_orders.find(po_id);
    if (it != state.purchase_orders.end()) {
      *after = convert::ToApi(account_id, it->second);
    }
  };
  return ExecuteThen(
      ctx, context, account_id, request_id, std::move(command), shape,
      response,
      [ledger, account_id, po_id,
       after](const ExecuteResult&) -> absl::StatusOr<v1::PurchaseOrder> {
        if (after->has_value()) return **std::move(after);
        return CurrentPo(ledger, account_id, po_id);
      },
      options);
}

// Answers the error of a purchase-order command built from a request, or
// runs the command and answers with the purchase order it names.
template <typename Command>
grpc::ServerUnaryReactor* ExecuteBuiltForPo(
    ServiceContext* ctx, grpc::CallbackServerContext* context,
    const std::string& account_id, const std::string& request_id,
    absl::StatusOr<Command> cmd, api::RequestShape shape,
    v1::PurchaseOrder* response) {
  if (!cmd.ok()) {
    LogRefusedWrite(cmd.status(), shape.request, account_id, request_id,
                    CallerKey(*ctx, context));
    return Reply(context, ToGrpcStatus(cmd.status()));
  }
  const std::string po_id = cmd->purchase_order_id;
  return ExecuteForPo(ctx, context, account_id, request_id, po_id,
                      *std::move(cmd), shape, response);
}

std::optional<uint64_t> Expected(bool has, uint64_t value) {
  return has ? std::optional<uint64_t>(value) : std::nullopt;
}

// The currency of a purchase order, for converting line item money.
absl::StatusOr<std::string> CurrencyOf(Ledger* ledger,
                                       const std::string& account_id,
                                       const std::string& po_id) {
  std::string currency;
  bool found = false;
  RETURN_IF_ERROR(ledger->Read(account_id, [&](const core::AccountState& s) {
    auto it = s.purchase_orders.find(po_id);
    if (it != s.purchase_orders.end()) {
      found = true;
      currency = it->second.header.currency_code();
    }
  }));
  if (!found) return NotFound(po_id);
  return currency;
}

// Converts a request's line item, taking Money's currency from the purchase
// order it belongs to.
absl::StatusOr<v1::LineItemDefinition> LineOf(Ledger* ledger,
                                              const std::string& account_id,
                                              const std::string& po_id,
                                              const v1::LineItem& line) {
  ASSIGN_OR_RETURN(std::string currency, CurrencyOf(ledger, account_id, po_id));
  return convert::ToLineDefinition(line, currency, "line_item");
}

}  // namespace

// --- PurchaseOrderService ------------------------------------------------------

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::CreatePurchaseOrder(
    grpc::CallbackServerContext* context,
    const v1::CreatePurchaseOrderRequest* request, v1::PurchaseOrder* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  absl::Status valid = ValidateAccountId(request->account_id());
  if (valid.ok() && !request->has_purchase_order()) {
    valid = core::InvalidField("purchase_order", "is required");
  }
  absl::StatusOr<core::CreatePurchaseOrder> cmd =
      valid.ok() ? convert::ToCreate(request->purchase_order(), "purchase_order")
                 : absl::StatusOr<core::CreatePurchaseOrder>(valid);
  return ExecuteBuiltForPo(
      ctx_, context, request->account_id(), request->request_id(),
      std::move(cmd), {request->GetDescriptor(), "purchase_order"}, response);
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::GetPurchaseOrder(
    grpc::CallbackServerContext* context,
    const v1::GetPurchaseOrderRequest* request, v1::PurchaseOrder* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  return Reply(context, Unary(ctx_, response, [&]() {
                 return CurrentPo(ctx_->ledger(), request->account_id(),
                                  request->purchase_order_id());
               }));
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::TestPermissions(
    grpc::CallbackServerContext* context,
    const v1::TestPermissionsRequest* request,
    v1::TestPermissionsResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  const std::string identity =
      ctx_->require_identity ? CallerIdentity(*ctx_, context) : "";
  if (absl::Status s = ValidateAccountId(request->account_id()); !s.ok()) {
    return Reply(context, ToGrpcStatus(s));
  }
  std::vector<const google::protobuf::MethodDescriptor*> methods;
  const std::vector<const google::protobuf::MethodDescriptor*> all =
      api::ApiMethods();
  if (request->methods().empty()) {
    methods = all;
  }
  for (int i = 0; i < request->methods_size(); ++i) {
    const std::string& name = request->methods(i);
    auto it = std::find_if(all.begin(), all.end(), [&](const auto* m) {
      return absl::StrCat(m->service()->name(), ".", m->name()) == name;
    });
    if (it == all.end()) {
      return Reply(
          context,
          ToGrpcStatus(core::InvalidField(
              absl::StrCat("methods[", i, "]"),
              absl::StrCat(core::Quote(name),
                           " is not a poledger.v1 method such as "
                           "\"PurchaseOrderService.GetPurchaseOrder\""))));
    }
    methods.push_back(*it);
  }
  const std::shared_ptr<const api::Authorizer> authorizer = ctx_->authorizer();
  response->set_identity(identity);
  for (const google::protobuf::MethodDescriptor* m : methods) {
    absl::Status allowed =
        m->input_type() == v1::BatchRecordInvoicesRequest::descriptor()
            ? authorizer->Check(identity,
                                v1::RecordInvoiceRequest::descriptor(),
                                request->account_id())
            : authorizer->Check(identity, m->input_type(),
                                request->account_id());
    // A replica takes no writes.
    if (allowed.ok() && !ctx_->role.is_leader() &&
        ChangesTheLog(m->input_type())) {
      allowed = absl::FailedPreconditionError("read replica");
    }
    if (allowed.ok()) {
      response->add_methods(absl::StrCat(m->service()->name(), ".", m->name()));
    }
  }
  return Reply(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::ListPurchaseOrders(
    grpc::CallbackServerContext* context,
    const v1::ListPurchaseOrdersRequest* request,
    v1::ListPurchaseOrdersResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  return Reply(context, Unary(ctx_, response,
                              [&]() -> absl::StatusOr<v1::ListPurchaseOrdersResponse> {
    ASSIGN_OR_RETURN(int page_size, PageSize(request->page_size()));
    const std::string query =
        TokenQuery("ListPurchaseOrders",
                   {request->account_id(), absl::StrCat(request->status())});
    ASSIGN_OR_RETURN(std::string after,
                     ParsePageToken(request->page_token(), query));
    if (!v1::PurchaseOrderStatus_IsValid(request->status())) {
      return core::InvalidField("status", "is not a purchase order status");
    }
    if (!v1::PurchaseOrderView_IsValid(request->view())) {
      return core::InvalidField("view", "must be a PurchaseOrderView");
    }
    // Pages stay small whatever the purchase orders hold: 100 of 100 lines
    // each are ~600 KB in the full view.
    constexpr size_t kMaxPageBytes = 96 << 10;
    const bool basic = request->view() == v1::PURCHASE_ORDER_VIEW_BASIC;
    v1::ListPurchaseOrdersResponse out;
    size_t bytes = 0;
    RETURN_IF_ERROR(ctx_->ledger()->Read(
        request->account_id(), [&](const core::AccountState& s) {
          for (auto it = s.purchase_orders.upper_bound(after);
               it != s.purchase_orders.end(); ++it) {
            if (request->status() != v1::PURCHASE_ORDER_STATUS_UNSPECIFIED &&
                it->second.status != request->status()) {
              continue;
            }
            v1::PurchaseOrder po =
                convert::ToApi(request->account_id(), it->second);
            if (basic) po.clear_line_items();
            // Its bytes in the page, with the field's tag and length.
            const size_t size = po.ByteSizeLong() + 4;
            const int n = out.purchase_orders_size();
            if (n == page_size || (n > 0 && bytes + size > kMaxPageBytes)) {
              out.set_next_page_token(MakePageToken(
                  query, out.purchase_orders(n - 1).purchase_order_id()));
              break;
            }
            bytes += size;
            *out.add_purchase_orders() = std::move(po);
          }
        }));
    return out;
  }));
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::UpdatePurchaseOrder(
    grpc::CallbackServerContext* context,
    const v1::UpdatePurchaseOrderRequest* request, v1::PurchaseOrder* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  auto build = [&]() -> absl::StatusOr<core::UpdatePurchaseOrder> {
    RETURN_IF_ERROR(ValidateAccountId(request->account_id()));
    core::UpdatePurchaseOrder cmd;
    cmd.purchase_order_id = request->purchase_order().purchase_order_id();
    ASSIGN_OR_RETURN(cmd.header, convert::ToHeader(request->purchase_order(),
                                                   "purchase_order"));
    ASSIGN_OR_RETURN(cmd.update_mask, convert::HeaderMask(request->update_mask()));
    cmd.expected_version = Expected(request->has_expected_version(),
                                    request->expected_version());
    return cmd;
  };
  absl::StatusOr<core::UpdatePurchaseOrder> cmd = build();
  return ExecuteBuiltForPo(
      ctx_, context, request->account_id(), request->request_id(),
      std::move(cmd), {request->GetDescriptor(), "purchase_order"}, response);
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::UpdatePurchaseOrderStatus(
    grpc::CallbackServerContext* context,
    const v1::UpdatePurchaseOrderStatusRequest* request,
    v1::PurchaseOrder* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  return ExecuteForPo(ctx_, context, request->account_id(),
                      request->request_id(), request->purchase_order_id(),
                      core::ChangePurchaseOrderStatus{
                          request->purchase_order_id(), request->status(),
                          Expected(request->has_expected_version(),
                                   request->expected_version())},
                      {request->GetDescriptor(), ""}, response);
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::DeletePurchaseOrder(
    grpc::CallbackServerContext* context,
    const v1::DeletePurchaseOrderRequest* request,
    google::protobuf::Empty* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  return ExecuteThen(
      ctx_, context, request->account_id(), request->request_id(),
      core::DeletePurchaseOrder{request->purchase_order_id(),
                                Expected(request->has_expected_version(),
                                         request->expected_version())},
      {request->GetDescriptor(), ""}, response, [](const ExecuteResult&) {
        return absl::StatusOr<google::protobuf::Empty>(google::protobuf::Empty());
      });
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::AddLineItem(
    grpc::CallbackServerContext* context, const v1::AddLineItemRequest* request,
    v1::PurchaseOrder* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  auto build = [&]() -> absl::StatusOr<core::AddLineItem> {
    core::AddLineItem cmd;
    cmd.purchase_order_id = request->purchase_order_id();
    ASSIGN_OR_RETURN(cmd.line_item,
                     LineOf(ctx_->ledger(), request->account_id(),
                            request->purchase_order_id(), request->line_item()));
    cmd.expected_version = Expected(request->has_expected_version(),
                                    request->expected_version());
    return cmd;
  };
  absl::StatusOr<core::AddLineItem> cmd = build();
  return ExecuteBuiltForPo(ctx_, context, request->account_id(),
                           request->request_id(), std::move(cmd),
                           {request->GetDescriptor(), ""}, response);
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::UpdateLineItem(
    grpc::CallbackServerContext* context,
    const v1::UpdateLineItemRequest* request, v1::PurchaseOrder* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  auto build = [&]() -> absl::StatusOr<core::UpdateLineItem> {
    core::UpdateLineItem cmd;
    cmd.purchase_order_id = request->purchase_order_id();
    ASSIGN_OR_RETURN(cmd.line_item,
                     LineOf(ctx_->ledger(), request->account_id(),
                            request->purchase_order_id(), request->line_item()));
    ASSIGN_OR_RETURN(cmd.update_mask, convert::LineMask(request->update_mask()));
    cmd.expected_version = Expected(request->has_expected_version(),
                                    request->expected_version());
    return cmd;
  };
  absl::StatusOr<core::UpdateLineItem> cmd = build();
  return ExecuteBuiltForPo(ctx_, context, request->account_id(),
                           request->request_id(), std::move(cmd),
                           {request->GetDescriptor(), ""}, response);
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::RemoveLineItem(
    grpc::CallbackServerContext* context,
    const v1::RemoveLineItemRequest* request, v1::PurchaseOrder* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  return ExecuteForPo(
      ctx_, context, request->account_id(), request->request_id(),
      request->purchase_order_id(),
      core::RemoveLineItem{request->purchase_order_id(), request->line_number(),
                           Expected(request->has_expected_version(),
                                    request->expected_version())},
      {request->GetDescriptor(), ""}, response);
}

grpc::ServerUnaryReactor* PurchaseOrderServiceImpl::ListPurchaseOrderInvoices(
    grpc::CallbackServerContext* context,
    const v1::ListPurchaseOrderInvoicesRequest* request,
    v1::ListPurchaseOrderInvoicesResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  return Reply(context, Unary(ctx_, response,
               [&]() -> absl::StatusOr<v1::ListPurchaseOrderInvoicesResponse> {
    ASSIGN_OR_RETURN(int page_size, PageSize(request->page_size()));
    const std::string query =
        TokenQuery("ListPurchaseOrderInvoices",
                   {request->account_id(), request->purchase_order_id()});
    ASSIGN_OR_RETURN(uint64_t after,
                     ParseNumberPageToken(request->page_token(), query));
    RETURN_IF_ERROR(core::ValidatePurchaseOrderId(request->purchase_order_id(),
                                                  "purchase_order_id"));
    std::vector<uint64_t> versions;
    ASSIGN_OR_RETURN(const core::AccountState s,
                     ctx_->ledger()->ReadWholeState(request->account_id()));
    auto po = s.purchase_orders.find(request->purchase_order_id());
    if (po == s.purchase_orders.end()) {
      return NotFound(request->purchase_order_id());
    }
    for (const auto& [id, inv] : s.invoices) {
      if (inv.purchase_order_id == po->first &&
          inv.purchase_order_created_version == po->second.created_version &&
          inv.recorded_version > after) {
        versions.push_back(inv.recorded_version);
      }
    }
    std::sort(versions.begin(), versions.end());
    v1::ListPurchaseOrderInvoicesResponse out;
    uint64_t last = 0;
    for (uint64_t v : versions) {
      if (out.invoices_size() == page_size) {
        out.set_next_page_token(MakeNumberPageToken(query, last));
        break;
      }
      last = v;
      ASSIGN_OR_RETURN(std::vector<LoggedEvent> events,
                       ctx_->ledger()->ReadAccountEvents(request->account_id(), v, 1));
      if (events.empty()) return absl::InternalError("invoice event missing");
      ASSIGN_OR_RETURN(*out.add_invoices(),
                       convert::InvoiceOf(request->account_id(), events[0]));
    }
    return out;
  }));
}

// --- InvoiceService ------------------------------------------------------------

namespace {

const LoggedEvent* FindEvent(const ExecuteResult& result,
                             v1::AccountEvent::EventCase which) {
  for (const LoggedEvent& e : result.events) {
    if (e.event.event_case() == which) return &e;
  }
  return nullptr;
}

}  // namespace

namespace {

// An invoice as RecordInvoice and GetInvoice answer it in `view` (default
// BASIC). An invoice event keeps the compact explanation (core::Explain);
// the FULL view adds every purchase order's candidates again, rebuilt from
// the account's state just before the invoice: from the log (it costs what
// the account's history costs) or, for a preview (position 0, nothing
// logged), from the state it was decided on, which is the current one.
absl::StatusOr<v1::Invoice> AnswerInvoice(
    Ledger* ledger, const std::string& account_id,
    const std::vector<LoggedEvent>& events, v1::InvoiceView view) {
  ASSIGN_OR_RETURN(v1::Invoice out,
                   convert::RecordedInvoiceOf(account_id, events, view,
                                              v1::INVOICE_VIEW_BASIC));
  if (view != v1::INVOICE_VIEW_FULL) return out;
  const LoggedEvent* record = nullptr;
  for (const LoggedEvent& e : events) {
    if (e.event.has_invoice_recorded()) record = &e;
  }
  if (record == nullptr ||
      !record->event.invoice_recorded().explanation().compact()) {
    return out;  // A credit memo, or an explanation logged in full.
  }
  core::AccountState before;
  if (record->position == 0) {
    RETURN_IF_ERROR(ledger->Read(account_id, [&](const core::AccountState& s) {
      before.purchase_orders = s.purchase_orders;
    }));
  } else {
    ASSIGN_OR_RETURN(before,
                     ledger->AccountAt(account_id, PositionBefore(record->position)));
  }
  const v1::MatchExplanation full =
      core::ExplainRecorded(before, record->event.invoice_recorded().invoice());
  *out.mutable_association()->mutable_explanation()->mutable_purchase_orders() =
      full.purchase_orders();
  return out;
}

}  // namespace

grpc::ServerUnaryReactor* InvoiceServiceImpl::RecordInvoice(
    grpc::CallbackServerContext* context, const v1::RecordInvoiceRequest* request,
    v1::Invoice* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  absl::Status valid = ValidateAccountId(request->account_id());
  if (valid.ok() && !v1::InvoiceView_IsValid(request->view())) {
    valid = core::InvalidField("view", "must be an InvoiceView");
  }
  absl::StatusOr<v1::InvoiceData> data =
      valid.ok() ? convert::ToInvoiceData(request->invoice(), "invoice")
                 : absl::StatusOr<v1::InvoiceData>(valid);
  if (!data.ok()) {
    if (!request->validate_only()) {
      LogRefusedWrite(data.status(), request->GetDescriptor(),
                      request->account_id(), request->request_id(),
                      CallerKey(*ctx_, context));
    }
    return Reply(context, ToGrpcStatus(data.status()));
  }
  const std::string account_id = request->account_id();
  const v1::InvoiceView view = request->view();
  return ExecuteThen(
      ctx_, context, account_id, request->request_id(),
      core::RecordInvoice{*std::move(data)},
      {request->GetDescriptor(), "invoice"}, response,
      [ledger = ctx_->ledger(), account_id, view](const ExecuteResult& result) {
        return AnswerInvoice(ledger, account_id, result.events, view);
      },
      ExecuteOptions{.validate_only = request->validate_only()});
}

namespace {

// One BatchRecordInvoices call: its items grouped by account, one ledger
// batch each, answered when the last group is done.
class InvoiceBatch {
 public:
  static constexpr int kMaxItems = 1000;
  // Under the server's default message limit (4 MiB), so that the batch
  // gets this error rather than gRPC's RESOURCE_EXHAUSTED.
  static constexpr size_t kMaxBytes = 2u << 20;

  InvoiceBatch(const v1::BatchRecordInvoicesRequest* request,
               v1::BatchRecordInvoicesResponse* response,
               grpc::ServerUnaryReactor* reactor, std::string caller)
      : request_(request),
        response_(response),
        reactor_(reactor),
        caller_(std::move(caller)) {
    response_->mutable_results()->Reserve(request->requests_size());
    for (int i = 0; i < request->requests_size(); ++i) {
      response_->add_results();
    }
  }

  // Refuses item `i` with `status` (its field a path in the item).
  void Refuse(int i, const absl::Status& status) {
    const absl::Status in_batch = api::UnderField(
        api::InRequest(status,
                       {v1::RecordInvoiceRequest::descriptor(), "invoice"}),
        absl::StrCat("requests[", i, "]"));
    const v1::RecordInvoiceRequest& item = request_->requests(i);
    if (!request_->validate_only()) {
      LogRefusedWrite(in_batch, v1::BatchRecordInvoicesRequest::descriptor(),
                      item.account_id(), "", caller_);
    }
    *response_->mutable_results(i)->mutable_error() =
        api::ToRpcStatus(in_batch);
  }

  // Fills item `i` from its result.
  void Answer(int i, absl::StatusOr<ExecuteResult> result) {
    if (!result.ok()) {
      Refuse(i, result.status());
      return;
    }
    const v1::RecordInvoiceRequest& item = request_->requests(i);
    // Built in place: the response may live on the call's arena.
    v1::RecordInvoiceResult* out = response_->mutable_results(i);
    if (absl::Status filled = convert::FillRecordedInvoice(
            item.account_id(), result->events, request_->view(),
            v1::INVOICE_VIEW_BASIC, out->mutable_invoice());
        !filled.ok()) {
      out->clear_invoice();
      Refuse(i, filled);
      return;
    }
    out->set_already_recorded(result->duplicate);
  }

  // Runs the groups; answers the call once all are done (or at once).
  void Run(Ledger* ledger, const ServiceContext& service,
           const grpc::CallbackServerContext* context,
           std::map<std::string, std::vector<int>> groups,
           std::map<std::string, std::vector<core::Command>> commands) {
    {
      absl::MutexLock lock(&mu_);
      outstanding_ = static_cast<int>(groups.size()) + 1;
    }
    if (!request_->validate_only()) {
      finisher_ = WriteFinisher::Start(service.commit_wait, context, reactor_);
    }
    for (auto& [account, items] : groups) {
      ledger->ExecuteBatchAsync(
          ContextOf(service, context, account, ""),
          std::move(commands[account]),
          ExecuteOptions{.validate_only = request_->validate_only()},
          [this, items = items](Ledger::BatchResults results) {
            WriteFinisher::Fill(finisher_, [&] {
              for (size_t k = 0; k < items.size(); ++k) {
                Answer(items[k], std::move(results[k]));
              }
            });
            Done();
          });
    }
    Done();
  }

 private:
  void Done() {
    {
      absl::MutexLock lock(&mu_);
      if (--outstanding_ > 0) return;
    }
    WriteFinisher::Answer(finisher_,
                          [this] { reactor_->Finish(grpc::Status::OK); });
    delete this;
  }

  const v1::BatchRecordInvoicesRequest* const request_;
  v1::BatchRecordInvoicesResponse* const response_;
  grpc::ServerUnaryReactor* const reactor_;
  // CallerKey's, for the refusals' log lines.
  const std::string caller_;
  // Set by Run before any group starts; then only read.
  std::shared_ptr<WriteFinisher> finisher_;
  absl::Mutex mu_;
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

grpc::ServerUnaryReactor* InvoiceServiceImpl::BatchRecordInvoices(
    grpc::CallbackServerContext* context,
    const v1::BatchRecordInvoicesRequest* request,
    v1::BatchRecordInvoicesResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  // A malformed batch is refused whole.
  absl::Status malformed;
  if (request->requests_size() == 0 ||
      request->requests_size() > InvoiceBatch::kMaxItems) {
    malformed = core::InvalidField(
        "requests",
        absl::StrCat("must hold 1 to ", InvoiceBatch::kMaxItems,
                     " items; this batch has ", request->requests_size()));
  } else if (const size_t bytes = request->ByteSizeLong();
             bytes > InvoiceBatch::kMaxBytes) {
    malformed = core::InvalidField(
        "requests", absl::StrCat("must be at most ", InvoiceBatch::kMaxBytes,
                                 " bytes in all; this batch is ", bytes));
  } else if (!v1::InvoiceView_IsValid(request->view())) {
    malformed = core::InvalidField("view", "must be an InvoiceView");
  } else if (request->view() == v1::INVOICE_VIEW_FULL) {
    // Each item's would be rebuilt from its account's log.
    malformed = core::InvalidField(
        "view",
        "a batch answers BASIC; GetInvoice answers one invoice in FULL");
  }
  if (!malformed.ok()) {
    if (!request->validate_only()) {
      LogRefusedWrite(malformed, request->GetDescriptor(), "", "",
                      CallerKey(*ctx_, context));
    }
    return Reply(context, ToGrpcStatus(malformed));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto* batch = new InvoiceBatch(request, response, reactor,
                                 CallerKey(*ctx_, context));
  const std::shared_ptr<const api::Authorizer> authorizer = ctx_->authorizer();
  const std::string identity =
      ctx_->require_identity ? CallerIdentity(*ctx_, context) : "";
  // Items by account, in request order within each.
  std::map<std::string, std::vector<int>> groups;
  std::map<std::string, std::vector<core::Command>> commands;
  for (int i = 0; i < request->requests_size(); ++i) {
    const v1::RecordInvoiceRequest& item = request->requests(i);
    absl::Status valid = ValidateAccountId(item.account_id());
    if (valid.ok())
      valid = CheckAccountRouting(*ctx_, context, item.account_id());
    if (valid.ok()) {
      valid = authorizer->Check(
          identity, v1::RecordInvoiceRequest::descriptor(), item.account_id());
    }
    if (valid.ok() && !item.request_id().empty()) {
      valid = core::InvalidField(
          "request_id",
          "must be empty in a batch: its items are idempotent by invoice id");
    }
    if (valid.ok() &&
        (item.validate_only() || item.view() != v1::INVOICE_VIEW_UNSPECIFIED)) {
      valid =
          core::InvalidField(item.validate_only() ? "validate_only" : "view",
                             "must be unset in a batch: set it on the batch");
    }
    absl::StatusOr<v1::InvoiceData> data =
        valid.ok() ? convert::ToInvoiceData(item.invoice(), "invoice")
                   : absl::StatusOr<v1::InvoiceData>(valid);
    if (!data.ok()) {
      batch->Refuse(i, data.status());
      continue;
    }
    groups[item.account_id()].push_back(i);
    commands[item.account_id()].push_back(
        core::RecordInvoice{*std::move(data)});
  }
  batch->Run(ctx_->ledger(), *ctx_, context, std::move(groups),
             std::move(commands));
  return reactor;
}

grpc::ServerUnaryReactor* InvoiceServiceImpl::GetInvoice(
    grpc::CallbackServerContext* context, const v1::GetInvoiceRequest* request,
    v1::Invoice* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  return Reply(context, Unary(ctx_, response, [&]() -> absl::StatusOr<v1::Invoice> {
    RETURN_IF_ERROR(ValidateAccountId(request->account_id()));
    RETURN_IF_ERROR(core::ValidateId(request->invoice_id(), "invoice_id",
                                     core::kMaxInvoiceId));
    if (!v1::InvoiceView_IsValid(request->view())) {
      return core::InvalidField("view", "must be an InvoiceView");
    }
    ASSIGN_OR_RETURN(std::optional<core::InvoiceEntry> entry,
                     ctx_->ledger()->FindInvoice(request->account_id(),
                                                 request->invoice_id()));
    if (!entry.has_value()) {
      return core::DomainError(
          absl::StatusCode::kNotFound, core::reason::kInvoiceNotFound,
          absl::StrCat("invoice ", core::Quote(request->invoice_id()),
                       " not found"));
    }
    ASSIGN_OR_RETURN(ExecuteResult record,
                     ctx_->ledger()->ReadRecord(request->account_id(),
                                                entry->recorded_version));
    return AnswerInvoice(ctx_->ledger(), request->account_id(), record.events,
                         request->view());
  }));
}

grpc::ServerUnaryReactor* InvoiceServiceImpl::RecordMarketplaceTransaction(
    grpc::CallbackServerContext* context,
    const v1::RecordMarketplaceTransactionRequest* request,
    v1::RecordMarketplaceTransactionResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  auto build = [&]() -> absl::StatusOr<core::RecordMarketplaceTransaction> {
    RETURN_IF_ERROR(ValidateAccountId(request->account_id()));
    const v1::MarketplaceTransaction& t = request->transaction();
    core::RecordMarketplaceTransaction cmd;
    cmd.transaction_id = t.transaction_id();
    cmd.purchase_order_id = t.purchase_order_id();
    cmd.bill_from = t.bill_from();
    cmd.currency_code = t.amount().currency_code();
    ASSIGN_OR_RETURN(cmd.amount_micros,
                     convert::MicrosOf(t.amount(), t.amount().currency_code(),
                                       "transaction.amount"));
    cmd.month = t.month();
    cmd.description = t.description();
    cmd.line_number = t.line_number();
    return cmd;
  };
  absl::StatusOr<core::RecordMarketplaceTransaction> cmd = build();
  if (!cmd.ok()) {
    LogRefusedWrite(cmd.status(), request->GetDescriptor(),
                    request->account_id(), request->request_id(),
                    CallerKey(*ctx_, context));
    return Reply(context, ToGrpcStatus(cmd.status()));
  }
  return ExecuteThen(
      ctx_, context, request->account_id(), request->request_id(),
      *std::move(cmd), {request->GetDescriptor(), "transaction"}, response,
      [](const ExecuteResult& result)
          -> absl::StatusOr<v1::RecordMarketplaceTransactionResponse> {
        const LoggedEvent* e = FindEvent(
            result, v1::AccountEvent::kMarketplaceTransactionRecorded);
        if (e == nullptr) {
          return absl::InternalError("recording a transaction logged nothing");
        }
        const v1::MarketplaceTransactionRecorded& r =
            e->event.marketplace_transaction_recorded();
        v1::RecordMarketplaceTransactionResponse out;
        out.set_outcome(r.outcome());
        out.set_purchase_order_id(r.purchase_order_id());
        out.set_line_number(r.line_number());
        out.set_reason_code(r.reason_code());
        out.set_reason(r.reason());
        out.set_position(e->position);
        return out;
      });
}

// --- NotificationService -------------------------------------------------------

grpc::Status NotificationServiceImpl::ListNotifications(
    grpc::ServerContext* context, const v1::ListNotificationsRequest* request,
    v1::ListNotificationsResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) return *denied;
  return Unary(ctx_, response, [&]() -> absl::StatusOr<v1::ListNotificationsResponse> {
    ASSIGN_OR_RETURN(int page_size, PageSize(request->page_size()));
    const std::string query =
        TokenQuery("ListNotifications",
                   {request->account_id(), request->purchase_order_id()});
    ASSIGN_OR_RETURN(uint64_t from,
                     ParseNumberPageToken(request->page_token(), query));
    if (from == 0) from = 1;
    v1::ListNotificationsResponse out;
    // Scan the account's stream in chunks; stop at a full page.
    for (;;) {
      ASSIGN_OR_RETURN(std::vector<LoggedEvent> events,
                       ctx_->ledger()->ReadAccountEvents(request->account_id(),
                                                       from, 512));
      if (events.empty()) return out;
      for (LoggedEvent& e : events) {
        from = e.stream_version + 1;
        if (!e.event.has_notification_raised()) continue;
        const v1::NotificationRaised& n = e.event.notification_raised();
        if (!request->purchase_order_id().empty() &&
            n.purchase_order_id() != request->purchase_order_id()) {
          continue;
        }
        *out.add_notifications() = convert::NotificationOf(
            request->account_id(), e.position, e.time, n);
        if (out.notifications_size() == page_size) {
          out.set_next_page_token(MakeNumberPageToken(query, from));
          return out;
        }
      }
    }
  });
}

// --- EventLogService -----------------------------------------------------------

grpc::Status EventLogServiceImpl::ReadEvents(
    grpc::ServerContext* context, const v1::ReadEventsRequest* request,
    v1::ReadEventsResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) return *denied;
  return Unary(ctx_, response, [&]() -> absl::StatusOr<v1::ReadEventsResponse> {
    ASSIGN_OR_RETURN(int page_size, PageSize(request->page_size()));
    std::string query = TokenQuery("ReadEvents", {request->account_id()});
    for (const std::string& type : request->event_types()) {
      absl::StrAppend(&query, "\n", type.size(), ":", type);
    }
    ASSIGN_OR_RETURN(uint64_t from,
                     ParseNumberPageToken(request->page_token(), query));
    if (request->page_token().empty()) from = request->from_position();
    if (from == 0) from = 1;
    if (!request->account_id().empty()) {
      RETURN_IF_ERROR(ValidateAccountId(request->account_id()));
    }
    EventStore* store = ctx_->ledger()->store();
    v1::ReadEventsResponse out;
    out.set_head_position(store->Head().position);
    // Filters may skip many records: scan at most this many per call and
    // hand back a token to continue.
    constexpr uint64_t kMaxScan = 20000;
    uint64_t scanned = 0;
    while (scanned < kMaxScan) {
      ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                       store->ReadForward(from, 512));
      if (records.empty()) return out;
      for (const RecordedEvent& r : records) {
        from = PositionAfter(r.position);
        ++scanned;
        if (!request->account_id().empty() &&
            AccountOfStream(r.stream_id) != request->account_id()) {
          continue;
        }
        if (!request->event_types().empty() &&
            std::find(request->event_types().begin(),
                      request->event_types().end(),
                      r.event_type) == request->event_types().end()) {
          continue;
        }
        ASSIGN_OR_RETURN(*out.add_events(), convert::EventOf(r));
        if (out.events_size() == page_size) break;
      }
      if (out.events_size() == page_size) break;
    }
    if (from <= out.head_position()) {
      out.set_next_page_token(MakeNumberPageToken(query, from));
    }
    return out;
  });
}

grpc::Status EventLogServiceImpl::GetPurchaseOrderAt(
    grpc::ServerContext* context, const v1::GetPurchaseOrderAtRequest* request,
    v1::GetPurchaseOrderAtResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) return *denied;
  return Unary(ctx_, response, [&]() -> absl::StatusOr<v1::GetPurchaseOrderAtResponse> {
    RETURN_IF_ERROR(ValidateAccountId(request->account_id()));
    RETURN_IF_ERROR(core::ValidatePurchaseOrderId(request->purchase_order_id(),
                                                  "purchase_order_id"));
    uint64_t position = 0;
    if (request->point_case() == v1::GetPurchaseOrderAtRequest::kPosition) {
      position = request->position();
    } else if (request->point_case() == v1::GetPurchaseOrderAtRequest::kTime) {
      ASSIGN_OR_RETURN(position,
                       AccountPositionAt(*ctx_->ledger()->store(),
                                         request->account_id(),
                                         core::FromProtoTime(request->time())));
    } else {
      return core::InvalidField("point", "a position or a time is required");
    }
    ASSIGN_OR_RETURN(core::AccountState state,
                     ctx_->ledger()->AccountAt(request->account_id(), position));
    auto it = state.purchase_orders.find(request->purchase_order_id());
    if (it == state.purchase_orders.end()) {
      return NotFound(request->purchase_order_id());
    }
    v1::GetPurchaseOrderAtResponse out;
    *out.mutable_purchase_order() = convert::ToApi(request->account_id(), it->second);
    out.set_position(position);
    return out;
  });
}

grpc::Status EventLogServiceImpl::ListPurchaseOrderChanges(
    grpc::ServerContext* context,
    const v1::ListPurchaseOrderChangesRequest* request,
    v1::ListPurchaseOrderChangesResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) return *denied;
  return Unary(ctx_, response,
               [&]() -> absl::StatusOr<v1::ListPurchaseOrderChangesResponse> {
                 RETURN_IF_ERROR(ValidateAccountId(request->account_id()));
                 RETURN_IF_ERROR(core::ValidatePurchaseOrderId(
                     request->purchase_order_id(), "purchase_order_id"));
                 absl::StatusOr<PurchaseOrderHistory> history =
                     PurchaseOrderChanges(
                         *ctx_->ledger()->store(), request->account_id(),
                         request->purchase_order_id(), /*limit=*/1000);
                 if (absl::IsNotFound(history.status())) {
                   return NotFound(request->purchase_order_id());
                 }
                 if (!history.ok()) return history.status();
                 v1::ListPurchaseOrderChangesResponse out;
                 for (const PurchaseOrderChange& c : history->changes) {
                   v1::PurchaseOrderChange* change = out.add_changes();
                   change->set_position(c.position);
                   *change->mutable_time() = core::ToProtoTime(c.time);
                   change->set_event_type(c.event_type);
                   change->set_actor(c.actor);
                 }
                 out.set_truncated(history->truncated);
                 return out;
               });
}

grpc::Status EventLogServiceImpl::GetLogDigest(
    grpc::ServerContext* context, const v1::GetLogDigestRequest* request,
    v1::GetLogDigestResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) return *denied;
  if (ctx_->ledger() == nullptr) return NotReady();
  const LogHead head = ctx_->ledger()->store()->Head();
  if (request->at_position() == 0 || request->at_position() == head.position) {
    response->set_head_position(head.position);
    response->set_chain_hash(HashToHex(head.hash));
    return grpc::Status::OK;
  }
  if (request->at_position() > head.position) {
    return ToGrpcStatus(core::InvalidField(
        "at_position",
        absl::StrCat("is past the log's head (", head.position, ")")));
  }
  absl::StatusOr<std::vector<RecordedEvent>> records =
      ctx_->ledger()->store()->ReadForward(request->at_position(), 1);
  if (!records.ok()) return ToGrpcStatus(records.status());
  if (records->empty()) {
    return grpc::Status(
        grpc::StatusCode::DATA_LOSS,
        absl::StrCat("no record at position ", request->at_position()));
  }
  response->set_head_position(request->at_position());
  response->set_chain_hash(HashToHex(records->front().hash));
  return grpc::Status::OK;
}

// --- AdminService ----------------------------------------------------------------

grpc::ServerUnaryReactor* AdminServiceImpl::GetServerInfo(
    grpc::CallbackServerContext* context,
    const v1::GetServerInfoRequest* request,
    v1::GetServerInfoResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  response->set_version(ctx_->version);
  response->set_head_position(ctx_->ledger()->store()->Head().position);
  const absl::Duration uptime = absl::Now() - ctx_->start_time;
  response->mutable_uptime()->set_seconds(absl::ToInt64Seconds(uptime));
  response->set_clock(ctx_->manual_clock != nullptr ? "manual" : "real");
  *response->mutable_now() = core::ToProtoTime(ctx_->ledger()->clock()->Now());
  if (LogTail* tail = ctx_->tail.load(std::memory_order_acquire)) {
    response->set_open_streams(tail->subscribers());
  }
  response->set_authorization(ctx_->authorization);
  response->set_caller_identity(CallerIdentity(*ctx_, context));
  response->set_shard_index(ctx_->shard.index);
  response->set_shard_count(ctx_->shard.count);
  const RoleState role = ctx_->role.state();
  response->set_role(std::string(RoleName(role.kind)));
  response->set_term(role.term);
  response->set_leader(role.leader);
  response->set_committed_position(ctx_->ledger()->store()->Head().position);
  if (ctx_->committed != nullptr) {
    response->set_uncommitted_records(ctx_->committed->uncommitted());
  }
  if (const CommitTracker* tracker = ctx_->commit_wait.tracker) {
    response->set_sync_followers(tracker->sync_followers());
    const absl::Time now = absl::Now();
    for (const FollowerProgress& f : tracker->followers()) {
      v1::FollowerInfo* out = response->add_followers();
      out->set_node(f.node);
      out->set_peer(f.peer);
      out->set_synchronous(f.synchronous);
      out->set_durable_position(f.durable_position);
      if (f.last_ack != absl::InfinitePast()) {
        *out->mutable_since_ack() = core::ToProtoDuration(now - f.last_ack);
      }
    }
  }
  if (ctx_->replication) {
    const ReplicationStatus r = ctx_->replication();
    v1::Replication* out = response->mutable_replication();
    out->set_leader(r.leader);
    out->set_state(FollowerStateName(r.state));
    out->set_leader_head_position(r.leader_head);
    out->set_lag_events(r.lag_events);
    *out->mutable_lag() = core::ToProtoDuration(r.lag);
    out->set_last_error(r.last_error);
  }
  if (ctx_->scrub) {
    const ScrubReport r = ctx_->scrub();
    v1::Scrub* out = response->mutable_scrub();
    out->set_running(r.running);
    out->set_passes(r.passes);
    out->set_failures(r.failures);
    if (r.passes > 0) {
      *out->mutable_finished_time() = core::ToProtoTime(r.finished);
      *out->mutable_took() = core::ToProtoDuration(r.took);
      out->set_result(r.result.ok() ? "ok" : std::string(r.result.message()));
      out->set_verified_through_position(r.verified_through);
    }
  }
  return Reply(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateSnapshot(
    grpc::CallbackServerContext* context,
    const v1::CreateSnapshotRequest* request,
    v1::CreateSnapshotResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  return Reply(context, Unary(ctx_, response,
                              [&]() -> absl::StatusOr<v1::CreateSnapshotResponse> {
    ASSIGN_OR_RETURN(uint64_t position, ctx_->ledger()->CreateSnapshot());
    v1::CreateSnapshotResponse out;
    out.set_position(position);
    return out;
  }));
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateBackup(
    grpc::CallbackServerContext* context,
    const v1::CreateBackupRequest* request,
    v1::CreateBackupResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  const std::string dir = request->directory();
  if (dir.empty() || dir.front() != '/') {
    return Reply(context, ToGrpcStatus(core::InvalidField(
                              "directory", "must be an absolute path")));
  }
  if (!ctx_->backup) {
    return Reply(context, grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                       "this server's store has no backups"));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::thread([this, reactor, dir, response] {
    SetCurrentThreadName("pl-backup");
    absl::MutexLock lock(&backup_mu_);
    absl::StatusOr<LogHead> head = ctx_->backup(dir);
    if (!head.ok()) {
      const absl::Status s =
          absl::IsAlreadyExists(head.status())
              ? core::InvalidField("directory", head.status().message())
              : head.status();
      reactor->Finish(ToGrpcStatus(s));
      return;
    }
    response->set_directory(dir);
    response->set_position(head->position);
    response->set_chain_hash(HashToHex(head->hash));
    reactor->Finish(grpc::Status::OK);
  }).detach();
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::ErasePersonalData(
    grpc::CallbackServerContext* context,
    const v1::ErasePersonalDataRequest* request,
    v1::ErasePersonalDataResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  const RequestContext who =
      ContextOf(*ctx_, context, request->account_id(), "");
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::thread([this, reactor, who, request, response] {
    SetCurrentThreadName("pl-erase");
    absl::StatusOr<v1::ErasePersonalDataResponse> erased =
        poledger::ErasePersonalData(*ctx_->ledger(), *ctx_->personal_data,
                                    who, *request);
    if (!erased.ok()) {
      reactor->Finish(ToGrpcStatus(erased.status()));
      return;
    }
    *response = std::move(*erased);
    reactor->Finish(grpc::Status::OK);
  }).detach();
  return reactor;
}

grpc::Status AdminServiceImpl::MoveClock(absl::Time to,
                                         v1::TimeResponse* response) {
  ctx_->manual_clock->Set(to);
  absl::StatusOr<int> ticked = ctx_->ledger()->TickAll();
  if (!ticked.ok()) return ToGrpcStatus(ticked.status());
  *response->mutable_now() = core::ToProtoTime(to);
  response->set_head_position(ctx_->ledger()->store()->Head().position);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* AdminServiceImpl::SetTime(
    grpc::CallbackServerContext* context, const v1::SetTimeRequest* request,
    v1::TimeResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  if (ctx_->manual_clock == nullptr) {
    return Reply(context, ToGrpcStatus(core::DomainError(
        absl::StatusCode::kFailedPrecondition, core::reason::kClockNotManual,
        "the server runs on the real clock; start it with "
        "--clock=manual:TIME to set time")));
  }
  if (!request->has_time()) {
    return Reply(context, ToGrpcStatus(core::InvalidField("time", "is required")));
  }
  // Time moves rarely and only in tests: waiting for the ticks here is fine.
  absl::MutexLock lock(&clock_mu_);
  return Reply(context, MoveClock(core::FromProtoTime(request->time()), response));
}

grpc::ServerUnaryReactor* AdminServiceImpl::AdvanceTime(
    grpc::CallbackServerContext* context, const v1::AdvanceTimeRequest* request,
    v1::TimeResponse* response) {
  if (auto denied = Denied(*ctx_, context, *request)) {
    return Reply(context, *denied);
  }
  if (ctx_->ledger() == nullptr) return Reply(context, NotReady());
  if (ctx_->manual_clock == nullptr) {
    return Reply(context, ToGrpcStatus(core::DomainError(
        absl::StatusCode::kFailedPrecondition, core::reason::kClockNotManual,
        "the server runs on the real clock; start it with "
        "--clock=manual:TIME to advance time")));
  }
  const absl::Duration d = absl::Seconds(request->duration().seconds()) +
                           absl::Nanoseconds(request->duration().nanos());
  if (d < absl::ZeroDuration()) {
    return Reply(context, ToGrpcStatus(core::InvalidField(
                              "duration", "time only moves forward")));
  }
  absl::MutexLock lock(&clock_mu_);
  return Reply(context, MoveClock(ctx_->manual_clock->Now() + d, response));
}

}  // namespace poledger
