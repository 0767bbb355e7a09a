// Incremental SHA-256 over OpenSSL's EVP interface.
//
// Thread safety: a Sha256 object is used by one thread at a time; distinct
// objects are independent.
#ifndef POLEDGER_EVENTSTORE_SHA256_H_
#define POLEDGER_EVENTSTORE_SHA256_H_

#include "absl/strings/string_view.h"

#include "eventstore/event_store.h"

struct evp_md_ctx_st;

namespace poledger {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view bytes);
  void Update(const Hash& hash);
  // Returns the digest and resets the object for a new message.
  Hash Finish();

 private:
  evp_md_ctx_st* ctx_;
};

}  // namespace poledger

#endif  // POLEDGER_EVENTSTORE_SHA256_H_
