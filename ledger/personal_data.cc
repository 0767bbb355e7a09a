#include "ledger/personal_data.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <functional>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/errors.h"
#include "ledger/field_cipher.h"

namespace poledger {
namespace {

using Contacts = google::protobuf::RepeatedPtrField<v1::Contact>;
// A key by id, or std::nullopt if there is none ("" for a tombstone).
using KeyLookup =
    std::function<absl::StatusOr<std::optional<std::string>>(const std::string&)>;

constexpr size_t kGenerationBytes = 4;

std::string SecretId(absl::string_view account) {
  return absl::StrCat("r/", account);
}

std::string SubjectKeyId(absl::string_view account, absl::string_view ref,
                         uint32_t generation) {
  return absl::StrCat("s/", account, "/", absl::BytesToHexString(ref), "/",
                      generation);
}

std::string WrapAssociated(absl::string_view id) {
  return absl::StrCat("poledger data key", absl::string_view("\0", 1), id);
}

std::string ContactAssociated(absl::string_view account, absl::string_view ref,
                              uint32_t generation) {
  return absl::StrCat("poledger contact", absl::string_view("\0", 1), account,
                      absl::string_view("\0", 1), ref,
                      absl::string_view("\0", 1), generation);
}

std::string EncodeGeneration(uint32_t n) {
  std::string out(kGenerationBytes, '\0');
  for (size_t i = 0; i < kGenerationBytes; ++i) {
    out[i] = static_cast<char>((n >> (8 * (kGenerationBytes - 1 - i))) & 0xff);
  }
  return out;
}

uint32_t DecodeGeneration(absl::string_view bytes) {
  uint32_t n = 0;
  for (size_t i = 0; i < kGenerationBytes; ++i) {
    n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  }
  return n;
}

// The subject of an address: compared without case or surrounding space.
std::string Normalise(absl::string_view email) {
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(email));
}

std::string Reference(absl::string_view secret, absl::string_view email) {
  const std::string normalised = Normalise(email);
  // SHA-256 fetched once (see field_cipher.cc's Cipher).
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(sha256, secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(normalised.data()),
       normalised.size(), out, &length);
  return std::string(reinterpret_cast<const char*>(out), length);
}

// The newest generation of a subject's key (n 0: it has none) and that
// key ("" once destroyed).
struct Generation {
  uint32_t n = 0;
  std::string key;
};
absl::StatusOr<Generation> NewestOf(const KeyLookup& lookup,
                                    absl::string_view account,
                                    absl::string_view ref) {
  Generation newest;
  for (uint32_t n = 1;; ++n) {
    ASSIGN_OR_RETURN(std::optional<std::string> key,
                     lookup(SubjectKeyId(account, ref, n)));
    if (!key.has_value()) return newest;
    newest.n = n;
    newest.key = std::move(*key);
  }
}

}  // namespace

void ForEachContactList(v1::AccountEvent& event,
                        const std::function<void(Contacts&)>& fn) {
  switch (event.event_case()) {
    case v1::AccountEvent::kPurchaseOrderCreated:
      fn(*event.mutable_purchase_order_created()
              ->mutable_header()
              ->mutable_contacts());
      break;
    case v1::AccountEvent::kPurchaseOrderUpdated:
      fn(*event.mutable_purchase_order_updated()
              ->mutable_header()
              ->mutable_contacts());
      break;
    case v1::AccountEvent::kNotificationRaised:
      fn(*event.mutable_notification_raised()->mutable_recipients());
      break;
    default:
      break;
  }
}

absl::StatusOr<std::string> ParseDataKey(absl::string_view text) {
  const absl::string_view hex = absl::StripAsciiWhitespace(text);
  if (hex.size() != 2 * kDataKeyBytes ||
      hex.find_first_not_of("0123456789abcdefABCDEF") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a data key is ", 2 * kDataKeyBytes,
        " hex digits (make one with `openssl rand -hex 32`)"));
  }
  return absl::HexStringToBytes(hex);
}

absl::StatusOr<std::unique_ptr<PersonalData>> PersonalData::Open(
    const EventStore* store, std::string kek) {
  if (!kek.empty() && kek.size() != kDataKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a data key is ", kDataKeyBytes, " bytes"));
  }
  // One live key tells whether `kek` is the one that wrapped them.
  std::optional<std::pair<std::string, std::string>> sample;
  const absl::Status stop = absl::CancelledError("found");
  absl::Status visited =
      store->VisitKeys([&](absl::string_view id, absl::string_view value) {
        if (value.empty()) return absl::OkStatus();
        sample.emplace(std::string(id), std::string(value));
        return stop;
      });
  if (!visited.ok() && visited != stop &&
      visited.code() != absl::StatusCode::kUnimplemented) {
    return visited;
  }
  if (sample.has_value()) {
    if (kek.empty()) {
      return core::DomainError(
          absl::StatusCode::kFailedPrecondition, core::reason::kNoDataKey,
          "this data directory holds sealed personal data: start with "
          "--data-key-file (or POLEDGER_DATA_KEY) naming its key-encryption "
          "key");
    }
    if (!OpenField(kek, sample->second, WrapAssociated(sample->first)).ok()) {
      return absl::PermissionDeniedError(
          "the data key does not open this data directory's personal data "
          "keys: it is another directory's, or the one before a rotation");
    }
  }
  return std::unique_ptr<PersonalData>(new PersonalData(store, std::move(kek)));
}

absl::StatusOr<size_t> PersonalData::Rewrap(EventStore* store,
                                            const std::string& old_kek,
                                            const std::string& new_kek) {
  if (old_kek.size() != kDataKeyBytes || new_kek.size() != kDataKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a data key is ", kDataKeyBytes, " bytes"));
  }
  if (old_kek == new_kek) {
    return absl::InvalidArgumentError(
        "the new data key is the old one: make a new one with `openssl rand "
        "-hex 32`");
  }
  std::vector<KeyEntry> rewrapped;
  RETURN_IF_ERROR(
      store->VisitKeys([&](absl::string_view id, absl::string_view value) {
        if (value.empty()) return absl::OkStatus();  // A tombstone.
        absl::StatusOr<std::string> key =
            OpenField(old_kek, value, WrapAssociated(id));
        if (!key.ok()) {
          return absl::PermissionDeniedError(absl::StrCat(
              "the old data key does not open key ", id,
              ": nothing was rewrapped"));
        }
        absl::StatusOr<std::string> wrapped =
            SealField(new_kek, *key, WrapAssociated(id));
        if (!wrapped.ok()) return wrapped.status();
        rewrapped.push_back({std::string(id), std::move(*wrapped)});
        return absl::OkStatus();
      }));
  if (!rewrapped.empty()) RETURN_IF_ERROR(store->PutKeys(0, rewrapped));
  return rewrapped.size();
}

std::string PersonalData::Wrap(absl::string_view id,
                               absl::string_view key) const {
  // The KEK's length was checked at Open, and a random nonce cannot fail.
  return *SealField(kek_, key, WrapAssociated(id));
}

absl::StatusOr<std::optional<std::string>> PersonalData::Key(
    absl::string_view id) const {
  {
    absl::MutexLock lock(&mu_);
    auto it = keys_.find(id);
    if (it != keys_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->ReadKey(id));
  if (!stored.has_value()) {
    // Remembered as absent too: sealing looks for the generation after a
    // subject's newest each time. A key written meanwhile (Remember) wins.
    absl::MutexLock lock(&mu_);
    return keys_.try_emplace(std::string(id), std::nullopt).first->second;
  }
  std::string key;
  if (!stored->empty()) {
    if (kek_.empty()) {
      return core::DomainError(absl::StatusCode::kFailedPrecondition,
                               core::reason::kNoDataKey,
                               "personal data keys need --data-key-file");
    }
    absl::StatusOr<std::string> opened =
        OpenField(kek_, *stored, WrapAssociated(id));
    if (!opened.ok()) {
      return absl::DataLossError(
          absl::StrCat("personal data key ", id, " does not open"));
    }
    key = std::move(*opened);
  }
  absl::MutexLock lock(&mu_);
  return keys_.try_emplace(std::string(id), std::move(key)).first->second;
}

absl::Status PersonalData::Seal(const std::string& account,
                                std::vector<v1::AccountEvent>& events,
                                std::vector<KeyEntry>& keys) {
  // Keys this append creates or destroys, before they are written.
  absl::flat_hash_map<std::string, std::string> made;
  const KeyLookup lookup = [&](const std::string& id)
      -> absl::StatusOr<std::optional<std::string>> {
    auto it = made.find(id);
    if (it != made.end()) return it->second;
    return Key(id);
  };
  auto make = [&](const std::string& id, std::string key) {
    keys.push_back({id, key.empty() ? "" : Wrap(id, key)});
    made[id] = std::move(key);
  };
  absl::Status status;
  auto seal = [&](Contacts& contacts) {
    for (v1::Contact& c : contacts) {
      if (!status.ok()) return;
      if (c.erased() || !c.sealed().empty()) continue;  // From the state.
      if (!can_seal()) {
        status = core::DomainError(
            absl::StatusCode::kFailedPrecondition, core::reason::kNoDataKey,
            "contacts are personal data, sealed with keys this server does "
            "not have: start it with --data-key-file");
        return;
      }
      absl::StatusOr<std::optional<std::string>> secret =
          lookup(SecretId(account));
      if (!secret.ok()) {
        status = secret.status();
        return;
      }
      if (!secret->has_value()) {
        absl::StatusOr<std::string> fresh = NewFieldKey();
        if (!fresh.ok()) {
          status = fresh.status();
          return;
        }
        make(SecretId(account), *fresh);
        *secret = std::move(*fresh);
      }
      const std::string ref = Reference(**secret, c.email());
      auto newest = NewestOf(lookup, account, ref);
      if (!newest.ok()) {
        status = newest.status();
        return;
      }
      uint32_t generation = newest->n;
      std::string key = newest->key;
      if (key.empty()) {  // None yet, or erased: a new generation.
        absl::StatusOr<std::string> fresh = NewFieldKey();
        if (!fresh.ok()) {
          status = fresh.status();
          return;
        }
        key = *fresh;
        ++generation;
        make(SubjectKeyId(account, ref, generation), key);
      }
      v1::Contact plain;
      plain.set_name(c.name());
      plain.set_email(c.email());
      plain.set_phone(c.phone());
      absl::StatusOr<std::string> sealed =
          SealField(key, plain.SerializeAsString(),
                    ContactAssociated(account, ref, generation));
      if (!sealed.ok()) {
        status = sealed.status();
        return;
      }
      c.set_subject_ref(ref);
      c.set_sealed(absl::StrCat(EncodeGeneration(generation), *sealed));
    }
  };
  for (v1::AccountEvent& event : events) {
    if (event.has_personal_data_erased()) {
      const std::string& ref = event.personal_data_erased().subject_ref();
      ASSIGN_OR_RETURN(Generation newest, NewestOf(lookup, account, ref));
      if (newest.n != 0 && !newest.key.empty()) {
        make(SubjectKeyId(account, ref, newest.n), "");
      }
      continue;
    }
    ForEachContactList(event, seal);
    RETURN_IF_ERROR(status);
  }
  return absl::OkStatus();
}

void PersonalData::Remember(const std::vector<KeyEntry>& keys) {
  for (const KeyEntry& entry : keys) {
    std::string key;
    if (!entry.value.empty()) {
      absl::StatusOr<std::string> opened =
          OpenField(kek_, entry.value, WrapAssociated(entry.id));
      if (!opened.ok()) continue;  // Read (and refused) when it is used.
      key = std::move(*opened);
    }
    absl::MutexLock lock(&mu_);
    keys_[entry.id] = std::move(key);
  }
}

void PersonalData::StripPlainFields(Contacts& contacts) {
  for (v1::Contact& c : contacts) {
    if (c.sealed().empty()) continue;
    c.clear_name();
    c.clear_email();
    c.clear_phone();
  }
}

std::string PersonalData::StoredPayload(const v1::AccountEvent& event) {
  bool plain = false;
  auto check = [&](const Contacts& contacts) {
    for (const v1::Contact& c : contacts) {
      if (!c.sealed().empty() || c.erased()) plain = true;
    }
  };
  if (event.has_purchase_order_created()) {
    check(event.purchase_order_created().header().contacts());
  } else if (event.has_purchase_order_updated()) {
    check(event.purchase_order_updated().header().contacts());
  } else if (event.has_notification_raised()) {
    check(event.notification_raised().recipients());
  }
  if (!plain) return event.SerializeAsString();
  v1::AccountEvent stored = event;
  ForEachContactList(stored, [](Contacts& contacts) { StripPlainFields(contacts); });
  return stored.SerializeAsString();
}

absl::Status PersonalData::OpenContacts(const std::string& account,
                                        Contacts& contacts) const {
  for (v1::Contact& c : contacts) {
    if (c.sealed().size() <= kGenerationBytes) continue;  // Plain, or erased.
    const uint32_t generation = DecodeGeneration(c.sealed());
    ASSIGN_OR_RETURN(std::optional<std::string> key,
                     Key(SubjectKeyId(account, c.subject_ref(), generation)));
    if (!key.has_value()) {
      return absl::DataLossError(absl::StrCat(
          "a contact of account ", account, " is sealed with a key this "
          "server does not hold"));
    }
    if (key->empty()) {  // Erased.
      std::string ref = c.subject_ref();
      c.Clear();
      c.set_subject_ref(std::move(ref));
      c.set_erased(true);
      continue;
    }
    absl::StatusOr<std::string> opened =
        OpenField(*key, absl::string_view(c.sealed()).substr(kGenerationBytes),
                  ContactAssociated(account, c.subject_ref(), generation));
    v1::Contact plain;
    if (!opened.ok() || !plain.ParseFromString(*opened)) {
      return absl::DataLossError(absl::StrCat(
          "a sealed contact of account ", account, " does not open"));
    }
    c.set_name(plain.name());
    c.set_email(plain.email());
    c.set_phone(plain.phone());
  }
  return absl::OkStatus();
}

absl::Status PersonalData::Open(const std::string& account,
                                v1::AccountEvent& event) const {
  absl::Status status;
  ForEachContactList(event, [&](Contacts& contacts) {
    status = OpenContacts(account, contacts);
  });
  return status;
}

absl::StatusOr<std::string> PersonalData::ReferenceOf(
    const std::string& account, absl::string_view email) const {
  ASSIGN_OR_RETURN(std::optional<std::string> secret, Key(SecretId(account)));
  if (!secret.has_value() || secret->empty()) return std::string();
  return Reference(*secret, email);
}

absl::StatusOr<PersonalData::Subject> PersonalData::SubjectState(
    const std::string& account, absl::string_view ref) const {
  const KeyLookup lookup = [this](const std::string& id) { return Key(id); };
  ASSIGN_OR_RETURN(Generation newest, NewestOf(lookup, account, ref));
  if (newest.n == 0) return Subject::kUnknown;
  return newest.key.empty() ? Subject::kErased : Subject::kLive;
}

absl::Status PersonalData::Forget(const std::string& account,
                                  absl::string_view ref, EventStore* store) {
  const KeyLookup lookup = [this](const std::string& id) { return Key(id); };
  ASSIGN_OR_RETURN(Generation newest, NewestOf(lookup, account, ref));
  if (newest.n == 0 || newest.key.empty()) return absl::OkStatus();
  const std::string id = SubjectKeyId(account, ref, newest.n);
  RETURN_IF_ERROR(store->PutKeys(0, {{id, ""}}));
  absl::MutexLock lock(&mu_);
  keys_[id] = "";
  return absl::OkStatus();
}

}  // namespace poledger
