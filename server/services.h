// The gRPC services of poledger.v1: thin adapters that check the request,
// turn it into a command or a query on the Ledger, and map the status.
// Unary services use gRPC's callback API: queries answer inline, commands
// answer from the Ledger's completion callback, so no thread waits for an
// fsync. The streaming services use the synchronous API, a thread each.
//
// Thread safety: every service is safe for concurrent calls.
#ifndef POLEDGER_SERVER_SERVICES_H_
#define POLEDGER_SERVER_SERVICES_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/authz.h"
#include "core/shard.h"
#include "ledger/clock.h"
#include "ledger/ledger.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "server/arena_messages.h"
#include "server/follower.h"
#include "server/role.h"
#include "server/scrubber.h"
#include "server/stream_slots.h"
#include "server/write_deadline.h"

namespace poledger {

class LogTail;

// Limits on requests; anything larger is INVALID_ARGUMENT.
inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

// UNAVAILABLE with reason STARTING: the event log is still loading. Every
// method, unary or stream, answers this until the ledger is open.
grpc::Status NotReady();

// What every service shares.
// Request metadata: the account a call is about (routed on by the proxy;
// when present it must equal the body's account_id), and the shard a call
// that is not about one account is addressed to.
inline constexpr char kAccountHeader[] = "x-poledger-account";
inline constexpr char kShardHeader[] = "x-poledger-shard";
// Set by a trusted proxy (see ServiceContext::trusted_proxies): its
// caller's verified client certificate, DER in base64.
inline constexpr char kForwardedCertHeader[] = "x-poledger-client-cert";
// The HTTP/JSON gateway's calls on the in-process channel: the identity it
// authenticated, trusted only with the gateway's secret (random per
// process, never on the network).
inline constexpr char kGatewaySecretHeader[] = "x-poledger-gateway-secret";
inline constexpr char kGatewayIdentityHeader[] = "x-poledger-gateway-identity";
// The SHA-256 of the bearer token a gateway call's identity came from.
inline constexpr char kGatewayTokenHashHeader[] =
    "x-poledger-gateway-token-sha256";
// The HTTP client's address (host:port) of a gateway call.
inline constexpr char kGatewayPeerHeader[] = "x-poledger-gateway-peer";
// With the identity of a client certificate: its notAfter, Unix seconds.
inline constexpr char kGatewayCertExpiryHeader[] =
    "x-poledger-gateway-cert-expiry";

// The gRPC health service name that only the shard's leader serves (while
// it serves at all): a proxy's health check for writes.
inline constexpr char kLeaderHealthService[] = "poledger.v1.Leader";

struct ServiceContext {
  // Null until the ledger has loaded; calls meanwhile get UNAVAILABLE.
  std::atomic<Ledger*> ready_ledger{nullptr};
  Ledger* ledger() const {
    return ready_ledger.load(std::memory_order_acquire);
  }
  // Non-null when the server runs on a manual clock.
  ManualClock* manual_clock = nullptr;
  // The personal data keys (set before the ledger).
  PersonalData* personal_data = nullptr;
  // Streams send a heartbeat after this long without events.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // Records a stream queues for a slow client before it drops them and
  // reads them from the store again.
  size_t stream_queue_records = 1024;
  // Follows the log for the streams; set with the ledger.
  std::atomic<LogTail*> tail{nullptr};
  // Streams open, by method (for metrics).
  std::atomic<int64_t> open_event_streams{0};
  std::atomic<int64_t> open_notification_streams{0};
  absl::Time start_time;
  std::string version;
  // Writes a verified backup of the log to a new directory (set by the
  // server over its RocksDB store).
  std::function<absl::StatusOr<LogHead>(const std::string&)> backup;

  // The accounts this server serves; calls for others are WRONG_SHARD.
  core::Shard shard;
  // What this server is in its shard (writes to a replica are
  // READ_ONLY_REPLICA).
  Role role;
  // A node of a shard with automatic failover: writes that reach it while
  // it does not lead are UNAVAILABLE (NOT_LEADER), to be retried, rather
  // than a read replica's READ_ONLY_REPLICA.
  bool failover = false;
  // A node taking over its shard's leadership under this term (0: none):
  // it serves its followers already, and takes writes once it leads.
  std::atomic<uint64_t> taking_over{0};
  // The term whose log this node serves to followers: its own as leader,
  // the one it takes over, or 0 if it serves none.
  uint64_t serving_term() const {
    const uint64_t next = taking_over.load(std::memory_order_acquire);
    if (next != 0) return next;
    const RoleState now = role.state();
    return now.kind == RoleKind::kLeader ? std::max<uint64_t>(now.term, 1) : 0;
  }
  // A leader with --sync-followers: what its writes wait for.
  CommitWait commit_wait;
  // In a replicated shard, the log as clients see it, through the committed
  // position (null: everything stored is committed).
  const CommittedStore* committed = nullptr;
  // A read replica's status (set with its follower).
  std::function<ReplicationStatus()> replication;
  // The background scrub's findings (unset when it is off).
  std::function<ScrubReport()> scrub;

  // Security. With TLS every call needs an identity (a verified client
  // certificate); `authorization` is GetServerInfo's word for the mode.
  bool require_identity = false;
  // Identities of proxies (HAProxy in front of shards) that verified their
  // caller's certificate and forward it in kForwardedCertHeader: a call
  // from one of them is its caller's. Anyone else's header is ignored.
  std::vector<std::string> trusted_proxies;
  std::string authorization = "development";
  // The HTTP gateway's secret ("" without a gateway): a call carrying it in
  // kGatewaySecretHeader is kGatewayIdentityHeader's.
  std::string gateway_secret;
  // Who may do what; replaced whole when the policy is reloaded.
  std::shared_ptr<const api::Authorizer> authorizer() const {
    absl::MutexLock lock(&authz_mu);
    return authorizer_;
  }
  void set_authorizer(std::shared_ptr<const api::Authorizer> a) {
    absl::MutexLock lock(&authz_mu);
    authorizer_ = std::move(a);
    policy_generation.fetch_add(1);
  }
  // Bumped by every set_authorizer: a stream authorized under an older
  // generation checks its access again once it is registered.
  std::atomic<uint64_t> policy_generation{0};

  // Open streams are limited per caller (0: no limit).
  int max_streams_per_identity = 100;
  StreamSlots stream_slots;
  // Streams refused for the limit, and ended because their caller's access
  // was taken away or its certificate expired (for metrics).
  std::atomic<uint64_t> streams_refused{0};
  std::atomic<uint64_t> streams_revoked{0};
  std::atomic<uint64_t> streams_expired{0};

 private:
  mutable absl::Mutex authz_mu;
  std::shared_ptr<const api::Authorizer> authorizer_ ABSL_GUARDED_BY(authz_mu) =
      std::make_shared<const api::Authorizer>(api::Authorizer::AllowAll());
};

// The caller's identity, if `request` (of a poledger.v1 method) may be
// called by it on the request's account (its account_id field; none: every
// account). UNAUTHENTICATED without an identity where one is needed,
// PERMISSION_DENIED (reason PERMISSION_DENIED) without the right. Decided
// before anything is read or written, so a refusal tells nothing about the
// account.
// Who is calling: the verified client certificate's identity, or for a
// trusted proxy the certificate it forwards ("" without one).
std::string CallerIdentity(const ServiceContext& ctx,
                           const grpc::ServerContextBase* context);
// The caller's host: the HTTP client's for a call through the gateway, the
// connection's otherwise (port dropped; see log::PeerHost).
std::string CallerHost(const ServiceContext& ctx,
                       const grpc::ServerContextBase* context);
// When that caller's client certificate expires: the verified one, the one
// a trusted proxy forwards, or the one the HTTP gateway vouches for
// (kGatewayCertExpiryHeader); nullopt without one (a bearer token).
std::optional<absl::Time> CallerCertificateExpiry(
    const ServiceContext& ctx, const grpc::ServerContextBase* context);

absl::StatusOr<std::string> Authorize(const ServiceContext& ctx,
                                      const grpc::ServerContextBase* context,
                                      const google::protobuf::Message& request);
// Authorize's refusal as the call's status, or nullopt if allowed.
std::optional<grpc::Status> Denied(const ServiceContext& ctx,
                                   const grpc::ServerContextBase* context,
                                   const google::protobuf::Message& request);

class PurchaseOrderServiceImpl final : public v1::PurchaseOrderService::CallbackService {
 public:
  explicit PurchaseOrderServiceImpl(ServiceContext* ctx) : ctx_(ctx) {}

  grpc::ServerUnaryReactor* CreatePurchaseOrder(grpc::CallbackServerContext* context,
                                   const v1::CreatePurchaseOrderRequest* request,
                                   v1::PurchaseOrder* response) override;
  grpc::ServerUnaryReactor* GetPurchaseOrder(grpc::CallbackServerContext* context,
                                const v1::GetPurchaseOrderRequest* request,
                                v1::PurchaseOrder* response) override;
  grpc::ServerUnaryReactor* ListPurchaseOrders(
      grpc::CallbackServerContext* context, const v1::ListPurchaseOrdersRequest* request,
      v1::ListPurchaseOrdersResponse* response) override;
  grpc::ServerUnaryReactor* UpdatePurchaseOrder(grpc::CallbackServerContext* context,
                                   const v1::UpdatePurchaseOrderRequest* request,
                                   v1::PurchaseOrder* response) override;
  grpc::ServerUnaryReactor* UpdatePurchaseOrderStatus(
      grpc::CallbackServerContext* context,
      const v1::UpdatePurchaseOrderStatusRequest* request,
      v1::PurchaseOrder* response) override;
  grpc::ServerUnaryReactor* DeletePurchaseOrder(grpc::CallbackServerContext* context,
                                   const v1::DeletePurchaseOrderRequest* request,
                                   google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* AddLineItem(grpc::CallbackServerContext* context,
                           const v1::AddLineItemRequest* request,
                           v1::PurchaseOrder* response) override;
  grpc::ServerUnaryReactor* UpdateLineItem(grpc::CallbackServerContext* context,
                              const v1::UpdateLineItemRequest* request,
                              v1::PurchaseOrder* response) override;
  grpc::ServerUnaryReactor* RemoveLineItem(grpc::CallbackServerContext* context,
                              const v1::RemoveLineItemRequest* request,
                              v1::PurchaseOrder* response) override;
  grpc::ServerUnaryReactor* ListPurchaseOrderInvoices(
      grpc::CallbackServerContext* context,
      const v1::ListPurchaseOrderInvoicesRequest* request,
      v1::ListPurchaseOrderInvoicesResponse* response) override;
  grpc::ServerUnaryReactor* TestPermissions(
      grpc::CallbackServerContext* context,
      const v1::TestPermissionsRequest* request,
      v1::TestPermissionsResponse* response) override;

 private:
  ServiceContext* const ctx_;
};

class InvoiceServiceImpl final : public v1::InvoiceService::CallbackService {
 public:
  explicit InvoiceServiceImpl(ServiceContext* ctx) : ctx_(ctx) {
    SetMessageAllocatorFor_BatchRecordInvoices(&batch_messages_);
  }

  grpc::ServerUnaryReactor* RecordInvoice(grpc::CallbackServerContext* context,
                             const v1::RecordInvoiceRequest* request,
                             v1::Invoice* response) override;
  grpc::ServerUnaryReactor* BatchRecordInvoices(
      grpc::CallbackServerContext* context,
      const v1::BatchRecordInvoicesRequest* request,
      v1::BatchRecordInvoicesResponse* response) override;
  grpc::ServerUnaryReactor* GetInvoice(grpc::CallbackServerContext* context,
                          const v1::GetInvoiceRequest* request,
                          v1::Invoice* response) override;
  grpc::ServerUnaryReactor* RecordMarketplaceTransaction(
      grpc::CallbackServerContext* context,
      const v1::RecordMarketplaceTransactionRequest* request,
      v1::RecordMarketplaceTransactionResponse* response) override;

 private:
  ServiceContext* const ctx_;
  // A batch's request and results live on an arena of the call's.
  ArenaMessages<v1::BatchRecordInvoicesRequest, v1::BatchRecordInvoicesResponse>
      batch_messages_;
};

// Streams run on the callback API (no thread each), unary methods on the
// synchronous one.
class NotificationServiceImpl final
    : public v1::NotificationService::WithCallbackMethod_SubscribeNotifications<
          v1::NotificationService::Service> {
 public:
  explicit NotificationServiceImpl(ServiceContext* ctx) : ctx_(ctx) {}

  grpc::ServerWriteReactor<v1::SubscribeNotificationsResponse>*
  SubscribeNotifications(
      grpc::CallbackServerContext* context,
      const v1::SubscribeNotificationsRequest* request) override;
  grpc::Status ListNotifications(
      grpc::ServerContext* context, const v1::ListNotificationsRequest* request,
      v1::ListNotificationsResponse* response) override;

 private:
  ServiceContext* const ctx_;
};

class EventLogServiceImpl final
    : public v1::EventLogService::WithCallbackMethod_SubscribeEvents<
          v1::EventLogService::Service> {
 public:
  explicit EventLogServiceImpl(ServiceContext* ctx) : ctx_(ctx) {}

  grpc::Status ReadEvents(grpc::ServerContext* context,
                          const v1::ReadEventsRequest* request,
                          v1::ReadEventsResponse* response) override;
  grpc::ServerWriteReactor<v1::SubscribeEventsResponse>* SubscribeEvents(
      grpc::CallbackServerContext* context,
      const v1::SubscribeEventsRequest* request) override;
  grpc::Status GetPurchaseOrderAt(
      grpc::ServerContext* context, const v1::GetPurchaseOrderAtRequest* request,
      v1::GetPurchaseOrderAtResponse* response) override;
  grpc::Status ListPurchaseOrderChanges(
      grpc::ServerContext* context,
      const v1::ListPurchaseOrderChangesRequest* request,
      v1::ListPurchaseOrderChangesResponse* response) override;
  grpc::Status GetLogDigest(grpc::ServerContext* context,
                            const v1::GetLogDigestRequest* request,
                            v1::GetLogDigestResponse* response) override;

 private:
  ServiceContext* const ctx_;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  explicit AdminServiceImpl(ServiceContext* ctx) : ctx_(ctx) {}

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                             const v1::GetServerInfoRequest* request,
                             v1::GetServerInfoResponse* response) override;
  grpc::ServerUnaryReactor* CreateSnapshot(grpc::CallbackServerContext* context,
                              const v1::CreateSnapshotRequest* request,
                              v1::CreateSnapshotResponse* response) override;
  // Runs on a thread of its own (a backup copies and verifies the log) and
  // finishes the call from there; one backup at a time.
  grpc::ServerUnaryReactor* CreateBackup(
      grpc::CallbackServerContext* context,
      const v1::CreateBackupRequest* request,
      v1::CreateBackupResponse* response) override;
  grpc::ServerUnaryReactor* SetTime(grpc::CallbackServerContext* context,
                       const v1::SetTimeRequest* request,
                       v1::TimeResponse* response) override;
  grpc::ServerUnaryReactor* AdvanceTime(grpc::CallbackServerContext* context,
                           const v1::AdvanceTimeRequest* request,
                           v1::TimeResponse* response) override;
  // Runs on a thread of its own (it may write to many accounts).
  grpc::ServerUnaryReactor* ErasePersonalData(
      grpc::CallbackServerContext* context,
      const v1::ErasePersonalDataRequest* request,
      v1::ErasePersonalDataResponse* response) override;

 private:
  grpc::Status MoveClock(absl::Time to, v1::TimeResponse* response);
  ServiceContext* const ctx_;
  absl::Mutex clock_mu_;   // One clock change at a time.
  absl::Mutex backup_mu_;  // One backup at a time.
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_SERVICES_H_
