// Authorization: which identity may call which method on which account,
// from the policy file (v1::AuthorizationPolicy,
// proto/poledger/v1/authz.proto).
//
// Every method of the poledger.v1 services needs one kind of access (the
// table in authz.cc, the one list); a role grants kinds of access on its
// accounts. A call is allowed when some binding of the caller's identity
// grants the method's access on the call's account (or on every account,
// "*", for calls that are not about one account).
//
// Thread safety: an Authorizer is immutable; share it freely.
#ifndef POLEDGER_API_AUTHZ_H_
#define POLEDGER_API_AUTHZ_H_

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "poledger/v1/authz.pb.h"

namespace google::protobuf {
class Descriptor;
class MethodDescriptor;
}  // namespace google::protobuf

namespace poledger {
namespace api {

// The kinds of access a method needs.
enum class Access {
  kRead,           // Get/List of an account's purchase orders and invoices.
  kNotifications,  // ListNotifications, SubscribeNotifications.
  kPurchase,       // Purchase-order and line-item commands.
  kBill,           // Recording invoices and marketplace transactions.
  kLog,            // The whole log: ReadEvents, SubscribeEvents, digests.
  kAdmin,          // AdminService.
  kErase,          // AdminService.ErasePersonalData.
  kSelf,           // TestPermissions: any identity, about itself.
};

// The method ("InvoiceService.RecordInvoice") whose request message is
// `request`, and the access it needs; nullptr if no poledger.v1 method
// takes that message.
struct MethodRule {
  std::string method;
  Access access;
};
const MethodRule* RuleFor(const google::protobuf::Descriptor* request);

// Every method of the poledger.v1 services, from their descriptors.
std::vector<const google::protobuf::MethodDescriptor*> ApiMethods();

// Parses a policy: JSON if `json`, else protobuf text format.
// INVALID_ARGUMENT naming the binding field that is wrong.
absl::StatusOr<v1::AuthorizationPolicy> ParsePolicy(absl::string_view text,
                                                    bool json);
// Reads and parses a policy file (JSON if its name ends in ".json").
absl::StatusOr<v1::AuthorizationPolicy> LoadPolicy(const std::string& path);

class Authorizer {
 public:
  // Everyone may do everything (development, or --authz-allow-all).
  static Authorizer AllowAll();
  static absl::StatusOr<Authorizer> FromPolicy(
      const v1::AuthorizationPolicy& policy);

  bool allows_all() const { return allow_all_; }

  // The identity of the bearer token whose SHA-256 (lowercase hex) is
  // `sha256`; "" if the policy has no such token.
  std::string IdentityOfTokenHash(absl::string_view sha256) const;

  // OK if `identity` may call the method that takes `request` on
  // `account` ("" for a call about every account). Otherwise
  // PERMISSION_DENIED with reason PERMISSION_DENIED naming the method and
  // the account, and nothing about whether the account exists.
  absl::Status Check(absl::string_view identity,
                     const google::protobuf::Descriptor* request,
                     absl::string_view account) const;
  // OK if `identity` may call that method on some account: for a batch,
  // whose items are then each checked against their own account.
  absl::Status CheckSomeAccount(
      absl::string_view identity,
      const google::protobuf::Descriptor* request) const;

 private:
  struct Grant {
    std::set<Access> access;
    bool every_account = false;
    std::set<std::string, std::less<>> accounts;
  };
  // OK if one of `identity`'s grants gives the method's access and
  // `covers` it; otherwise PERMISSION_DENIED saying the method may not be
  // called on `where`.
  absl::Status CheckGrants(absl::string_view identity,
                           const google::protobuf::Descriptor* request,
                           const std::function<bool(const Grant&)>& covers,
                           absl::string_view where) const;

  bool allow_all_ = false;
  std::map<std::string, std::vector<Grant>, std::less<>> grants_;
  std::map<std::string, std::string, std::less<>> token_identities_;
};

}  // namespace api
}  // namespace poledger

#endif  // POLEDGER_API_AUTHZ_H_
