#include "ledger/field_cipher.h"

#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace poledger {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

absl::Status CheckKey(absl::string_view key) {
  if (key.size() != kFieldKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key: ", key.size(), " bytes; AES-256-GCM takes ", kFieldKeyBytes));
  }
  return absl::OkStatus();
}

absl::Status OpenSslFailed(absl::string_view what) {
  return absl::InternalError(absl::StrCat("OpenSSL failed to ", what));
}

// AES-256-GCM, fetched from its provider once: fetching it by name at each
// seal (EVP_aes_256_gcm()) took a provider lookup under locks every time.
const EVP_CIPHER* Cipher() {
  static EVP_CIPHER* const cipher =
      EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

// Writes a fresh random nonce. The generator's bytes are drawn for many
// nonces at once, per thread: RAND_bytes makes a system call (getpid) on
// every call, which cost more than the sealing. Every nonce is still its
// own random draw, never reused.
bool NewNonce(unsigned char* nonce) {
  constexpr size_t kNonces = 64;
  thread_local unsigned char pool[kNonces * kFieldNonceBytes];
  thread_local size_t used = kNonces;
  if (used == kNonces) {
    if (RAND_bytes(pool, sizeof(pool)) != 1) return false;
    used = 0;
  }
  std::memcpy(nonce, pool + used * kFieldNonceBytes, kFieldNonceBytes);
  OPENSSL_cleanse(pool + used * kFieldNonceBytes, kFieldNonceBytes);
  ++used;
  return true;
}

}  // namespace

absl::StatusOr<std::string> NewFieldKey() {
  std::string key(kFieldKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()),
                 static_cast<int>(key.size())) != 1) {
    return OpenSslFailed("generate a key");
  }
  return key;
}

absl::StatusOr<std::string> SealField(absl::string_view key,
                                      absl::string_view plaintext,
                                      absl::string_view associated) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  std::string out(kFieldNonceBytes + plaintext.size() + kFieldTagBytes, '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  if (!NewNonce(nonce)) return OpenSslFailed("generate a nonce");
  Ctx ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  unsigned char* body = nonce + kFieldNonceBytes;
  if (ctx == nullptr ||
      Cipher() == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), Cipher(), nullptr, Bytes(key), nonce) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &n, Bytes(associated),
                        static_cast<int>(associated.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), body, &n, Bytes(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), body + n, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG,
                          static_cast<int>(kFieldTagBytes),
                          body + plaintext.size()) != 1) {
    return OpenSslFailed("seal a field");
  }
  return out;
}

absl::StatusOr<std::string> OpenField(absl::string_view key,
                                      absl::string_view sealed,
                                      absl::string_view associated) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (sealed.size() < kSealOverheadBytes) {
    return absl::DataLossError(absl::StrCat(
        "sealed field: ", sealed.size(), " bytes, shorter than its ",
        kSealOverheadBytes, "-byte nonce and tag"));
  }
  const absl::string_view nonce = sealed.substr(0, kFieldNonceBytes);
  const absl::string_view body = sealed.substr(
      kFieldNonceBytes, sealed.size() - kSealOverheadBytes);
  std::string tag(sealed.substr(sealed.size() - kFieldTagBytes));
  std::string out(body.size(), '\0');
  auto* plain = reinterpret_cast<unsigned char*>(out.data());
  Ctx ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  if (ctx == nullptr ||
      Cipher() == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), Cipher(), nullptr, Bytes(key),
                         Bytes(nonce)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &n, Bytes(associated),
                        static_cast<int>(associated.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), plain, &n, Bytes(body),
                        static_cast<int>(body.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG,
                          static_cast<int>(kFieldTagBytes), tag.data()) != 1) {
    return OpenSslFailed("open a field");
  }
  // The tag is checked here: a wrong key, other associated data or any
  // changed byte fail alike.
  if (EVP_DecryptFinal_ex(ctx.get(), plain + n, &n) != 1) {
    return absl::DataLossError(
        "sealed field: does not open with this key and associated data");
  }
  return out;
}

}  // namespace poledger
