// The authorization policy: parsing and validation, and the method table.
#include "api/authz.h"

#include <set>

#include "core/errors.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "poledger/v1/invoices.pb.h"
#include "poledger/v1/log.pb.h"
#include "poledger/v1/purchase_orders.pb.h"
#include "poledger/v1/replication.pb.h"

namespace poledger {
namespace api {
namespace {

using ::testing::HasSubstr;

TEST(MethodRuleTest, EveryMethodOfEveryServiceHasOne) {
  // Every service the API's files declare, found apart from ApiMethods.
  std::set<const google::protobuf::MethodDescriptor*> declared;
  for (const google::protobuf::FileDescriptor* file :
       {v1::RecordInvoiceRequest::descriptor()->file(),
        v1::CreatePurchaseOrderRequest::descriptor()->file(),
        v1::ReadEventsRequest::descriptor()->file(),
        v1::ReplicateRequest::descriptor()->file()}) {
    for (int s = 0; s < file->service_count(); ++s) {
      for (int i = 0; i < file->service(s)->method_count(); ++i) {
        declared.insert(file->service(s)->method(i));
      }
    }
  }
  const auto methods = ApiMethods();
  EXPECT_EQ(std::set<const google::protobuf::MethodDescriptor*>(
                methods.begin(), methods.end()),
            declared);
  std::set<const google::protobuf::Descriptor*> requests;
  for (const auto* m : methods) {
    // One request message per method: the rule is found by it.
    EXPECT_TRUE(requests.insert(m->input_type()).second) << m->full_name();
    const MethodRule* rule = RuleFor(m->input_type());
    ASSERT_NE(rule, nullptr) << m->full_name();
    EXPECT_EQ(rule->method, m->service()->name() + "." + m->name());
  }
  EXPECT_EQ(methods.size(), 29u);
}

TEST(PolicyTest, TextAndJsonFormsParse) {
  auto text = ParsePolicy(
      "bindings { identity: \"spiffe://x/billing\" role: ROLE_BILLER "
      "accounts: \"111\" accounts: \"222\" }",
      false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->bindings(0).accounts_size(), 2);
  auto json = ParsePolicy(
      R"({"bindings": [{"identity": "ops", "role": "ROLE_ADMIN",
          "accounts": ["*"]}]})",
      true);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->bindings(0).role(), v1::ROLE_ADMIN);
}

TEST(PolicyTest, BadPoliciesNameWhatIsWrong) {
  struct Case {
    std::string text;
    const char* says;
  } cases[] = {
      {"bindings { identity: \"a\" role: ROLE_CHIEF accounts: \"*\" }",
       "line 1"},
      {"bindings { role: ROLE_VIEWER accounts: \"*\" }",
       "bindings[0].identity"},
      {"bindings { identity: \"a\" accounts: \"*\" }", "bindings[0].role"},
      {"bindings { identity: \"a\" role: ROLE_VIEWER }",
       "bindings[0].accounts"},
      {"bindings { identity: \"a\" role: ROLE_AUDITOR accounts: \"1\" }",
       "bindings[0].accounts[0]"},
      {"bindings { identity: \"a\" role: ROLE_VIEWER accounts: \"\" }",
       "bindings[0].accounts[0]"},
      {"tokens { sha256: \"" + std::string(64, 'a') + "\" }",
       "tokens[0].identity"},
      {"tokens { identity: \"a\" sha256: \"secret\" }", "tokens[0].sha256"},
      {"tokens { identity: \"a\" sha256: \"" + std::string(64, 'A') + "\" }",
       "tokens[0].sha256"},
      {"tokens { identity: \"a\" sha256: \"" + std::string(64, 'a') +
           "\" } tokens { identity: \"b\" sha256: \"" + std::string(64, 'a') +
           "\" }",
       "tokens[1].sha256"},
  };
  for (const Case& c : cases) {
    auto p = ParsePolicy(c.text, false);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.says)) << c.text;
  }
  EXPECT_EQ(LoadPolicy("/nonexistent/policy").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(AuthorizerTest, BearerTokensAreKnownByTheirHashesOnly) {
  const std::string hash(64, 'c');
  auto policy = ParsePolicy(
      "bindings { identity: \"v\" role: ROLE_VIEWER accounts: \"a\" }"
      "tokens { identity: \"v\" sha256: \"" +
          hash + "\" }",
      false);
  ASSERT_TRUE(policy.ok()) << policy.status();
  auto authz = Authorizer::FromPolicy(*policy);
  ASSERT_TRUE(authz.ok());
  EXPECT_EQ(authz->IdentityOfTokenHash(hash), "v");
  EXPECT_EQ(authz->IdentityOfTokenHash(std::string(64, 'd')), "");
  EXPECT_EQ(authz->IdentityOfTokenHash(""), "");
  EXPECT_EQ(Authorizer::AllowAll().IdentityOfTokenHash(hash), "");
}

TEST(AuthorizerTest, RolesGrantTheirMethodsOnTheirAccounts) {
  auto policy = ParsePolicy(
      "bindings { identity: \"v\" role: ROLE_VIEWER accounts: \"a\" }"
      "bindings { identity: \"n\" role: ROLE_NOTIFIER accounts: \"*\" }",
      false);
  ASSERT_TRUE(policy.ok());
  auto authz = Authorizer::FromPolicy(*policy);
  ASSERT_TRUE(authz.ok());
  const auto* get = v1::GetPurchaseOrderRequest::descriptor();
  const auto* subscribe = v1::SubscribeNotificationsRequest::descriptor();
  EXPECT_TRUE(authz->Check("v", get, "a").ok());
  absl::Status denied = authz->Check("v", get, "b");
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(core::ReasonOf(denied), "PERMISSION_DENIED");
  EXPECT_THAT(
      std::string(denied.message()),
      HasSubstr("PurchaseOrderService.GetPurchaseOrder on account \"b\""));
  // Every account's notifications need "*".
  EXPECT_FALSE(authz->Check("v", subscribe, "").ok());
  EXPECT_TRUE(authz->Check("n", subscribe, "").ok());
  EXPECT_FALSE(authz->Check("n", get, "a").ok());
  EXPECT_FALSE(authz->Check("", get, "a").ok());
  EXPECT_FALSE(authz->Check("V", get, "a").ok());  // Identities are exact.
  EXPECT_TRUE(Authorizer::AllowAll().Check("", get, "a").ok());
}

}  // namespace
}  // namespace api
}  // namespace poledger
