// PersonalData: the keys that seal an account's contacts, so that a person
// can be erased from a log that never changes (README "Personal data").
//
// Each data subject (a contact's normalised e-mail address within one
// account) has a key of its own, kept beside the log (EventStore keys), and
// wrapped with the operator's key-encryption key (KEK), which is never in
// the data directory. A contact in the log holds its subject's reference
// and its fields sealed with that key (v1::Contact.sealed), never the plain
// fields; the hash chain covers only that. Erasing a subject replaces its
// key with a tombstone: every sealed copy, in every record, snapshot,
// replica and later backup, then reads as erased.
//
// Key ids beside the log:
//   r/<account>                 the account's reference secret, which the
//                               subjects' references are an HMAC under;
//   s/<account>/<ref hex>/<n>   generation n of a subject's key (a subject
//                               added again after an erasure gets n + 1).
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_LEDGER_PERSONAL_DATA_H_
#define POLEDGER_LEDGER_PERSONAL_DATA_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "eventstore/event_store.h"
#include "poledger/v1/events.pb.h"

namespace poledger {

inline constexpr size_t kDataKeyBytes = 32;

// Reads a key-encryption key: 64 hex digits (as `openssl rand -hex 32`
// prints), surrounding white space allowed. INVALID_ARGUMENT otherwise.
absl::StatusOr<std::string> ParseDataKey(absl::string_view text);

// Calls `fn` on each list of contacts `event` holds (a purchase order's
// header, a notification's recipients).
void ForEachContactList(
    v1::AccountEvent& event,
    const std::function<void(google::protobuf::RepeatedPtrField<v1::Contact>&)>&
        fn);

class PersonalData {
 public:
  // Opens the keys of `store` (not owned) with `kek` (kDataKeyBytes, or
  // empty: none given). Errors, before anything is written:
  //   FAILED_PRECONDITION (reason NO_DATA_KEY) if the store holds keys and
  //     no KEK is given;
  //   PERMISSION_DENIED if the KEK does not open the store's keys (another
  //     data directory's, or the old one after a rotation).
  static absl::StatusOr<std::unique_ptr<PersonalData>> Open(
      const EventStore* store, std::string kek);

  // Rotates the key-encryption key: rewraps every key of `store` under
  // `new_kek`, in one atomic write, and returns how many. The store must
  // not be in use (its server stopped). PERMISSION_DENIED (nothing
  // written) if `old_kek` does not open a key; INVALID_ARGUMENT for a key
  // of the wrong size or the same key twice.
  static absl::StatusOr<size_t> Rewrap(EventStore* store,
                                       const std::string& old_kek,
                                       const std::string& new_kek);

  // Whether a KEK was given: without one, contacts cannot be written.
  bool can_seal() const { return !kek_.empty(); }

  // Prepares `events`, about to be appended to `account`'s stream: gives
  // each contact that has no sealed form its subject reference and sealed
  // form (keeping its plain fields, for the state), and, for an erasure,
  // the subject's tombstone. The keys this creates or destroys go into
  // `keys`, to be written with the append; call Remember(keys) once it is
  // durable. FAILED_PRECONDITION (reason NO_DATA_KEY) if there are contacts
  // and no KEK.
  absl::Status Seal(const std::string& account,
                    std::vector<v1::AccountEvent>& events,
                    std::vector<KeyEntry>& keys);
  // Takes note of keys an append wrote (Seal's), or a replica received
  // and stored: every key written to the store while this object is open
  // must be passed here.
  void Remember(const std::vector<KeyEntry>& keys);

  // The payload the log stores for `event`: its contacts without their
  // plain fields where they are sealed.
  static std::string StoredPayload(const v1::AccountEvent& event);
  // The same for contacts kept elsewhere (snapshots).
  static void StripPlainFields(
      google::protobuf::RepeatedPtrField<v1::Contact>& contacts);

  // Opens the sealed contacts of `event`, read from `account`'s stream:
  // plain fields back, or, for an erased subject, only the reference and
  // the erased flag. A contact without a sealed form (written before
  // sealing) is left as it is. FAILED_PRECONDITION without a KEK; DATA_LOSS
  // if a sealed form does not open under its key.
  absl::Status Open(const std::string& account, v1::AccountEvent& event) const;
  absl::Status OpenContacts(
      const std::string& account,
      google::protobuf::RepeatedPtrField<v1::Contact>& contacts) const;

  // What the ledger holds of a subject.
  enum class Subject { kUnknown, kLive, kErased };
  // The reference of `email` in `account` (its normalised form under the
  // account's secret), or "" if the account has never held personal data.
  absl::StatusOr<std::string> ReferenceOf(const std::string& account,
                                          absl::string_view email) const;
  absl::StatusOr<Subject> SubjectState(const std::string& account,
                                       absl::string_view ref) const;

  // After an erasure of `ref` applied (on any node, also in replay): the
  // subject's key is forgotten, and replaced by its tombstone in `store`
  // unless it is one already. A replica calls this with its own store.
  absl::Status Forget(const std::string& account, absl::string_view ref,
                      EventStore* store);

 private:
  PersonalData(const EventStore* store, std::string kek)
      : store_(store), kek_(std::move(kek)) {}

  // A key by id, unwrapped: from the cache, else the store. "" for a
  // tombstone; std::nullopt if there is none.
  absl::StatusOr<std::optional<std::string>> Key(absl::string_view id) const;
  std::string Wrap(absl::string_view id, absl::string_view key) const;

  const EventStore* const store_;
  const std::string kek_;
  mutable absl::Mutex mu_;
  // Unwrapped keys by id ("" for a tombstone, std::nullopt for none). Every
  // key this process writes or receives is noted here (Seal's through
  // Remember, a replica's through Remember, erasures through Forget).
  mutable absl::flat_hash_map<std::string, std::optional<std::string>> keys_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace poledger

#endif  // POLEDGER_LEDGER_PERSONAL_DATA_H_
