// Mutual TLS for the server: gRPC's TLS credentials over certificate files
// that the server re-reads when told (SIGHUP), and the caller's identity
// from its client certificate.
//
// gRPC's file-watcher certificate provider reads files on an interval. The
// server points it at private copies (a 0700 directory of its own) that it
// writes only at start and at Reload, after checking with OpenSSL that the
// key matches the certificate and the CA bundle parses: so the files an
// operator edits take effect at SIGHUP and not before, and a bad file at
// reload keeps the old ones. The watcher picks a new copy up within a
// second; connections made before keep their session.
//
// Thread safety: Reload may run concurrently with calls.
#ifndef POLEDGER_SERVER_TLS_H_
#define POLEDGER_SERVER_TLS_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_context.h"

namespace poledger {

struct TlsFiles {
  std::string cert;       // PEM certificate chain, leaf first.
  std::string key;        // PEM private key of the leaf.
  std::string client_ca;  // PEM CA bundle that signs client certificates.
};

class ServerTls {
 public:
  // Checks the files and makes the credentials. INVALID_ARGUMENT naming the
  // file that is wrong.
  static absl::StatusOr<std::unique_ptr<ServerTls>> Create(TlsFiles files);
  ~ServerTls();

  // Credentials that ask every client for a certificate, verify one that is
  // given against the client CA (a handshake with another fails), and let a
  // call without one through to be refused as UNAUTHENTICATED.
  std::shared_ptr<grpc::ServerCredentials> credentials() const {
    return credentials_;
  }

  // Re-reads the files; on error keeps the current ones and says why.
  absl::Status Reload();

 private:
  ServerTls() = default;
  absl::Status Stage() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  TlsFiles files_;
  std::string dir_;  // The private copies.
  absl::Mutex mu_;
  long last_mtime_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
};

// The caller's identity: its verified client certificate's first URI SAN,
// else its subject CN; "" without a certificate.
std::string IdentityOf(const grpc::ServerContextBase* context);

// The identity in a PEM certificate (as IdentityOf), "" if none.
std::string IdentityOfPem(const std::string& pem);
// The same of a DER certificate; "" if `der` is not exactly one.
std::string IdentityOfDer(absl::string_view der);

// When the caller's verified client certificate expires (its notAfter);
// nullopt without one. The same of a PEM or DER certificate.
std::optional<absl::Time> CertificateExpiryOf(
    const grpc::ServerContextBase* context);
std::optional<absl::Time> CertificateExpiryOfPem(const std::string& pem);
std::optional<absl::Time> CertificateExpiryOfDer(absl::string_view der);

}  // namespace poledger

#endif  // POLEDGER_SERVER_TLS_H_
