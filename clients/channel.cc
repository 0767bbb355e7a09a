#include "clients/channel.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "clients/service_config.h"
#include "grpcpp/create_channel.h"

namespace poledger {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

void AddTlsOptions(CLI::App* app, ClientTls* tls, const char* env_prefix) {
  auto add = [&](const char* flag, std::string* value, const char* what,
                 const char* env) {
    CLI::Option* o = app->add_option(flag, *value, what);
    if (env_prefix != nullptr) o->envname(absl::StrCat(env_prefix, env));
  };
  add("--tls-ca", &tls->ca, "PEM CA bundle that signs the server's certificate",
      "_TLS_CA");
  add("--tls-cert", &tls->cert,
      "PEM client certificate (the caller's identity)", "_TLS_CERT");
  add("--tls-key", &tls->key, "PEM private key of --tls-cert", "_TLS_KEY");
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const ClientTls& tls) {
  if (tls.ca.empty() && tls.cert.empty() && tls.key.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  if (tls.ca.empty()) {
    return absl::InvalidArgumentError(
        "--tls-ca is required with TLS: the CA that signs the server's "
        "certificate");
  }
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions options;
  absl::StatusOr<std::string> ca = ReadPem(tls.ca, "--tls-ca");
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = *std::move(ca);
  if (!tls.cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPem(tls.cert, "--tls-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(tls.key, "--tls-key");
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(options);
}

std::shared_ptr<grpc::Channel> NewClientChannel(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials,
    grpc::ChannelArguments args) {
  args.SetServiceConfigJSON(kServiceConfigJson);
  return grpc::CreateCustomChannel(address, std::move(credentials), args);
}

}  // namespace poledger
