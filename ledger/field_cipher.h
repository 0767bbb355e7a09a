// Sealing one field with a key of its own: AES-256-GCM from OpenSSL, for
// the personal data an erasure must make unreadable (issue 28). A subject's
// fields are sealed with that subject's key, and the subject's key is
// sealed in turn with the operator's key-encryption key; destroying the
// subject's key leaves ciphertext that nothing can open, while the log that
// holds it, and its hash chain, stay as they are.
//
// A sealed value is nonce (12 random bytes) || ciphertext || tag (16
// bytes). The associated data binds it to where it belongs (for example the
// account, the subject and the field), so a sealed value copied elsewhere
// does not open.
#ifndef POLEDGER_LEDGER_FIELD_CIPHER_H_
#define POLEDGER_LEDGER_FIELD_CIPHER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace poledger {

inline constexpr size_t kFieldKeyBytes = 32;    // AES-256.
inline constexpr size_t kFieldNonceBytes = 12;  // GCM's standard nonce.
inline constexpr size_t kFieldTagBytes = 16;
// A sealed value's bytes beyond its plaintext's.
inline constexpr size_t kSealOverheadBytes = kFieldNonceBytes + kFieldTagBytes;

// A new random key of kFieldKeyBytes (OpenSSL's RAND_bytes). INTERNAL if
// the generator fails.
absl::StatusOr<std::string> NewFieldKey();

// Seals `plaintext` under `key`, bound to `associated`, with a fresh random
// nonce: sealing the same plaintext twice gives different values.
// INVALID_ARGUMENT unless `key` has kFieldKeyBytes; INTERNAL if OpenSSL
// fails.
absl::StatusOr<std::string> SealField(absl::string_view key,
                                      absl::string_view plaintext,
                                      absl::string_view associated);

// Opens a value SealField made. INVALID_ARGUMENT unless `key` has
// kFieldKeyBytes; DATA_LOSS if `sealed` is too short, or was not sealed
// under `key` with `associated`, or was changed since.
absl::StatusOr<std::string> OpenField(absl::string_view key,
                                      absl::string_view sealed,
                                      absl::string_view associated);

}  // namespace poledger

#endif  // POLEDGER_LEDGER_FIELD_CIPHER_H_
