// PoledgerServer: the whole server (event store, ledger, gRPC services,
// health, reflection, scheduler) behind one object, so that main() and
// in-process tests start it the same way.
//
// Thread safety: Shutdown may be called from any thread, once.
#ifndef POLEDGER_SERVER_SERVER_H_
#define POLEDGER_SERVER_SERVER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace poledger {

class Ledger;

struct ServerOptions {
  // host:port; port 0 picks a free one (see PoledgerServer::port()).
  std::string listen = "127.0.0.1:50051";
  std::string data_dir = "./data";
  // "real", or "manual:2026-01-15T00:00:00Z".
  std::string clock = "real";
  // With the real clock, how often the scheduler expires purchase orders
  // and raises reminders.
  absl::Duration tick_interval = absl::Seconds(30);
  // A snapshot after this many events (0: only on request).
  uint64_t snapshot_every_events = 250000;
  // The key-encryption key of the personal data keys (README "Personal
  // data"): a file outside the data directory holding 64 hex digits, or
  // the digits themselves (data_key; empty: the environment's
  // POLEDGER_DATA_KEY, never a command line). Neither: contacts are
  // refused, and a data directory holding personal data does not start.
  std::string data_key_file;
  std::string data_key;
  // Idle streams send a heartbeat this often.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // Largest request or response message.
  int max_message_bytes = 4 << 20;

  // Connection limits: what a client that connects and then says nothing,
  // or holds connections open unused, may take.
  // A connection must finish its handshake (TLS, and the HTTP/2 preface
  // with SETTINGS) within this, or it is closed.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // A connection with no call in progress for this long is closed (with
  // GOAWAY); streams in progress keep it open.
  absl::Duration max_connection_idle = absl::Minutes(5);
  // The server pings a quiet connection this often and closes it when the
  // ping is not answered within keepalive_timeout.
  absl::Duration keepalive_time = absl::Minutes(1);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Clients may ping at most this often (more often twice: GOAWAY).
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  // Concurrent calls (streams) per connection; more wait for a free one.
  int max_concurrent_streams = 1000;
  // Records a subscription queues for a client that reads slowly; past
  // that it reads them from the log again when the client catches up.
  int stream_queue_records = 1024;
  // Streams (SubscribeEvents, SubscribeNotifications, over gRPC and as
  // server-sent events together) one caller may hold open; one more is
  // RESOURCE_EXHAUSTED, reason TOO_MANY_STREAMS. The caller is its
  // identity, or its host on a server without TLS. 0: no limit.
  int max_streams_per_identity = 100;
  // How often the whole log is verified again in the background
  // (Scrubber), the first time min(10 s, this) after the start; zero: never.
  absl::Duration scrub_interval = absl::Hours(24);

  // Security. Mutual TLS: the server's certificate chain and key, and the
  // CA bundle that signs client certificates (all three, or none for
  // plaintext). Plaintext is for development: on an address other than
  // loopback it needs insecure_plaintext.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  bool insecure_plaintext = false;
  // Who may do what (v1::AuthorizationPolicy, text format or .json). With
  // TLS, one of a policy or authz_allow_all is required; plaintext allows
  // every call.
  std::string authz_policy;
  bool authz_allow_all = false;
  // Client identities of proxies (HAProxy) that verify their callers'
  // certificates and forward them (x-poledger-client-cert): their calls
  // are their callers'. With TLS only.
  std::vector<std::string> trusted_proxy_identities;

  // If set, a second, plaintext listener that serves only grpc.health.v1
  // (the same status as the API's), for probes that cannot speak mutual TLS
  // (Kubernetes gRPC probes, container health checks).
  std::string health_listen;

  // If set, serves the HTTP/JSON API and the web console here
  // (server/http_gateway.h): HTTPS with the TLS files above when they are
  // given, else plain HTTP (on loopback, or with insecure_plaintext).
  std::string http_listen;

  // What the open checks: "mark" (the records after the verified-through
  // mark, which snapshots and a clean stop move to the head) or "full"
  // (every record's hash and chain link).
  std::string verify_on_open = "mark";

  // If set, serves Prometheus metrics at http://ADDRESS/metrics.
  std::string metrics_listen;

  // "I/N": serve only the accounts of shard I of N (see core/shard.h);
  // empty: one shard of one.
  std::string shard;

  // A read replica: the leader's address, whose log it copies (see
  // server/follower.h); writes are refused (READ_ONLY_REPLICA). TLS to the
  // leader as a client has it (all empty: plaintext); the identity needs
  // the leader's log access.
  std::string follow;
  std::string follow_tls_ca;
  std::string follow_tls_cert;
  std::string follow_tls_key;
  // A follower whose acknowledgements its leader counts toward
  // --sync-followers (without it, a read replica: not counted).
  bool sync_follower = false;
  // This node's name, as a leader reports its followers (default: the
  // host name and port it listens on).
  std::string node_name;
  // A leader: acknowledge a write only once this many synchronous followers
  // store it durably too (0: on this node's own synced commit).
  int sync_followers = 0;
  // With sync_followers: how long a write waits for them when its call has
  // no earlier deadline; then it fails UNAVAILABLE (NOT_REPLICATED).
  absl::Duration sync_timeout = absl::Seconds(10);
  // Automatic failover on etcd (server/shard_node.h): etcd's client URLs
  // (empty: no failover). The node then starts as a follower, and leads
  // when etcd elects it; it needs sync_followers >= 1 and an
  // advertise_address, and takes no `follow`.
  std::vector<std::string> etcd_endpoints;
  // The shard's keys in etcd.
  std::string etcd_prefix = "/poledger/shard";
  // The address other nodes and proxies reach this node's gRPC port at.
  std::string advertise_address;
  // The leader key's lease: a leader that cannot renew it stops
  // acknowledging after 80% of it; a follower takes over after it.
  absl::Duration lease = absl::Seconds(5);
  // Called once when a node must restart to rejoin its shard as a follower
  // (it stepped down, or its log must be rewound): the caller stops the
  // server and starts it again. Default: it stays a follower that follows
  // nobody.
  std::function<void(const std::string& why)> on_restart;
  // Called once if the replica cannot go on (its leader's log differs from
  // its own: DATA_LOSS naming the first differing position); the caller
  // should shut the server down. Default: only the error log.
  std::function<void(const absl::Status&)> on_fatal;

  // Unary calls slower than this are logged.
  absl::Duration slow_call = absl::Seconds(1);
};

// INVALID_ARGUMENT saying why if the security options do not go together
// (half a TLS configuration, plaintext off loopback without
// insecure_plaintext, TLS without a policy or authz_allow_all).
absl::Status CheckSecurityOptions(const ServerOptions& options);

// INVALID_ARGUMENT saying why if the failover options do not go together
// (etcd endpoints without sync_followers or advertise_address, with
// follow, or a lease under 3 seconds).
absl::Status CheckFailoverOptions(const ServerOptions& options);

class PoledgerServer {
 public:
  // Starts listening (health NOT_SERVING), opens the event log, loads the
  // ledger, then reports SERVING. Errors: INVALID_ARGUMENT for bad options,
  // UNAVAILABLE if it cannot listen, or the store's or ledger's error.
  static absl::StatusOr<std::unique_ptr<PoledgerServer>> Start(
      const ServerOptions& options);
  ~PoledgerServer();

  int port() const;
  // The health-only listener's port (0 without one).
  int health_port() const;
  // The metrics listener's port (0 without one).
  int metrics_port() const;
  // The HTTP/JSON listener's port (0 without one).
  int http_port() const;
  Ledger* ledger() const;
  // Records the open checked, and from which position.
  uint64_t open_checked_records() const;
  uint64_t open_checked_from() const;
  // What RocksDB's recovery skipped as damaged at open ("" nothing).
  std::string open_recovery_skipped() const;

  // Ends streams with UNAVAILABLE, lets in-flight calls finish for up to
  // `grace`, stops the scheduler and closes the event log.
  void Shutdown(absl::Duration grace);
  // Blocks until Shutdown has finished.
  void Wait();

  // Re-reads the TLS files and the authorization policy (SIGHUP). What
  // fails to load is kept as it was; the status says what and why.
  absl::Status Reload();

  struct Impl;

 private:
  explicit PoledgerServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Parses --clock: returns the manual start time, or std::nullopt for real.
absl::StatusOr<std::optional<absl::Time>> ParseClockFlag(
    const std::string& clock);

}  // namespace poledger

#endif  // POLEDGER_SERVER_SERVER_H_
