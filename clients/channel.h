// The channel every shipped client opens: with poledger's service config
// (clients/service_config.json): a 10 s deadline for unary calls, and
// UNAVAILABLE retried up to 5 attempts with exponential backoff (0.5 s
// doubling, jittered). Writes are safe to retry because they carry request ids
// (and invoices their ids); streams are not retried, their callers resume after
// a position.
//
// With TLS options the channel speaks TLS, checks the server's certificate
// against --tls-ca and presents --tls-cert/--tls-key as the client's identity
// (the server's authorization policy names it).
#ifndef POLEDGER_CLIENTS_CHANNEL_H_
#define POLEDGER_CLIENTS_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace CLI {
class App;
}  // namespace CLI

namespace poledger {

// TLS files of a client (PEM paths). All empty: plaintext.
struct ClientTls {
  std::string ca;    // CA bundle that signs the server's certificate.
  std::string cert;  // The client's certificate chain (its identity).
  std::string key;   // The client's private key.
};

// Adds --tls-ca, --tls-cert and --tls-key to `app`; with `env_prefix`
// ("POLEDGER_CLIENT"), their defaults come from $POLEDGER_CLIENT_TLS_CA and
// so on.
void AddTlsOptions(CLI::App* app, ClientTls* tls,
                   const char* env_prefix = nullptr);

// Channel credentials for `tls`: plaintext when every path is empty, else
// TLS (--tls-ca required; --tls-cert and --tls-key together).
// INVALID_ARGUMENT naming the flag whose file is missing or unreadable.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const ClientTls& tls);

// A channel to `address` with the service config and `credentials`.
std::shared_ptr<grpc::Channel> NewClientChannel(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials,
    grpc::ChannelArguments args = {});

// A plaintext channel (local development, tests).
inline std::shared_ptr<grpc::Channel> NewClientChannel(
    const std::string& address, grpc::ChannelArguments args = {}) {
  return NewClientChannel(address, grpc::InsecureChannelCredentials(),
                          std::move(args));
}

}  // namespace poledger

#endif  // POLEDGER_CLIENTS_CHANNEL_H_
