// The server's options: the clock flag, the node's name, and which
// security options go together.
#include <unistd.h>

#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/server.h"
#include "server/server_impl.h"

namespace poledger {

// --node-name, or this host's name and the port it serves.
std::string NodeName(const ServerOptions& options, int port) {
  if (!options.node_name.empty()) return options.node_name;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] != '\0' ? host : "node", ":", port);
}

absl::StatusOr<std::optional<absl::Time>> ParseClockFlag(
    const std::string& clock) {
  if (clock == "real") return std::optional<absl::Time>();
  if (!absl::StartsWith(clock, "manual:")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--clock: '", clock, "' is neither 'real' nor 'manual:TIME'"));
  }
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, clock.substr(7), &t, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--clock: '", clock.substr(7),
                     "' is not an RFC 3339 time such as "
                     "2026-01-15T00:00:00Z: ", error));
  }
  return std::optional<absl::Time>(t);
}


namespace {

bool IsLoopback(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}


}  // namespace

absl::Status CheckSecurityOptions(const ServerOptions& options) {
  const int tls_files = !options.tls_cert.empty() + !options.tls_key.empty() +
                        !options.tls_client_ca.empty();
  if (tls_files != 0 && tls_files != 3) {
    return absl::InvalidArgumentError(
        "mutual TLS needs --tls-cert, --tls-key and --tls-client-ca together");
  }
  if (tls_files == 0) {
    if (!options.http_listen.empty() && !IsLoopback(options.http_listen) &&
        !options.insecure_plaintext) {
      return absl::InvalidArgumentError(absl::StrCat(
          "refusing to serve HTTP on ", options.http_listen,
          " without TLS: give the TLS flags (the HTTP listener uses them too), "
          "listen on loopback, or pass --insecure-plaintext to accept the "
          "risk"));
    }
    if (!IsLoopback(options.listen) && !options.insecure_plaintext) {
      return absl::InvalidArgumentError(absl::StrCat(
          "refusing to listen on ", options.listen,
          " without TLS: anyone who reaches it could read and change every "
          "account. Give --tls-cert, --tls-key and --tls-client-ca, listen on "
          "loopback, or pass --insecure-plaintext to accept the risk"));
    }
    if (!options.authz_policy.empty()) {
      return absl::InvalidArgumentError(
          "--authz-policy needs TLS: without client certificates no caller "
          "has an identity");
    }
    if (!options.trusted_proxy_identities.empty()) {
      return absl::InvalidArgumentError(
          "--trusted-proxy-identity needs TLS: without client certificates "
          "no proxy can be told from anyone else");
    }
    return absl::OkStatus();
  }
  if (options.insecure_plaintext) {
    return absl::InvalidArgumentError(
        "--insecure-plaintext and the TLS flags contradict each other");
  }
  if (options.authz_policy.empty() == !options.authz_allow_all) {
    return absl::InvalidArgumentError(
        options.authz_allow_all
            ? "--authz-policy and --authz-allow-all contradict each other"
            : "a TLS server needs --authz-policy=FILE (who may do what), or "
              "--authz-allow-all to let every identity do everything");
  }
  return absl::OkStatus();
}

absl::Status CheckFailoverOptions(const ServerOptions& options) {
  if (options.etcd_endpoints.empty()) {
    if (!options.advertise_address.empty()) {
      return absl::InvalidArgumentError(
          "--advertise-address: only with --etcd-endpoints");
    }
    return absl::OkStatus();
  }
  if (!options.follow.empty()) {
    return absl::InvalidArgumentError(
        "--follow: not with --etcd-endpoints (etcd says whom to follow)");
  }
  if (options.sync_followers < 1) {
    return absl::InvalidArgumentError(
        "--sync-followers: at least 1 with --etcd-endpoints (a failover must "
        "not lose an acknowledged write)");
  }
  if (options.advertise_address.empty()) {
    return absl::InvalidArgumentError(
        "--advertise-address: required with --etcd-endpoints (where the "
        "other nodes reach this one)");
  }
  if (options.etcd_prefix.empty() || options.etcd_prefix.back() == '/') {
    return absl::InvalidArgumentError(
        "--etcd-prefix: must be a key prefix such as /poledger/shard-0");
  }
  if (options.lease < absl::Seconds(3)) {
    return absl::InvalidArgumentError(
        "--lease: at least 3s (it is renewed every fifth of it)");
  }
  return absl::OkStatus();
}

}  // namespace poledger
