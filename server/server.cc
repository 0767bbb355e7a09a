#include "server/server.h"

#include <algorithm>
#include <limits>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "api/authz.h"
#include "base/status_macros.h"
#include "base/thread_name.h"
#include "clients/channel.h"
#include "core/decide.h"
#include "core/errors.h"
#include "eventstore/committed_store.h"
#include "eventstore/rocksdb_event_store.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "ledger/clock.h"
#include "ledger/ledger.h"
#include "openssl/rand.h"
#include "server/call_log.h"
#include "server/commit_tracker.h"
#include "server/data_key.h"
#include "server/follower.h"
#include "server/http_gateway.h"
#include "server/log.h"
#include "server/log_limit.h"
#include "server/log_tail.h"
#include "server/metrics.h"
#include "server/parse_failure_interceptor.h"
#include "server/replication_service.h"
#include "server/scrubber.h"
#include "server/server_impl.h"
#include "server/services.h"
#include "server/etcd_coordinator.h"
#include "server/shard_node.h"
#include "server/tls.h"

namespace poledger {


namespace {

// 32 random bytes, hex: the HTTP gateway's secret.
std::string RandomSecret() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    log::Error("random_failed", "RAND_bytes failed");
    std::abort();
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(bytes), sizeof(bytes)));
}

// A damaged log refuses the start: says what the operator does next.
absl::Status WithDamageAdvice(const absl::Status& status) {
  if (!absl::IsDataLoss(status)) return status;
  return absl::DataLossError(absl::StrCat(
      status.message(),
      ". The data directory is damaged: restore it from a backup, or run "
      "'poledger-audit verify --data-dir=DIR' to find the last good "
      "position (README, When things go wrong)"));
}

}  // namespace

PoledgerServer::PoledgerServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

PoledgerServer::~PoledgerServer() {
  Shutdown(absl::ZeroDuration());
  Wait();
}

int PoledgerServer::port() const { return impl_->port; }
int PoledgerServer::health_port() const { return impl_->health_port; }
int PoledgerServer::http_port() const {
  return impl_->http != nullptr ? impl_->http->port() : 0;
}
int PoledgerServer::metrics_port() const {
  return impl_->metrics != nullptr ? impl_->metrics->port() : 0;
}
Ledger* PoledgerServer::ledger() const { return impl_->ledger.get(); }
uint64_t PoledgerServer::open_checked_records() const {
  return impl_->store->open_check().records;
}
std::string PoledgerServer::open_recovery_skipped() const {
  return impl_->store->open_check().recovery_skipped;
}
uint64_t PoledgerServer::open_checked_from() const {
  return impl_->store->open_check().from;
}

absl::StatusOr<std::unique_ptr<PoledgerServer>> PoledgerServer::Start(
    const ServerOptions& options) {
  RETURN_IF_ERROR(CheckSecurityOptions(options));
  RETURN_IF_ERROR(CheckFailoverOptions(options));
  if (options.verify_on_open != "mark" && options.verify_on_open != "full") {
    return absl::InvalidArgumentError(
        absl::StrCat("--verify-on-open: '", options.verify_on_open,
                     "' is neither 'mark' nor 'full'"));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (!options.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(impl->metrics,
                     ServerMetrics::Start(options.metrics_listen));
  }
  ASSIGN_OR_RETURN(std::optional<absl::Time> manual, ParseClockFlag(options.clock));
  if (manual.has_value()) {
    auto clock = std::make_unique<ManualClock>(*manual);
    impl->manual_clock = clock.get();
    impl->clock = std::move(clock);
  } else {
    impl->clock = std::make_unique<RealClock>();
  }
  ServiceContext& ctx = impl->context;
  ctx.role.OnChange([raw = impl.get()](const RoleState& now,
                                       const RoleState& before,
                                       absl::string_view reason) {
    raw->PublishHealth();
    log::Info("role_changed",
              absl::StrCat("now ", RoleName(now.kind), " in term ", now.term,
                           " (was ", RoleName(before.kind), " in term ",
                           before.term, "): ", reason),
              {{"role", std::string(RoleName(now.kind))},
               {"term", now.term},
               {"leader", now.leader},
               {"reason", std::string(reason)}});
  });
  ctx.manual_clock = impl->manual_clock;
  ctx.heartbeat_interval = options.heartbeat_interval;
  ctx.stream_queue_records = static_cast<size_t>(options.stream_queue_records);
  ctx.max_streams_per_identity = options.max_streams_per_identity;
  ctx.start_time = absl::Now();
  ctx.version = "0.1.0";
  if (!options.shard.empty()) {
    absl::StatusOr<core::Shard> shard = core::ParseShard(options.shard);
    if (!shard.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", shard.status().message()));
    }
    ctx.shard = *shard;
  }
  std::shared_ptr<grpc::Channel> leader_channel;
  if (!options.follow.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> to_leader =
        ClientCredentials({options.follow_tls_ca, options.follow_tls_cert,
                           options.follow_tls_key});
    if (!to_leader.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--follow-", to_leader.status().message()));
    }
    leader_channel = NewClientChannel(options.follow, *to_leader);
    ctx.role.Set({RoleKind::kReplica, 0, options.follow},
                 "started with --follow");
  }
  const bool failover = !options.etcd_endpoints.empty();
  ctx.failover = failover;
  if (failover) {
    ctx.role.Set({RoleKind::kReplica, 0, ""},
                 "started in a shard with failover: waiting for etcd");
  }
  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::InsecureServerCredentials();
  if (!options.tls_cert.empty()) {
    ASSIGN_OR_RETURN(impl->tls,
                     ServerTls::Create({options.tls_cert, options.tls_key,
                                        options.tls_client_ca}));
    credentials = impl->tls->credentials();
    ctx.require_identity = true;
    ctx.trusted_proxies = options.trusted_proxy_identities;
    if (options.authz_allow_all) {
      ctx.authorization = "allow-all";
    } else {
      ASSIGN_OR_RETURN(v1::AuthorizationPolicy policy,
                       api::LoadPolicy(options.authz_policy));
      ASSIGN_OR_RETURN(api::Authorizer authorizer,
                       api::Authorizer::FromPolicy(policy));
      ctx.set_authorizer(
          std::make_shared<const api::Authorizer>(std::move(authorizer)));
      ctx.authorization = "policy";
    }
  }
  impl->purchase_orders = std::make_unique<PurchaseOrderServiceImpl>(&ctx);
  impl->invoices = std::make_unique<InvoiceServiceImpl>(&ctx);
  impl->notifications = std::make_unique<NotificationServiceImpl>(&ctx);
  impl->event_log = std::make_unique<EventLogServiceImpl>(&ctx);
  impl->admin = std::make_unique<AdminServiceImpl>(&ctx);
  impl->replication = std::make_unique<ReplicationServiceImpl>(&ctx);

  // gRPC's health service carries no protobuf descriptors of its own:
  // without ours in the generated pool, reflection lists the service but
  // cannot describe it, and grpcurl's health check fails.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC binds with SO_REUSEPORT by default; then a second server (with
  // another data directory) would share the port and take calls silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.listen, credentials, &impl->port);
  const auto millis = [](absl::Duration d) {
    return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d),
                                              std::numeric_limits<int>::max()));
  };
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             millis(options.handshake_timeout));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             millis(options.max_connection_idle));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             millis(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             millis(options.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      millis(options.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options.max_concurrent_streams);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(impl->purchase_orders.get());
  builder.RegisterService(impl->invoices.get());
  builder.RegisterService(impl->notifications.get());
  builder.RegisterService(impl->event_log.get());
  builder.RegisterService(impl->admin.get());
  builder.RegisterService(impl->replication.get());
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(NewParseFailureInterceptorFactory());
  interceptors.push_back(NewSlowCallLogFactory(options.slow_call));
  if (impl->metrics != nullptr) {
    interceptors.push_back(impl->metrics->NewInterceptorFactory());
  }
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen));
  }
  if (!options.health_listen.empty()) {
    grpc::ServerBuilder health_builder;
    health_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    health_builder.AddListeningPort(options.health_listen,
                                    grpc::InsecureServerCredentials(),
                                    &impl->health_port);
    impl->health_server = health_builder.BuildAndStart();
    if (impl->health_server == nullptr || impl->health_port == 0) {
      impl->server->Shutdown();
      impl->server->Wait();
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options.health_listen));
    }
  }
  impl->SetReady(false);

  // From here on a failure must stop the listening server.
  auto fail = [&](absl::Status s) {
    impl->CloseHealth();
    if (impl->http != nullptr) impl->http->Stop();
    impl->server->Shutdown();
    if (impl->http != nullptr) impl->http->Wait();
    impl->server->Wait();
    if (impl->health_server != nullptr) {
      impl->health_server->Shutdown();
      impl->health_server->Wait();
    }
    return s;
  };
  if (!options.http_listen.empty()) {
    HttpGatewayOptions http;
    http.listen = options.http_listen;
    http.tls = {options.tls_cert, options.tls_key, options.tls_client_ca};
    http.require_identity = ctx.require_identity;
    http.authorizer = [&ctx] { return ctx.authorizer(); };
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(options.max_message_bytes);
    args.SetMaxSendMessageSize(options.max_message_bytes);
    http.channel = impl->server->InProcessChannel(args);
    http.secret = RandomSecret();
    http.max_body_bytes = static_cast<size_t>(options.max_message_bytes);
    ctx.gateway_secret = http.secret;
    absl::StatusOr<std::unique_ptr<HttpGateway>> gateway =
        HttpGateway::Start(std::move(http));
    if (!gateway.ok()) return fail(gateway.status());
    impl->http = std::move(*gateway);
  }
  // A rejoining node's log leaves its leader's: rewind it first.
  if (absl::Status rewound = PrepareRewind(options.data_dir); !rewound.ok()) {
    return fail(rewound);
  }
  RocksDbEventStoreOptions store_options;
  store_options.path = options.data_dir;
  store_options.verify_from_mark = options.verify_on_open != "full";
  if (impl->metrics != nullptr) {
    ServerMetrics* metrics = impl->metrics.get();
    store_options.on_commit = [metrics](const CommitStats& stats) {
      metrics->OnCommit(stats);
    };
  }
  store_options.on_write_health = [raw = impl.get()](const absl::Status& s) {
    raw->OnWriteHealth(s);
  };
  absl::StatusOr<std::unique_ptr<RocksDbEventStore>> store =
      RocksDbEventStore::Open(store_options);
  if (!store.ok()) return fail(WithDamageAdvice(store.status()));
  impl->store = std::move(*store);
  if (const std::string& skipped = impl->store->open_check().recovery_skipped;
      !skipped.empty()) {
    log::Warning(
        "log_tail_damaged",
        absl::StrCat(
            "the write-ahead log ended in a damaged record; the log was "
            "recovered to the last whole record before it (head ",
            impl->store->Head().position,
            "). A crash can tear only a write that was never acknowledged; "
            "if acknowledged invoices are missing, restore from a backup "
            "(README, When things go wrong). RocksDB: ",
            skipped),
        {{"head", impl->store->Head().position}, {"rocksdb", skipped}});
  }
  RocksDbEventStore* raw_store = impl->store.get();
  if (failover) {
    // Its own tail may hold records no leader committed: shown once a
    // leader says so, or once this node leads.
    // A snapshot is of committed records only (a leader's ledger applies
    // nothing else), and may be newer than the mark.
    absl::StatusOr<uint64_t> mark = impl->store->CommittedMark();
    if (!mark.ok()) return fail(mark.status());
    absl::StatusOr<uint64_t> snapshot = impl->store->SnapshotPosition();
    if (!snapshot.ok()) return fail(snapshot.status());
    impl->committed = std::make_unique<CommittedStore>(
        raw_store, std::max(*mark, *snapshot));
    log::Info("log_committed",
              absl::StrCat("the log is shown through position ",
                           impl->committed->committed(), " (committed mark ",
                           *mark, ", snapshot ", *snapshot, ", head ",
                           impl->store->Head().position,
                           ") until a leader says more"),
              {{"committed", impl->committed->committed()},
               {"mark", *mark},
               {"snapshot", *snapshot}});
  } else if (options.sync_followers > 0 || !options.follow.empty()) {
    impl->committed = std::make_unique<CommittedStore>(raw_store);
  }
  if (options.sync_followers > 0) {
    impl->tracker = std::make_unique<CommitTracker>(
        options.sync_followers, [raw = impl.get()](uint64_t position) {
          // Fenced: a leader whose lease may have run out acknowledges
          // nothing.
          ShardNode* node = raw->shard_node_ptr.load(std::memory_order_acquire);
          if (raw->failover() && (node == nullptr || !node->MayAcknowledge())) {
            return;
          }
          raw->committed->SetCommitted(position);
        });
    impl->deadline_timer = std::make_unique<DeadlineTimer>();
    ctx.commit_wait = {impl->tracker.get(), impl->committed.get(),
                       impl->deadline_timer.get(), options.sync_timeout};
  }
  ctx.committed = impl->committed.get();
  impl->replication->Attach(
      raw_store, impl->tracker ? impl->committed.get() : nullptr,
      impl->tracker.get());
  ctx.backup = [raw_store](const std::string& dir) {
    return raw_store->Checkpoint(dir);
  };
  absl::StatusOr<std::string> kek =
      ReadDataKey(options.data_key_file, options.data_key, options.data_dir);
  if (!kek.ok()) return fail(kek.status());
  absl::StatusOr<std::unique_ptr<PersonalData>> personal_data =
      PersonalData::Open(raw_store, std::move(*kek));
  if (!personal_data.ok()) return fail(personal_data.status());
  impl->personal_data = std::move(*personal_data);
  ctx.personal_data = impl->personal_data.get();
  if (!impl->personal_data->can_seal()) {
    log::Warning("no_data_key",
                 "started without --data-key-file: requests with contacts "
                 "(personal data) are refused (NO_DATA_KEY)");
  }
  LedgerOptions ledger_options;
  ledger_options.personal_data = impl->personal_data.get();
  ledger_options.snapshot_every_events = options.snapshot_every_events;
  ledger_options.on_snapshot = [](const Ledger::SnapshotInfo& snapshot,
                                  const absl::Status& status) {
    if (status.ok()) {
      log::Info("snapshot_saved",
                absl::StrCat("snapshot saved at position ", snapshot.position),
                {{"position", snapshot.position},
                 {"duration_ms", absl::ToDoubleMilliseconds(snapshot.took)}});
    } else {
      log::Warning("snapshot_failed",
                   absl::StrCat("snapshot failed: ", status.ToString()));
    }
  };
  ledger_options.on_warm_up = [](size_t accounts, absl::Duration took,
                                 const absl::Status& status) {
    if (status.ok()) {
      log::Info("accounts_loaded",
                absl::StrCat("loaded ", accounts, " accounts"),
                {{"accounts", static_cast<uint64_t>(accounts)},
                 {"duration_ms", absl::ToDoubleMilliseconds(took)}});
    } else {
      log::Error("account_load_failed",
                 absl::StrCat("an account does not load: ", status.ToString()));
    }
  };
  absl::StatusOr<std::unique_ptr<Ledger>> ledger =
      Ledger::Open(impl->log(), impl->clock.get(), ledger_options);
  if (!ledger.ok()) return fail(WithDamageAdvice(ledger.status()));
  // A data directory of another shard (or of a server before the split)
  // is not served as this one: its accounts would answer from two places.
  for (const std::string& account : (*ledger)->AccountIds()) {
    if (!ctx.shard.Owns(account)) {
      return fail(absl::FailedPreconditionError(absl::StrCat(
          "the log at ", options.data_dir, " holds account ",
          core::Quote(account), " of shard ",
          core::ShardOf(account, ctx.shard.count), " of ", ctx.shard.count,
          ", not of --shard=", ctx.shard.ToString())));
    }
  }
  impl->ledger = std::move(*ledger);
  // One tick a second: each stream's heartbeat is due within a second of
  // its interval.
  impl->tail = std::make_unique<LogTail>(
      impl->log(),
      std::min(absl::Seconds(1), options.heartbeat_interval));
  ctx.tail.store(impl->tail.get(), std::memory_order_release);
  ctx.ready_ledger.store(impl->ledger.get(), std::memory_order_release);

  if (failover) {
    absl::StatusOr<std::unique_ptr<EtcdCoordinator>> etcd =
        EtcdCoordinator::Create({options.etcd_endpoints, options.etcd_prefix});
    if (!etcd.ok()) return fail(etcd.status());
    ShardNodeOptions node;
    node.elector.me = {NodeName(options, impl->port), options.advertise_address,
                       0};
    node.elector.lease = options.lease;
    node.elector.renew_every = options.lease / 5;
    node.elector.fence_after = options.lease * 4 / 5;
    node.take_over_timeout = options.sync_timeout;
    // The other nodes are reached as --follow reaches its leader.
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> to_nodes =
        ClientCredentials({options.follow_tls_ca, options.follow_tls_cert,
                           options.follow_tls_key});
    if (!to_nodes.ok()) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat("--follow-", to_nodes.status().message())));
    }
    node.connect = [credentials = *to_nodes](const std::string& address) {
      return NewClientChannel(address, credentials);
    };
    node.restart = options.on_restart;
    node.rewind_request = RewindRequestPath(options.data_dir);
    impl->shard_node = std::make_unique<ShardNode>(
        *std::move(etcd),
        ShardNodeParts{impl->store.get(), impl->committed.get(),
                       impl->ledger.get(), &ctx},
        std::move(node));
    impl->shard_node_ptr.store(impl->shard_node.get(),
                               std::memory_order_release);
    ShardNode* shard_node = impl->shard_node.get();
    ctx.replication = [shard_node] { return shard_node->replication(); };
  }
  if (leader_channel != nullptr) {
    // A replica: its leader's log brings every change, the leader's
    // scheduler's ticks included.
    FollowerOptions follow;
    follow.leader = options.follow;
    follow.channel = std::move(leader_channel);
    follow.on_fatal = options.on_fatal;
    follow.node = NodeName(options, impl->port);
    follow.synchronous = options.sync_follower;
    impl->follower = std::make_unique<Follower>(
        impl->store.get(), impl->committed.get(), impl->ledger.get(),
        std::move(follow));
    Follower* follower = impl->follower.get();
    ctx.replication = [follower] { return follower->status(); };
  }
  if (leader_channel == nullptr && impl->manual_clock == nullptr) {
    Impl* raw = impl.get();
    impl->scheduler = std::thread([raw] {
      SetCurrentThreadName("pl-scheduler");
      // Tick once at start (expiries that fell due while down), then on
      // every interval until shutdown, while this server leads.
      do {
        if (!raw->context.role.is_leader()) continue;
        absl::StatusOr<int> ticked = raw->ledger->TickAll([raw] {
          return raw->shutting_down.HasBeenNotified() ||
                 !raw->context.role.is_leader();
        });
        if (!ticked.ok()) {
          log::Error("tick_failed",
                     absl::StrCat("scheduler: ", ticked.status().ToString()));
        }
      } while (!raw->shutting_down.WaitForNotificationWithTimeout(
          raw->options.tick_interval));
    });
  }
  if (options.scrub_interval > absl::ZeroDuration()) {
    ScrubberOptions scrub;
    scrub.interval = options.scrub_interval;
    scrub.first_pass_after = std::min(absl::Seconds(10), options.scrub_interval);
    scrub.on_pass = [](const ScrubReport& r) {
      if (r.result.ok()) {
        log::Info("scrub_passed",
                  absl::StrCat("scrub verified the log through position ",
                               r.verified_through),
                  {{"verified_through", r.verified_through},
                   {"duration_ms", absl::ToDoubleMilliseconds(r.took)}});
      } else {
        log::Error("scrub_failed",
                   absl::StrCat("scrub found the log damaged: ",
                                r.result.message(),
                                " (nothing repaired; see README, When things "
                                "go wrong)"),
                   {{"verified_through", r.verified_through},
                    {"cause", std::string(r.result.message())}});
      }
    };
    impl->scrubber =
        std::make_unique<Scrubber>(impl->store.get(), std::move(scrub));
    Scrubber* scrubber = impl->scrubber.get();
    ctx.scrub = [scrubber] { return scrubber->report(); };
  }
  if (impl->metrics != nullptr) {
    Impl* raw = impl.get();
    impl->metrics->SetLive([raw] { return ReadLiveValues(*raw); });
  }
  impl->SetReady(true);
  return std::unique_ptr<PoledgerServer>(new PoledgerServer(std::move(impl)));
}

void PoledgerServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->shutdown_mu);
    if (impl_->shutdown_started) return;
    impl_->shutdown_started = true;
  }
  impl_->SetReady(false);
  // No scrape after this: it reads the ledger and the store.
  if (impl_->metrics != nullptr) impl_->metrics->StopServing();
  impl_->shutting_down.Notify();
  if (impl_->http != nullptr) impl_->http->Stop();
  if (impl_->shard_node != nullptr) impl_->shard_node->Stop();
  if (impl_->follower != nullptr) impl_->follower->Stop();
  if (impl_->replication != nullptr) impl_->replication->Stop();
  // Streams end at once with UNAVAILABLE (resume after their last
  // position); unary calls finish, or are cancelled after the grace period.
  if (impl_->tail != nullptr) impl_->tail->Stop();
  impl_->server->Shutdown(std::chrono::system_clock::now() +
                          absl::ToChronoMilliseconds(grace));
  if (impl_->health_server != nullptr) impl_->health_server->Shutdown();
  // Its streams ended with the server's.
  if (impl_->http != nullptr) impl_->http->Wait();
  if (impl_->scheduler.joinable()) impl_->scheduler.join();
  impl_->scrubber.reset();
  // Appends still waiting for their followers are answered (UNAVAILABLE).
  if (impl_->committed != nullptr) impl_->committed->Close();
  impl_->store->Close();
  impl_->CloseHealth();
  impl_->shut_down.Notify();
}

absl::Status PoledgerServer::Reload() {
  std::vector<std::string> errors;
  if (impl_->tls != nullptr) {
    if (absl::Status s = impl_->tls->Reload(); !s.ok()) {
      errors.push_back(absl::StrCat("TLS files kept: ", s.message()));
    }
  }
  if (impl_->http != nullptr) {
    if (absl::Status s = impl_->http->ReloadTls(); !s.ok()) {
      errors.push_back(absl::StrCat("HTTPS files kept: ", s.message()));
    }
  }
  if (!impl_->options.authz_policy.empty()) {
    absl::StatusOr<v1::AuthorizationPolicy> policy =
        api::LoadPolicy(impl_->options.authz_policy);
    absl::StatusOr<api::Authorizer> authorizer =
        policy.ok() ? api::Authorizer::FromPolicy(*policy)
                    : absl::StatusOr<api::Authorizer>(policy.status());
    if (authorizer.ok()) {
      impl_->context.set_authorizer(
          std::make_shared<const api::Authorizer>(*std::move(authorizer)));
      // Open streams whose caller lost its access end now.
      if (LogTail* tail = impl_->context.tail.load(std::memory_order_acquire)) {
        tail->RecheckAll();
      }
    } else {
      errors.push_back(
          absl::StrCat("policy kept: ", authorizer.status().message()));
    }
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
}

void PoledgerServer::Wait() {
  impl_->shut_down.WaitForNotification();
  impl_->server->Wait();
  if (impl_->health_server != nullptr) impl_->health_server->Wait();
}

}  // namespace poledger
