// poledger-server: the purchase-order ledger's gRPC server.
//
// Listens at once with health NOT_SERVING, opens the event log (checking the
// records after its verified-through mark), lists the accounts, then reports
// SERVING; the accounts' state loads on first use and in the background.
// SIGHUP re-reads the TLS files and the authorization policy (keeping what
// does not load). SIGTERM or SIGINT shut it down gracefully: streams end with
// UNAVAILABLE, in-flight calls finish (up to a grace period), then the log is
// closed. Nothing acknowledged is lost: every acknowledged append is already
// synced.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ledger/ledger.h"
#include "server/data_key.h"
#include "server/log.h"
#include "server/log_migration.h"
#include "server/server.h"

int main(int argc, char** argv) {
  // Debian's Abseil is built with Mutex deadlock detection on: every lock,
  // ours and gRPC's, then walks a lock graph, ~10% of the server's cycles
  // under write load. The tests keep it on (they run without this main).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  poledger::ServerOptions options;
  double grace_seconds = 10;
  double tick_seconds = 30;
  double heartbeat_seconds = 5;
  std::string scrub_interval = "24h";
  std::string sync_timeout = "10s";
  std::string lease = "5s";
  CLI::App app("poledger-server: the purchase-order ledger's gRPC server");
  app.add_option("--listen", options.listen, "Address to listen on (host:port)")
      ->capture_default_str();
  app.add_option("--data-dir", options.data_dir,
                 "Directory of the embedded RocksDB event log; created if "
                 "missing")
      ->capture_default_str();
  app.add_option("--clock", options.clock,
                 "'real', or 'manual:YYYY-MM-DDTHH:MM:SSZ' (time moves only "
                 "through AdminService.SetTime/AdvanceTime)")
      ->capture_default_str();
  app.add_option("--tick-interval-seconds", tick_seconds,
                 "Real clock: how often expiries and reminders are checked")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--snapshot-every-events", options.snapshot_every_events,
                 "Save a snapshot after this many events (0: only on "
                 "request)")
      ->capture_default_str();
  app.add_option("--data-key-file", options.data_key_file,
                 "File (outside the data directory) holding the key that "
                 "wraps the personal data keys: 64 hex digits, e.g. from "
                 "`openssl rand -hex 32`; or set POLEDGER_DATA_KEY to the "
                 "digits. Needed to store contacts");
  std::string migrate_from;
  app.add_option("--migrate-log-from", migrate_from,
                 "Copy the log of this stopped server's data directory, "
                 "written before contacts were sealed, into the new "
                 "--data-dir with its contacts sealed (--data-key-file); "
                 "verify the copy, print each record's old and new hash, "
                 "then exit");
  std::string new_data_key_file;
  app.add_option("--rotate-data-key-to", new_data_key_file,
                 "Rotate the key of --data-key-file to the one in this file "
                 "(a new `openssl rand -hex 32`): rewrap every personal "
                 "data key of the stopped server's --data-dir, then exit");
  app.add_option("--heartbeat-seconds", heartbeat_seconds,
                 "Idle streams send a heartbeat this often")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-message-bytes", options.max_message_bytes,
                 "Largest request or response message")
      ->capture_default_str()
      ->check(CLI::Range(1024, 64 << 20));
  app.add_option("--shutdown-grace-seconds", grace_seconds,
                 "How long in-flight calls may run after SIGTERM before they "
                 "are cancelled")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  double handshake_seconds = 10;
  double idle_seconds = 300;
  double keepalive_seconds = 60;
  double keepalive_timeout_seconds = 20;
  double min_ping_seconds = 10;
  app.add_option("--handshake-timeout-seconds", handshake_seconds,
                 "A connection that has not completed its handshake (HTTP/2 "
                 "preface and SETTINGS, TLS) by then is closed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-connection-idle-seconds", idle_seconds,
                 "A connection without a call in progress this long is closed "
                 "(GOAWAY); open streams keep it")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--keepalive-seconds", keepalive_seconds,
                 "The server pings a quiet connection this often")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--keepalive-timeout-seconds", keepalive_timeout_seconds,
                 "A connection whose ping is not answered this long is closed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--min-client-ping-seconds", min_ping_seconds,
                 "Clients may ping at most this often (GOAWAY after two "
                 "strikes)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-concurrent-streams", options.max_concurrent_streams,
                 "Concurrent calls per connection")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--stream-queue-records", options.stream_queue_records,
                 "Records a stream queues for a slow client before it reads "
                 "them from the log again")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--scrub-interval", scrub_interval,
                 "How often the whole log is verified again in the "
                 "background, at low priority (a duration: 24h, 30m, 90s; "
                 "0 never)")
      ->capture_default_str();
  app.add_option("--max-streams-per-identity",
                 options.max_streams_per_identity,
                 "Streams one caller may hold open (gRPC and HTTP together; "
                 "0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--tls-cert", options.tls_cert,
                 "PEM certificate chain of the server (mutual TLS; re-read on "
                 "SIGHUP)");
  app.add_option("--tls-key", options.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", options.tls_client_ca,
                 "PEM CA bundle that signs the clients' certificates");
  app.add_flag("--insecure-plaintext", options.insecure_plaintext,
               "Allow plaintext on an address other than loopback");
  app.add_option("--authz-policy", options.authz_policy,
                 "Authorization policy (poledger.v1.AuthorizationPolicy, text "
                 "format or .json; re-read on SIGHUP)");
  app.add_option("--trusted-proxy-identity", options.trusted_proxy_identities,
                 "Identity of a proxy in front of this server (HAProxy) that "
                 "verifies its callers' certificates and forwards them in "
                 "x-poledger-client-cert: its calls are its callers' "
                 "(comma-separated for several)")
      ->delimiter(',');
  app.add_flag("--authz-allow-all", options.authz_allow_all,
               "With TLS and no policy: every identity may do everything");
  app.add_option("--shard", options.shard,
                 "I/N: serve only the accounts of shard I of N "
                 "(crc32(account id) mod N); calls for other accounts are "
                 "refused with WRONG_SHARD");
  app.add_option("--follow", options.follow,
                 "LEADER_ADDRESS: run as a read replica of that server: copy "
                 "its log (each record's hash and chain link checked), serve "
                 "every read and stream, refuse writes (READ_ONLY_REPLICA)");
  app.add_option("--follow-tls-ca", options.follow_tls_ca,
                 "With --follow over TLS: the CA bundle that signs the "
                 "leader's certificate");
  app.add_option("--follow-tls-cert", options.follow_tls_cert,
                 "With --follow over TLS: this replica's client certificate "
                 "(an identity with the leader's log access)");
  app.add_option("--follow-tls-key", options.follow_tls_key,
                 "With --follow over TLS: the key of --follow-tls-cert");
  app.add_flag("--sync-follower", options.sync_follower,
               "With --follow: a synchronous follower, whose acknowledgements "
               "the leader counts toward its --sync-followers");
  app.add_option("--node-name", options.node_name,
                 "This node's name in its shard (default: host:port)");
  app.add_option("--sync-followers", options.sync_followers,
                 "K: acknowledge a write only once K synchronous followers "
                 "(--sync-follower) store it durably too; 0: on this node's "
                 "own synced commit")
      ->check(CLI::Range(0, 16))
      ->capture_default_str();
  app.add_option("--sync-timeout", sync_timeout,
                 "With --sync-followers: how long a write without an earlier "
                 "deadline waits for its followers before it fails "
                 "UNAVAILABLE (NOT_REPLICATED), e.g. 10s")
      ->capture_default_str();
  app.add_option("--etcd-endpoints", options.etcd_endpoints,
                 "etcd's client URLs (comma-separated, e.g. "
                 "http://127.0.0.1:2379): run as a node of a shard with "
                 "automatic failover; needs --sync-followers and "
                 "--advertise-address")
      ->delimiter(',');
  app.add_option("--etcd-prefix", options.etcd_prefix,
                 "With --etcd-endpoints: the shard's key prefix in etcd "
                 "(one per shard, the same on its nodes)")
      ->capture_default_str();
  app.add_option("--advertise-address", options.advertise_address,
                 "With --etcd-endpoints: host:port where the other nodes "
                 "reach this node's gRPC listener");
  app.add_option("--lease", lease,
                 "With --etcd-endpoints: the leader's lease in etcd; a leader "
                 "that cannot renew it acknowledges nothing after 80% of it, "
                 "and a follower takes over once it runs out")
      ->capture_default_str();
  app.add_option("--verify-on-open", options.verify_on_open,
                 "What opening the log checks: 'mark' (the records after the "
                 "verified-through mark) or 'full' (every record)")
      ->check(CLI::IsMember({"mark", "full"}))
      ->capture_default_str();
  app.add_option("--metrics-listen", options.metrics_listen,
                 "Serve Prometheus metrics at http://ADDRESS/metrics (e.g. "
                 "127.0.0.1:9464)");
  app.add_option("--http-listen", options.http_listen,
                 "Also serve the HTTP/JSON API and the web console here (e.g. "
                 "127.0.0.1:8080): HTTPS with the TLS flags, else HTTP");
  app.add_option("--health-listen", options.health_listen,
                 "Also serve grpc.health.v1 alone, in plaintext, here (for "
                 "probes that cannot present a client certificate)");
  std::string log_format = "text";
  app.add_option("--log-format", log_format,
                 "text (one line per event, for a terminal) or json (one JSON "
                 "object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  int slow_call_ms = 1000;
  app.add_option("--slow-call-ms", slow_call_ms,
                 "Log calls that take longer than this")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  // Every flag can also come from the environment: --foo-bar from
  // POLEDGER_FOO_BAR (the command line wins), so a container or a systemd
  // unit needs no wrapper script.
  for (CLI::Option* option : app.get_options()) {
    if (option->get_lnames().empty()) continue;
    const std::string name = option->get_lnames()[0];
    // A one-off command, never a standing setting.
    if (name == "help" || name == "rotate-data-key-to" ||
        name == "migrate-log-from") {
      continue;
    }
    std::string env = "POLEDGER_";
    for (char c : name) {
      env +=
          c == '-'
              ? '_'
              : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    option->envname(env);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  poledger::log::Init(log_format == "json" ? poledger::log::Format::kJson
                                           : poledger::log::Format::kText);
  if (!migrate_from.empty()) {
    absl::StatusOr<std::string> kek = poledger::ReadDataKey(
        options.data_key_file, options.data_key, options.data_dir);
    absl::StatusOr<poledger::MigrationReport> report =
        kek.ok() ? poledger::MigrateLog(migrate_from, options.data_dir, *kek,
                                        std::cout)
                 : absl::StatusOr<poledger::MigrationReport>(kek.status());
    if (!report.ok()) {
      std::cerr << "copying the log: " << report.status().message() << "\n";
      return 1;
    }
    std::cerr << "copied " << report->records << " records (" << report->events
              << " events) into " << options.data_dir << ", sealing "
              << report->contacts << " contacts; both logs verified\n"
              << "old digest " << report->old_digest << "\nnew digest "
              << report->new_digest << "\n";
    return 0;
  }
  if (!new_data_key_file.empty()) {
    absl::StatusOr<size_t> rotated = poledger::RotateDataKey(
        options.data_dir, options.data_key_file, new_data_key_file);
    if (!rotated.ok()) {
      std::cerr << "rotating the data key: " << rotated.status().message()
                << "\n";
      return 1;
    }
    std::cout << "rewrapped " << *rotated << " personal data keys under "
              << new_data_key_file << "; start the server with it\n";
    return 0;
  }
  options.slow_call = absl::Milliseconds(slow_call_ms);
  options.tick_interval = absl::Seconds(tick_seconds);
  options.heartbeat_interval = absl::Seconds(heartbeat_seconds);
  if (!absl::ParseDuration(scrub_interval, &options.scrub_interval) ||
      options.scrub_interval < absl::ZeroDuration()) {
    std::cerr << "--scrub-interval: '" << scrub_interval
              << "' is not a duration such as 24h, 30m or 90s (0: never)\n";
    return 2;
  }
  if (!absl::ParseDuration(sync_timeout, &options.sync_timeout) ||
      options.sync_timeout <= absl::ZeroDuration()) {
    std::cerr << "--sync-timeout: '" << sync_timeout
              << "' is not a positive duration such as 10s or 500ms\n";
    return 2;
  }
  if (!absl::ParseDuration(lease, &options.lease) ||
      options.lease <= absl::ZeroDuration()) {
    std::cerr << "--lease: '" << lease
              << "' is not a positive duration such as 10s\n";
    return 2;
  }
  if (absl::Status s = poledger::CheckFailoverOptions(options); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 2;
  }
  if (options.sync_follower && options.follow.empty()) {
    std::cerr << "--sync-follower needs --follow (the leader to follow)\n";
    return 2;
  }
  options.handshake_timeout = absl::Seconds(handshake_seconds);
  options.max_connection_idle = absl::Seconds(idle_seconds);
  options.keepalive_time = absl::Seconds(keepalive_seconds);
  options.keepalive_timeout = absl::Seconds(keepalive_timeout_seconds);
  options.min_client_ping_interval = absl::Seconds(min_ping_seconds);
  if (auto clock = poledger::ParseClockFlag(options.clock); !clock.ok()) {
    std::fprintf(stderr, "%s\n", std::string(clock.status().message()).c_str());
    return 2;
  }
  if (absl::Status s = poledger::CheckSecurityOptions(options); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 2;
  }

  // absl's lock-order checking is a debugging aid that costs on every lock;
  // the tests run with it, the production binary without.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Signals are taken by sigwait in main; block them before any thread
  // starts so that no other thread receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  poledger::log::Info("server_starting", "poledger-server starting",
                      {{"listen", options.listen},
                       {"data_dir", options.data_dir},
                       {"tls", !options.tls_cert.empty()},
                       {"verify_on_open", options.verify_on_open}});
  // A replica that cannot go on (its leader's log differs) stops the
  // server, which exits with status 1.
  std::atomic<bool> failed{false};
  options.on_fatal = [&failed](const absl::Status&) {
    failed = true;
    kill(getpid(), SIGTERM);
  };
  // A node of a shard with failover that must rejoin as a follower stops
  // the server and starts this program again, in the same process.
  std::atomic<bool> restart{false};
  options.on_restart = [&restart](const std::string&) {
    restart = true;
    kill(getpid(), SIGTERM);
  };
  auto server = poledger::PoledgerServer::Start(options);
  if (!server.ok()) {
    poledger::log::Error(
        "server_start_failed",
        absl::StrCat("cannot start: ", server.status().ToString()),
        {{"code", absl::StatusCodeToString(server.status().code())}});
    // A certificate, key or policy that does not load is a bad flag.
    return absl::IsInvalidArgument(server.status()) ? 2 : 1;
  }
  const poledger::LogHead head = (*server)->ledger()->store()->Head();
  poledger::log::Info("log_open",
                      absl::StrCat("event log open: head ", head.position,
                                   ", digest ", poledger::HashToHex(head.hash)),
                      {{"head", head.position},
                       {"digest", poledger::HashToHex(head.hash)},
                       {"checked_records", (*server)->open_checked_records()},
                       {"checked_from", (*server)->open_checked_from()}});
  if ((*server)->metrics_port() != 0) {
    const std::string metrics_host =
        options.metrics_listen.substr(0, options.metrics_listen.rfind(':'));
    poledger::log::Info("metrics_listening",
                        absl::StrCat("metrics on http://", metrics_host, ":",
                                     (*server)->metrics_port(), "/metrics"));
  }
  if ((*server)->http_port() != 0) {
    const std::string http_host =
        options.http_listen.substr(0, options.http_listen.rfind(':'));
    poledger::log::Info(
        "http_listening",
        absl::StrCat("HTTP/JSON API and console on ",
                     options.tls_cert.empty() ? "http" : "https", "://",
                     http_host, ":", (*server)->http_port(), "/console/"),
        {{"address", absl::StrCat(http_host, ":", (*server)->http_port())}});
  }
  if ((*server)->health_port() != 0) {
    const std::string health_host =
        options.health_listen.substr(0, options.health_listen.rfind(':'));
    poledger::log::Info("health_listening",
                        absl::StrCat("health (plaintext) on ", health_host, ":",
                                     (*server)->health_port()));
  }
  // Tests and scripts read the bound port from this line.
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  poledger::log::Info(
      "server_serving",
      absl::StrCat("poledger-server listening on ", host, ":",
                   (*server)->port(), ", serving"),
      {{"address", absl::StrCat(host, ":", (*server)->port())}});

  int signal = 0;
  for (;;) {
    sigwait(&signals, &signal);
    if (signal != SIGHUP) break;
    absl::Status reloaded = (*server)->Reload();
    if (reloaded.ok()) {
      poledger::log::Info("reloaded", "SIGHUP: TLS files and policy reloaded");
    } else {
      poledger::log::Warning("reload_failed",
                             absl::StrCat("SIGHUP: ", reloaded.message()));
    }
  }
  poledger::log::Info("server_stopping",
                      absl::StrCat("signal ", signal, ": shutting down"),
                      {{"signal", signal}});
  // Rejoining: the calls in flight are answered already.
  (*server)->Shutdown(
      absl::Seconds(restart ? std::min(grace_seconds, 1.0) : grace_seconds));
  (*server)->Wait();
  server->reset();
  poledger::log::Info("server_stopped", "poledger-server stopped");
  if (restart) {
    poledger::log::Info("server_restarting",
                        "poledger-server starts again to rejoin its shard");
    std::fflush(nullptr);
    execv("/proc/self/exe", argv);
    poledger::log::Error("restart_failed",
                         absl::StrCat("cannot start again: ", strerror(errno)));
    return 1;
  }
  return failed ? 1 : 0;
}
