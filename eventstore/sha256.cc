#include "eventstore/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace poledger {
namespace {

// Fetched once: an explicit fetch avoids OpenSSL 3's per-call lookup.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) std::abort();  // OpenSSL without SHA-256.
    return fetched;
  }();
  return md;
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex2(ctx_, Sha256Md(), nullptr) != 1) {
    std::abort();  // Out of memory inside OpenSSL.
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Update(absl::string_view bytes) {
  EVP_DigestUpdate(ctx_, bytes.data(), bytes.size());
}

void Sha256::Update(const Hash& hash) {
  EVP_DigestUpdate(ctx_, hash.data(), hash.size());
}

Hash Sha256::Finish() {
  Hash out{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, out.data(), &len);
  // Re-initialise with the digest already set: no provider lookup.
  EVP_DigestInit_ex2(ctx_, nullptr, nullptr);
  return out;
}

}  // namespace poledger
