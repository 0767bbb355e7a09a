#include "server/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/auth_context.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace poledger {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "not PEM";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Cert = std::unique_ptr<X509, X509Free>;

Bio MemBio(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Checks that `cert` holds at least one certificate, `key` a private key
// matching the first, and `ca` at least one certificate.
absl::Status Check(const TlsFiles& files, const std::string& cert,
                   const std::string& key, const std::string& ca) {
  Bio cert_bio = MemBio(cert);
  Cert leaf(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (leaf == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-cert: ", files.cert, " holds no certificate: ", OpenSslError()));
  }
  Bio key_bio = MemBio(key);
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key: ", files.key, " holds no private key: ", OpenSslError()));
  }
  if (X509_check_private_key(leaf.get(), pkey.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key: ", files.key,
                     " is not the key of the certificate in ", files.cert));
  }
  Bio ca_bio = MemBio(ca);
  Cert ca_cert(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr));
  if (ca_cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-client-ca: ", files.client_ca,
                     " holds no certificate: ", OpenSslError()));
  }
  return absl::OkStatus();
}

// Writes `text` to `path` whole: a temporary file renamed over it, with
// the modification time `mtime`.
absl::Status WriteAtomically(const std::string& path, const std::string& text,
                             long mtime) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  ::chmod(tmp.c_str(), 0600);
  struct utimbuf times;
  times.actime = static_cast<time_t>(mtime);
  times.modtime = static_cast<time_t>(mtime);
  ::utime(tmp.c_str(), &times);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerTls>> ServerTls::Create(TlsFiles files) {
  std::unique_ptr<ServerTls> tls(new ServerTls());
  tls->files_ = std::move(files);
  const char* tmpdir = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp",
                   "/poledger-tls.XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError("cannot make a directory for the TLS files");
  }
  tls->dir_ = pattern;
  {
    absl::MutexLock lock(&tls->mu_);
    if (absl::Status s = tls->Stage(); !s.ok()) return s;
  }
  const std::string identity = tls->dir_ + "/identity.pem";
  const std::string ca = tls->dir_ + "/client-ca.pem";
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          identity, identity, ca, /*refresh_interval_sec=*/1);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  tls->credentials_ = grpc::experimental::TlsServerCredentials(options);
  if (tls->credentials_ == nullptr) {
    return absl::InternalError("gRPC refused the TLS options");
  }
  return tls;
}

ServerTls::~ServerTls() {
  std::error_code ignored;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
}

absl::Status ServerTls::Stage() {
  absl::StatusOr<std::string> cert = ReadFile(files_.cert, "--tls-cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFile(files_.key, "--tls-key");
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> ca =
      ReadFile(files_.client_ca, "--tls-client-ca");
  if (!ca.ok()) return ca.status();
  if (absl::Status s = Check(files_, *cert, *key, *ca); !s.ok()) return s;
  // Each staging gets a modification time of its own: the watcher compares
  // times before and after it reads, so a read that straddles a rename is
  // retried rather than pairing an old key with a new certificate.
  last_mtime_ = std::max<long>(last_mtime_ + 1, std::time(nullptr));
  if (absl::Status s =
          WriteAtomically(dir_ + "/client-ca.pem", *ca, last_mtime_);
      !s.ok()) {
    return s;
  }
  return WriteAtomically(dir_ + "/identity.pem", *key + "\n" + *cert,
                         last_mtime_);
}

absl::Status ServerTls::Reload() {
  absl::MutexLock lock(&mu_);
  return Stage();
}

namespace {

// The identity in `cert`: its first URI SAN, else its subject CN.
std::string IdentityOfCert(const Cert& cert) {
  std::string identity;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && identity.empty(); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
      if (name->type == GEN_URI) {
        const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
        identity.assign(
            reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
            ASN1_STRING_length(uri));
      }
    }
    GENERAL_NAMES_free(names);
  }
  if (identity.empty()) {
    X509_NAME* subject = X509_get_subject_name(cert.get());
    const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at >= 0) {
      ASN1_STRING* cn =
          X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
      unsigned char* utf8 = nullptr;
      const int n = ASN1_STRING_to_UTF8(&utf8, cn);
      if (n > 0) identity.assign(reinterpret_cast<char*>(utf8), n);
      OPENSSL_free(utf8);
    }
  }
  ERR_clear_error();
  return identity;
}

std::optional<absl::Time> ExpiryOfCert(const Cert& cert) {
  const ASN1_TIME* not_after = X509_get0_notAfter(cert.get());
  struct tm t = {};
  if (not_after == nullptr || ASN1_TIME_to_tm(not_after, &t) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  return absl::FromTM(t, absl::UTCTimeZone());
}

}  // namespace

std::optional<absl::Time> CertificateExpiryOfPem(const std::string& pem) {
  Bio bio = MemBio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    ERR_clear_error();
    return std::nullopt;
  }
  return ExpiryOfCert(cert);
}

std::optional<absl::Time> CertificateExpiryOfDer(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  Cert cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr) {
    ERR_clear_error();
    return std::nullopt;
  }
  return ExpiryOfCert(cert);
}

std::optional<absl::Time> CertificateExpiryOf(
    const grpc::ServerContextBase* context) {
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return std::nullopt;
  std::vector<grpc::string_ref> pem =
      auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) return std::nullopt;
  return CertificateExpiryOfPem(std::string(pem[0].data(), pem[0].size()));
}

std::string IdentityOfPem(const std::string& pem) {
  Bio bio = MemBio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    ERR_clear_error();
    return "";
  }
  return IdentityOfCert(cert);
}

std::string IdentityOfDer(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  Cert cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr ||
      p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    ERR_clear_error();
    return "";
  }
  return IdentityOfCert(cert);
}

std::string IdentityOf(const grpc::ServerContextBase* context) {
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  std::vector<grpc::string_ref> pem =
      auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) return "";
  return IdentityOfPem(std::string(pem[0].data(), pem[0].size()));
}

}  // namespace poledger
