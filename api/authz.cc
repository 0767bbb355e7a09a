#include "api/authz.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "ledger/ledger.h"
#include "poledger/v1/invoices.pb.h"
#include "poledger/v1/log.pb.h"
#include "poledger/v1/purchase_orders.pb.h"
#include "poledger/v1/replication.pb.h"

namespace poledger {
namespace api {
namespace {

// The access each method needs: the one list. A method missing here is
// refused to everyone (tests/api checks that none is missing).
constexpr struct {
  const char* method;
  Access access;
} kMethodAccess[] = {
    {"PurchaseOrderService.CreatePurchaseOrder", Access::kPurchase},
    {"PurchaseOrderService.GetPurchaseOrder", Access::kRead},
    {"PurchaseOrderService.ListPurchaseOrders", Access::kRead},
    {"PurchaseOrderService.UpdatePurchaseOrder", Access::kPurchase},
    {"PurchaseOrderService.UpdatePurchaseOrderStatus", Access::kPurchase},
    {"PurchaseOrderService.DeletePurchaseOrder", Access::kPurchase},
    {"PurchaseOrderService.AddLineItem", Access::kPurchase},
    {"PurchaseOrderService.UpdateLineItem", Access::kPurchase},
    {"PurchaseOrderService.RemoveLineItem", Access::kPurchase},
    {"PurchaseOrderService.ListPurchaseOrderInvoices", Access::kRead},
    {"PurchaseOrderService.TestPermissions", Access::kSelf},
    {"InvoiceService.RecordInvoice", Access::kBill},
    // Each item is checked as a RecordInvoice of its own account.
    {"InvoiceService.BatchRecordInvoices", Access::kBill},
    {"InvoiceService.GetInvoice", Access::kRead},
    {"InvoiceService.RecordMarketplaceTransaction", Access::kBill},
    {"NotificationService.SubscribeNotifications", Access::kNotifications},
    {"NotificationService.ListNotifications", Access::kNotifications},
    {"EventLogService.ReadEvents", Access::kLog},
    {"EventLogService.SubscribeEvents", Access::kLog},
    {"EventLogService.GetPurchaseOrderAt", Access::kRead},
    {"EventLogService.ListPurchaseOrderChanges", Access::kRead},
    {"EventLogService.GetLogDigest", Access::kLog},
    {"AdminService.GetServerInfo", Access::kAdmin},
    {"AdminService.CreateSnapshot", Access::kAdmin},
    {"AdminService.CreateBackup", Access::kAdmin},
    {"AdminService.SetTime", Access::kAdmin},
    {"AdminService.AdvanceTime", Access::kAdmin},
    {"AdminService.ErasePersonalData", Access::kErase},
    {"ReplicationService.Replicate", Access::kLog},
};

constexpr const char* kServices[] = {
    "poledger.v1.PurchaseOrderService", "poledger.v1.InvoiceService",
    "poledger.v1.NotificationService", "poledger.v1.EventLogService",
    "poledger.v1.AdminService", "poledger.v1.ReplicationService"};

// Request message -> rule, built from the services' descriptors.
const absl::flat_hash_map<const google::protobuf::Descriptor*, MethodRule>&
Rules() {
  static const auto* rules = [] {
    auto* out =
        new absl::flat_hash_map<const google::protobuf::Descriptor*, MethodRule>;
    for (const google::protobuf::MethodDescriptor* m : ApiMethods()) {
      const std::string method = absl::StrCat(m->service()->name(), ".", m->name());
      for (const auto& rule : kMethodAccess) {
        if (method == rule.method) {
          out->emplace(m->input_type(), MethodRule{method, rule.access});
        }
      }
    }
    return out;
  }();
  return *rules;
}

std::set<Access> AccessOf(v1::Role role) {
  switch (role) {
    case v1::ROLE_VIEWER:
      return {Access::kRead, Access::kNotifications};
    case v1::ROLE_PURCHASER:
      return {Access::kRead, Access::kNotifications, Access::kPurchase};
    case v1::ROLE_BILLER:
      return {Access::kRead, Access::kNotifications, Access::kBill};
    case v1::ROLE_NOTIFIER:
      return {Access::kNotifications};
    case v1::ROLE_AUDITOR:
      return {Access::kRead, Access::kNotifications, Access::kLog};
    case v1::ROLE_ADMIN:
      return {Access::kAdmin, Access::kErase};
    case v1::ROLE_PRIVACY_OFFICER:
      return {Access::kErase};
    default:
      return {};
  }
}

absl::Status Validate(const v1::AuthorizationPolicy& policy) {
  for (int i = 0; i < policy.bindings_size(); ++i) {
    const v1::RoleBinding& b = policy.bindings(i);
    const std::string at = absl::StrCat("bindings[", i, "]");
    if (b.identity().empty() || b.identity().size() > 1024) {
      return core::InvalidField(absl::StrCat(at, ".identity"),
                                "must be 1 to 1024 characters");
    }
    if (b.role() == v1::ROLE_UNSPECIFIED || !v1::Role_IsValid(b.role())) {
      return core::InvalidField(absl::StrCat(at, ".role"),
                                "must be a role such as ROLE_VIEWER");
    }
    if (b.accounts_size() == 0) {
      return core::InvalidField(absl::StrCat(at, ".accounts"),
                                "must name accounts, or \"*\" for every one");
    }
    const bool whole_log =
        b.role() == v1::ROLE_AUDITOR || b.role() == v1::ROLE_ADMIN;
    for (int j = 0; j < b.accounts_size(); ++j) {
      const std::string& account = b.accounts(j);
      const std::string field = absl::StrCat(at, ".accounts[", j, "]");
      if (account == "*") continue;
      if (whole_log) {
        return core::InvalidField(
            field, absl::StrCat(v1::Role_Name(b.role()),
                                " is about the whole log: accounts must be "
                                "[\"*\"]"));
      }
      if (absl::Status s = ValidateAccountId(account); !s.ok()) {
        return core::InvalidField(field, s.message());
      }
    }
  }
  std::set<std::string> hashes;
  for (int i = 0; i < policy.tokens_size(); ++i) {
    const v1::BearerToken& t = policy.tokens(i);
    const std::string at = absl::StrCat("tokens[", i, "]");
    if (t.identity().empty() || t.identity().size() > 1024) {
      return core::InvalidField(absl::StrCat(at, ".identity"),
                                "must be 1 to 1024 characters");
    }
    const bool hex =
        t.sha256().size() == 64 && absl::c_all_of(t.sha256(), [](char c) {
          return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
        });
    if (!hex) {
      return core::InvalidField(
          absl::StrCat(at, ".sha256"),
          "must be the token's SHA-256 as 64 lowercase hex digits");
    }
    if (!hashes.insert(t.sha256()).second) {
      return core::InvalidField(absl::StrCat(at, ".sha256"),
                                "is the hash of an earlier token");
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<const google::protobuf::MethodDescriptor*> ApiMethods() {
  // The generated pool knows a file once something of it was used.
  (void)v1::RecordInvoiceRequest::descriptor();
  (void)v1::CreatePurchaseOrderRequest::descriptor();
  (void)v1::ReadEventsRequest::descriptor();
  (void)v1::ReplicateRequest::descriptor();
  std::vector<const google::protobuf::MethodDescriptor*> out;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const char* name : kServices) {
    const google::protobuf::ServiceDescriptor* service =
        pool->FindServiceByName(name);
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      out.push_back(service->method(i));
    }
  }
  return out;
}

const MethodRule* RuleFor(const google::protobuf::Descriptor* request) {
  const auto& rules = Rules();
  auto it = rules.find(request);
  return it == rules.end() ? nullptr : &it->second;
}

absl::StatusOr<v1::AuthorizationPolicy> ParsePolicy(absl::string_view text,
                                                    bool json) {
  v1::AuthorizationPolicy policy;
  if (json) {
    auto status =
        google::protobuf::util::JsonStringToMessage(std::string(text), &policy);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("not an AuthorizationPolicy in JSON: ",
                       status.message().as_string()));
    }
  } else {
    // Collects the parser's error with its line and column.
    class Collector : public google::protobuf::io::ErrorCollector {
     public:
      void AddError(int line, int column, const std::string& message) override {
        if (error.empty()) {
          error = absl::StrCat("line ", line + 1, " column ", column + 1, ": ",
                               message);
        }
      }
      std::string error;
    } collector;
    google::protobuf::TextFormat::Parser parser;
    parser.RecordErrorsTo(&collector);
    if (!parser.ParseFromString(std::string(text), &policy)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "not an AuthorizationPolicy in text format: ", collector.error));
    }
  }
  if (absl::Status s = Validate(policy); !s.ok()) return s;
  return policy;
}

absl::StatusOr<v1::AuthorizationPolicy> LoadPolicy(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<v1::AuthorizationPolicy> policy =
      ParsePolicy(text.str(), absl::EndsWith(path, ".json"));
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat(path, ": ", policy.status().message()));
  }
  return policy;
}

Authorizer Authorizer::AllowAll() {
  Authorizer a;
  a.allow_all_ = true;
  return a;
}

absl::StatusOr<Authorizer> Authorizer::FromPolicy(
    const v1::AuthorizationPolicy& policy) {
  if (absl::Status s = Validate(policy); !s.ok()) return s;
  Authorizer a;
  for (const v1::RoleBinding& b : policy.bindings()) {
    Grant grant;
    grant.access = AccessOf(b.role());
    for (const std::string& account : b.accounts()) {
      if (account == "*") {
        grant.every_account = true;
      } else {
        grant.accounts.insert(account);
      }
    }
    a.grants_[b.identity()].push_back(std::move(grant));
  }
  for (const v1::BearerToken& t : policy.tokens()) {
    a.token_identities_[t.sha256()] = t.identity();
  }
  return a;
}

std::string Authorizer::IdentityOfTokenHash(absl::string_view sha256) const {
  auto it = token_identities_.find(sha256);
  return it != token_identities_.end() ? it->second : "";
}

absl::Status Authorizer::CheckGrants(
    absl::string_view identity, const google::protobuf::Descriptor* request,
    const std::function<bool(const Grant&)>& covers,
    absl::string_view where) const {
  const MethodRule* rule = RuleFor(request);
  if (allow_all_ && rule != nullptr) return absl::OkStatus();
  if (rule != nullptr && rule->access == Access::kSelf) return absl::OkStatus();
  if (rule != nullptr) {
    auto it = grants_.find(identity);
    if (it != grants_.end()) {
      for (const Grant& g : it->second) {
        if (g.access.count(rule->access) > 0 && covers(g)) {
          return absl::OkStatus();
        }
      }
    }
  }
  const std::string method =
      rule != nullptr ? rule->method : request->full_name();
  return core::DomainError(absl::StatusCode::kPermissionDenied,
                           core::reason::kPermissionDenied,
                           absl::StrCat(core::Quote(identity), " may not call ",
                                        method, " on ", where));
}

absl::Status Authorizer::Check(absl::string_view identity,
                               const google::protobuf::Descriptor* request,
                               absl::string_view account) const {
  return CheckGrants(
      identity, request,
      [account](const Grant& g) {
        return g.every_account ||
               (!account.empty() && g.accounts.count(account) > 0);
      },
      account.empty() ? std::string("every account")
                      : absl::StrCat("account ", core::Quote(account)));
}

absl::Status Authorizer::CheckSomeAccount(
    absl::string_view identity,
    const google::protobuf::Descriptor* request) const {
  return CheckGrants(
      identity, request, [](const Grant&) { return true; }, "any account");
}

}  // namespace api
}  // namespace poledger
