// Security end to end: an in-process server with mutual TLS and an
// authorization policy, certificates made by the openssl command at test
// time (tests/testing/make_certs.sh), every method of every service called
// by every kind of caller, and the log head checked after every call.
#include <signal.h>

#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "api/authz.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"
#include "openssl/x509v3.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/command.h"
#include "tests/testing/generic_call.h"
#include "tests/testing/purchase_orders.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

constexpr char kA[] = "acct-a";
constexpr char kB[] = "acct-b";
constexpr char kAws[] = "Amazon Web Services, Inc.";

std::string Spiffe(const std::string& name) {
  return "spiffe://poledger.test/" + name;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteAll(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// The policy under test: each role bound once, "root" bound to all.
std::string Policy() {
  std::string p;
  auto bind = [&](const std::string& who, const char* role,
                  const std::string& account) {
    absl::StrAppend(&p, "bindings { identity: \"", who, "\" role: ", role,
                    " accounts: \"", account, "\" }\n");
  };
  bind(Spiffe("viewer-a"), "ROLE_VIEWER", kA);
  bind(Spiffe("purchaser-a"), "ROLE_PURCHASER", kA);
  bind(Spiffe("biller-a"), "ROLE_BILLER", kA);
  bind(Spiffe("notifier"), "ROLE_NOTIFIER", "*");
  bind(Spiffe("auditor"), "ROLE_AUDITOR", "*");
  bind(Spiffe("admin"), "ROLE_ADMIN", "*");
  bind(Spiffe("privacy-a"), "ROLE_PRIVACY_OFFICER", kA);
  bind("cn-only", "ROLE_VIEWER", kA);  // An identity from the subject CN.
  for (const char* role : {"ROLE_PURCHASER", "ROLE_BILLER", "ROLE_NOTIFIER",
                           "ROLE_AUDITOR", "ROLE_ADMIN"}) {
    bind(Spiffe("root"), role, "*");
  }
  return p;
}

// The test's own view of the rights (written from the issue, apart from the
// server's table): what each method is about.
// kSelf: TestPermissions, which any identity may call about itself.
enum class Kind {
  kRead,
  kNotifications,
  kPurchase,
  kBill,
  kLog,
  kAdmin,
  kErase,
  kSelf
};

Kind KindOf(const std::string& method) {
  static const std::map<std::string, Kind> kKinds = {
      {"CreatePurchaseOrder", Kind::kPurchase},
      {"GetPurchaseOrder", Kind::kRead},
      {"ListPurchaseOrders", Kind::kRead},
      {"UpdatePurchaseOrder", Kind::kPurchase},
      {"UpdatePurchaseOrderStatus", Kind::kPurchase},
      {"DeletePurchaseOrder", Kind::kPurchase},
      {"AddLineItem", Kind::kPurchase},
      {"UpdateLineItem", Kind::kPurchase},
      {"RemoveLineItem", Kind::kPurchase},
      {"ListPurchaseOrderInvoices", Kind::kRead},
      {"TestPermissions", Kind::kSelf},
      {"RecordInvoice", Kind::kBill},
      {"BatchRecordInvoices", Kind::kBill},
      {"GetInvoice", Kind::kRead},
      {"RecordMarketplaceTransaction", Kind::kBill},
      {"SubscribeNotifications", Kind::kNotifications},
      {"ListNotifications", Kind::kNotifications},
      {"ReadEvents", Kind::kLog},
      {"SubscribeEvents", Kind::kLog},
      {"GetPurchaseOrderAt", Kind::kRead},
      {"ListPurchaseOrderChanges", Kind::kRead},
      {"GetLogDigest", Kind::kLog},
      {"Replicate", Kind::kLog},
      {"GetServerInfo", Kind::kAdmin},
      {"CreateSnapshot", Kind::kAdmin},
      {"CreateBackup", Kind::kAdmin},
      {"SetTime", Kind::kAdmin},
      {"AdvanceTime", Kind::kAdmin},
      {"ErasePersonalData", Kind::kErase},
  };
  auto it = kKinds.find(method);
  if (it == kKinds.end()) {
    ADD_FAILURE() << "a method the test does not know: " << method;
    return Kind::kAdmin;
  }
  return it->second;
}

struct Caller {
  std::string name;  // Certificate file name; "" none.
  std::set<Kind> kinds;
  bool every_account = false;  // Else account A only.
};

const std::vector<Caller>& Callers() {
  static const auto* callers = new std::vector<Caller>{
      {"", {}, false},
      {"untrusted", {}, false},
      {"viewer-a", {Kind::kRead, Kind::kNotifications}, false},
      {"cn-only", {Kind::kRead, Kind::kNotifications}, false},
      {"purchaser-a",
       {Kind::kRead, Kind::kNotifications, Kind::kPurchase},
       false},
      {"biller-a", {Kind::kRead, Kind::kNotifications, Kind::kBill}, false},
      {"notifier", {Kind::kNotifications}, true},
      {"auditor", {Kind::kRead, Kind::kNotifications, Kind::kLog}, true},
      {"admin", {Kind::kAdmin, Kind::kErase}, true},
      {"privacy-a", {Kind::kErase}, false},
  };
  return *callers;
}

std::string ReasonOf(const grpc::Status& status) {
  google::rpc::Status rpc;
  if (!rpc.ParseFromString(status.error_details())) return "";
  for (const auto& any : rpc.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) return info.reason();
  }
  return "";
}

v1::PurchaseOrder NewPo(const std::string& id) {
  return testing::SimplePurchaseOrder(id, 1000);
}

// Records an invoice of `units` USD on `account` as `stub`'s caller.
grpc::Status RecordInvoice(v1::InvoiceService::Stub* stub,
                           const std::string& account,
                           const std::string& invoice_id, int64_t units) {
  grpc::ClientContext ctx;
  v1::RecordInvoiceRequest req;
  req.set_account_id(account);
  v1::Invoice* inv = req.mutable_invoice();
  inv->set_invoice_id(invoice_id);
  inv->set_bill_from(kAws);
  inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
  inv->set_billing_period("2026-02");
  inv->mutable_amount()->set_currency_code("USD");
  inv->mutable_amount()->set_units(units);
  v1::Invoice out;
  return stub->RecordInvoice(&ctx, req, &out);
}

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new TempDir();
    const auto made = testing::RunCommand(absl::StrCat(
        "bash ", POLEDGER_MAKE_CERTS, " ", certs_->path(),
        " viewer-a purchaser-a biller-a notifier auditor admin privacy-a root "
        "2>&1"));
    ASSERT_EQ(made.exit_code, 0) << made.out;
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }

  static std::string Cert(const std::string& file) {
    return absl::StrCat(certs_->path(), "/", file);
  }

  void SetUp() override {
    ASSERT_TRUE(std::filesystem::copy_file(Cert("server.pem"),
                                           dir_.path() + "/server.pem"));
    ASSERT_TRUE(std::filesystem::copy_file(Cert("server.key"),
                                           dir_.path() + "/server.key"));
    WriteAll(dir_.path() + "/policy.textproto", Policy());
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.path() + "/data";
    options.tick_interval = absl::Hours(1);
    options.tls_cert = dir_.path() + "/server.pem";
    options.tls_key = dir_.path() + "/server.key";
    options.tls_client_ca = Cert("ca.pem");
    options.authz_policy = dir_.path() + "/policy.textproto";
    auto server = PoledgerServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
  }

  // A new TLS channel as `who` (a certificate name; "" presents none).
  std::shared_ptr<grpc::Channel> Channel(const std::string& who) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadAll(Cert("ca.pem"));
    if (!who.empty()) {
      tls.pem_cert_chain = ReadAll(Cert(who + ".pem"));
      tls.pem_private_key = ReadAll(Cert(who + ".key"));
    }
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::SslCredentials(tls),
        args);
  }

  uint64_t head() const { return server_->ledger()->store()->Head().position; }

  static TempDir* certs_;
  TempDir dir_;
  std::unique_ptr<PoledgerServer> server_;
};

TempDir* SecurityTest::certs_ = nullptr;

TEST_F(SecurityTest, EveryMethodByEveryCallerGivesItsExactCode) {
  auto root = Channel("root");
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels;
  for (const Caller& c : Callers()) channels[c.name] = Channel(c.name);
  const auto methods = api::ApiMethods();
  ASSERT_EQ(methods.size(), 29u);
  int calls = 0;
  std::map<grpc::StatusCode, int> by_code;
  const uint64_t start = head();
  for (const auto* method : methods) {
    const Kind kind = KindOf(method->name());
    for (const char* account : {kA, kB}) {
      const std::string request = testing::RequestBytes(method, account);
      // What an allowed caller gets: root's answer to the same request.
      const grpc::StatusCode allowed =
          testing::CallGeneric(root.get(), method, request).error_code();
      EXPECT_NE(allowed, grpc::StatusCode::PERMISSION_DENIED) << method->name();
      EXPECT_NE(allowed, grpc::StatusCode::UNAUTHENTICATED) << method->name();
      EXPECT_NE(allowed, grpc::StatusCode::UNAVAILABLE) << method->name();
      const bool about_one_account =
          method->input_type()->FindFieldByName("account_id") != nullptr &&
          kind != Kind::kLog;
      // A batch's items are each checked against their own account (see
      // ABatchChecksEachItemsAccount); the call needs the access on one.
      const bool per_item = method->name() == "BatchRecordInvoices";
      for (const Caller& c : Callers()) {
        grpc::StatusCode want;
        if (c.name.empty()) {
          want = grpc::StatusCode::UNAUTHENTICATED;
        } else if (c.name == "untrusted") {
          want = grpc::StatusCode::UNAVAILABLE;  // The handshake fails.
        } else if (kind == Kind::kSelf) {
          want = allowed;
        } else if (c.kinds.count(kind) > 0 &&
                   (c.every_account || per_item ||
                    (about_one_account && std::string(account) == kA))) {
          want = allowed;
        } else {
          want = grpc::StatusCode::PERMISSION_DENIED;
        }
        const grpc::StatusCode got =
            testing::CallGeneric(channels[c.name].get(), method, request)
                .error_code();
        ++calls;
        ++by_code[got];
        EXPECT_EQ(got, want)
            << method->full_name() << " by '" << c.name << "' on " << account;
        EXPECT_EQ(head(), start)
            << method->full_name() << " by '" << c.name << "' wrote to the log";
      }
    }
  }
  EXPECT_EQ(calls, 29 * 2 * 10);
  std::string summary;
  for (const auto& [code, n] : by_code) {
    absl::StrAppend(&summary, " ", static_cast<int>(code), ":", n);
  }
  std::printf("matrix: %d calls, by code:%s\n", calls, summary.c_str());
}

// A biller of account A sends a batch for A and B: A's item is recorded,
// B's is refused on its own, and B's log gets nothing.
TEST_F(SecurityTest, ABatchChecksEachItemsAccount) {
  auto root = v1::PurchaseOrderService::NewStub(Channel("root"));
  for (const char* account : {kA, kB}) {
    grpc::ClientContext ctx;
    v1::CreatePurchaseOrderRequest req;
    req.set_account_id(account);
    *req.mutable_purchase_order() = NewPo("po");
    v1::PurchaseOrder out;
    ASSERT_TRUE(root->CreatePurchaseOrder(&ctx, req, &out).ok());
  }
  const uint64_t before = head();
  auto biller = v1::InvoiceService::NewStub(Channel("biller-a"));
  v1::BatchRecordInvoicesRequest batch;
  for (const char* account : {kA, kB}) {
    v1::RecordInvoiceRequest* item = batch.add_requests();
    item->set_account_id(account);
    v1::Invoice* inv = item->mutable_invoice();
    inv->set_invoice_id("inv-1");
    inv->set_bill_from("Amazon Web Services, Inc.");
    inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
    inv->set_billing_period("2026-03");
    inv->mutable_amount()->set_currency_code("USD");
    inv->mutable_amount()->set_units(10);
  }
  grpc::ClientContext ctx;
  v1::BatchRecordInvoicesResponse out;
  ASSERT_TRUE(biller->BatchRecordInvoices(&ctx, batch, &out).ok());
  ASSERT_EQ(out.results_size(), 2);
  ASSERT_TRUE(out.results(0).has_invoice()) << out.results(0).DebugString();
  EXPECT_EQ(out.results(0).invoice().account_id(), kA);
  ASSERT_TRUE(out.results(1).has_error());
  EXPECT_EQ(out.results(1).error().code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(out.results(1).error().message(),
              ::testing::HasSubstr("\"acct-b\""));
  EXPECT_EQ(head(), before + 1);
  // A viewer may record on no account: the call itself is refused.
  auto viewer = v1::InvoiceService::NewStub(Channel("viewer-a"));
  grpc::ClientContext viewer_ctx;
  EXPECT_EQ(viewer->BatchRecordInvoices(&viewer_ctx, batch, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(head(), before + 1);
}

TEST_F(SecurityTest, RefusalsCarryTheReasonAndSayNothingOfTheAccount) {
  auto root = v1::PurchaseOrderService::NewStub(Channel("root"));
  {
    grpc::ClientContext ctx;
    v1::CreatePurchaseOrderRequest req;
    req.set_account_id(kB);
    *req.mutable_purchase_order() = NewPo("po-b");
    v1::PurchaseOrder out;
    ASSERT_TRUE(root->CreatePurchaseOrder(&ctx, req, &out).ok());
  }
  auto viewer = v1::PurchaseOrderService::NewStub(Channel("viewer-a"));
  std::vector<grpc::Status> answers;
  for (const char* po : {"po-b", "po-none"}) {
    grpc::ClientContext ctx;
    v1::GetPurchaseOrderRequest req;
    req.set_account_id(kB);
    req.set_purchase_order_id(po);
    v1::PurchaseOrder out;
    answers.push_back(viewer->GetPurchaseOrder(&ctx, req, &out));
  }
  for (const grpc::Status& s : answers) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(ReasonOf(s), "PERMISSION_DENIED");
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("GetPurchaseOrder"));
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("\"acct-b\""));
  }
  // An existing and a missing purchase order get the same answer.
  EXPECT_EQ(answers[0].error_message(), answers[1].error_message());
  grpc::ClientContext ctx;
  v1::GetPurchaseOrderRequest req;
  req.set_account_id(kA);
  req.set_purchase_order_id("po-a");
  v1::PurchaseOrder out;
  grpc::Status none = v1::PurchaseOrderService::NewStub(Channel(""))
                          ->GetPurchaseOrder(&ctx, req, &out);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReasonOf(none), "UNAUTHENTICATED");
}

TEST_F(SecurityTest, TheActorIsTheCallersIdentityNeverWhatItSends) {
  auto purchaser = v1::PurchaseOrderService::NewStub(Channel("purchaser-a"));
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-poledger-actor", "someone-else");
  v1::CreatePurchaseOrderRequest req;
  req.set_account_id(kA);
  *req.mutable_purchase_order() = NewPo("po-a");
  v1::PurchaseOrder out;
  ASSERT_TRUE(purchaser->CreatePurchaseOrder(&ctx, req, &out).ok());
  auto log = v1::EventLogService::NewStub(Channel("auditor"));
  grpc::ClientContext read_ctx;
  v1::ReadEventsResponse events;
  ASSERT_TRUE(
      log->ReadEvents(&read_ctx, v1::ReadEventsRequest(), &events).ok());
  ASSERT_EQ(events.events_size(), 1);
  EXPECT_EQ(events.events(0).actor(), Spiffe("purchaser-a"));

  auto admin = v1::AdminService::NewStub(Channel("admin"));
  grpc::ClientContext info_ctx;
  v1::GetServerInfoResponse info;
  ASSERT_TRUE(
      admin->GetServerInfo(&info_ctx, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.authorization(), "policy");
  EXPECT_EQ(info.caller_identity(), Spiffe("admin"));
  // The identity of a certificate without a URI SAN is its subject CN.
  auto cn = v1::PurchaseOrderService::NewStub(Channel("cn-only"));
  grpc::ClientContext get_ctx;
  v1::GetPurchaseOrderRequest get;
  get.set_account_id(kA);
  get.set_purchase_order_id("po-a");
  EXPECT_TRUE(cn->GetPurchaseOrder(&get_ctx, get, &out).ok());
}

TEST_F(SecurityTest, NotificationStreamsKeepToTheirAccounts) {
  auto root_pos = v1::PurchaseOrderService::NewStub(Channel("root"));
  auto root_invoices = v1::InvoiceService::NewStub(Channel("root"));
  for (const char* account : {kA, kB}) {
    grpc::ClientContext ctx;
    v1::CreatePurchaseOrderRequest req;
    req.set_account_id(account);
    *req.mutable_purchase_order() = NewPo("po");
    v1::PurchaseOrder out;
    ASSERT_TRUE(root_pos->CreatePurchaseOrder(&ctx, req, &out).ok());
  }
  // 800 of 1000 invoiced: each account's 75% alert.
  for (const char* account : {kB, kA}) {
    ASSERT_TRUE(RecordInvoice(root_invoices.get(), account, "inv-1", 800).ok());
  }
  // Reads a stream up to its caught_up marker; returns the accounts seen.
  auto accounts_seen = [](v1::NotificationService::Stub* stub,
                          const std::string& account, grpc::Status* status) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    v1::SubscribeNotificationsRequest req;
    req.set_account_id(account);
    auto reader = stub->SubscribeNotifications(&ctx, req);
    std::vector<std::string> seen;
    v1::SubscribeNotificationsResponse msg;
    while (reader->Read(&msg)) {
      if (msg.has_caught_up()) {
        ctx.TryCancel();
        break;
      }
      if (msg.has_notification())
        seen.push_back(msg.notification().account_id());
    }
    *status = reader->Finish();
    return seen;
  };
  grpc::Status status;
  auto viewer = v1::NotificationService::NewStub(Channel("viewer-a"));
  EXPECT_THAT(accounts_seen(viewer.get(), kA, &status),
              ::testing::ElementsAre(kA));
  EXPECT_THAT(accounts_seen(viewer.get(), kB, &status), ::testing::IsEmpty());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Every account's notifications: the notifier's right, not a viewer's.
  EXPECT_THAT(accounts_seen(viewer.get(), "", &status), ::testing::IsEmpty());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto notifier = v1::NotificationService::NewStub(Channel("notifier"));
  EXPECT_THAT(accounts_seen(notifier.get(), "", &status),
              ::testing::ElementsAre(kB, kA));
}

// Lists the services through server reflection (v1alpha, as grpcurl asks),
// with hand-encoded messages: this binary links gRPC's reflection library,
// which carries the same message types. Returns the response bytes.
std::string ListServicesThroughReflection(grpc::Channel* channel) {
  grpc::GenericStub stub(channel->shared_from_this());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  void* tag;
  bool ok;
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  // ServerReflectionRequest { list_services: "" } (field 7).
  grpc::Slice slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  call->WritesDone(reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  std::string out;
  if (ok) {
    std::vector<grpc::Slice> slices;
    (void)response.Dump(&slices);
    for (const grpc::Slice& s : slices) {
      out.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return out;
}

TEST_F(SecurityTest, HealthAndReflectionStayOpen) {
  // As grpcurl -cacert ca.pem -cert admin.pem -key admin.key ... list, and
  // without a client certificate.
  for (const char* who : {"admin", ""}) {
    const std::string listed =
        ListServicesThroughReflection(Channel(who).get());
    EXPECT_THAT(listed, ::testing::HasSubstr("poledger.v1.InvoiceService"))
        << who;
    EXPECT_THAT(listed, ::testing::HasSubstr("grpc.health.v1.Health")) << who;
  }
  auto health = grpc::health::v1::Health::NewStub(Channel(""));
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse out;
  ASSERT_TRUE(health->Check(&ctx, req, &out).ok());
  EXPECT_EQ(out.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(SecurityTest, PolicyReloadKeepsTheOldPolicyWhenTheNewOneIsBad) {
  auto viewer = v1::PurchaseOrderService::NewStub(Channel("viewer-a"));
  auto get = [&](const char* account) {
    grpc::ClientContext ctx;
    v1::GetPurchaseOrderRequest req;
    req.set_account_id(account);
    req.set_purchase_order_id("po");
    v1::PurchaseOrder out;
    return viewer->GetPurchaseOrder(&ctx, req, &out).error_code();
  };
  EXPECT_EQ(get(kB), grpc::StatusCode::PERMISSION_DENIED);
  const std::string path = dir_.path() + "/policy.textproto";
  WriteAll(path, "bindings { identity: \"x\" role: ROLE_NOBODY }");
  absl::Status reloaded = server_->Reload();
  EXPECT_EQ(reloaded.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(reloaded.message()),
              ::testing::HasSubstr("policy kept"));
  EXPECT_EQ(get(kA), grpc::StatusCode::NOT_FOUND);  // Still a viewer of A.
  WriteAll(path, Policy() + absl::StrCat("bindings { identity: \"",
                                         Spiffe("viewer-a"),
                                         "\" role: ROLE_VIEWER accounts: \"",
                                         kB, "\" }\n"));
  ASSERT_OK(server_->Reload());
  EXPECT_EQ(get(kB), grpc::StatusCode::NOT_FOUND);
}

// The server's certificate as a new connection sees it: its subject CN.
std::string ServerCn(grpc::Channel* channel) {
  auto admin = v1::AdminService::NewStub(channel->shared_from_this());
  grpc::ClientContext ctx;
  v1::GetServerInfoResponse out;
  admin->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &out);
  auto auth = ctx.auth_context();
  if (auth == nullptr) return "";
  auto cn = auth->FindPropertyValues("x509_common_name");
  return cn.empty() ? "" : std::string(cn[0].data(), cn[0].size());
}

TEST_F(SecurityTest, RotatedCertificatesServeNewConnectionsAndStreamsGoOn) {
  EXPECT_EQ(ServerCn(Channel("admin").get()), "poledger-server");
  // A stream open across the rotation.
  auto log = v1::EventLogService::NewStub(Channel("auditor"));
  grpc::ClientContext stream_ctx;
  auto reader = log->SubscribeEvents(&stream_ctx, v1::SubscribeEventsRequest());
  v1::SubscribeEventsResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());

  // A bad key is refused and the old files stay.
  WriteAll(dir_.path() + "/server.key", ReadAll(Cert("admin.key")));
  EXPECT_EQ(server_->Reload().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::copy_file(Cert("server2.pem"), dir_.path() + "/server.pem",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(Cert("server2.key"), dir_.path() + "/server.key",
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_OK(server_->Reload());
  // gRPC's watcher takes the new files within a second or two.
  std::string cn;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    cn = ServerCn(Channel("admin").get());
    if (cn == "poledger-server-rotated") break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(cn, "poledger-server-rotated");

  // The stream opened before goes on.
  auto pos = v1::PurchaseOrderService::NewStub(Channel("purchaser-a"));
  grpc::ClientContext ctx;
  v1::CreatePurchaseOrderRequest req;
  req.set_account_id(kA);
  *req.mutable_purchase_order() = NewPo("po-after");
  v1::PurchaseOrder out;
  ASSERT_TRUE(pos->CreatePurchaseOrder(&ctx, req, &out).ok());
  do {
    ASSERT_TRUE(reader->Read(&msg));
  } while (!msg.has_event());
  EXPECT_EQ(msg.event().actor(), Spiffe("purchaser-a"));
  stream_ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  reader->Finish();
}

// --- Revocation reaches open streams --------------------------------------

// The policy without the bindings of `gone` (identities).
std::string PolicyWithout(const std::set<std::string>& gone) {
  std::string kept;
  for (absl::string_view line : absl::StrSplit(Policy(), '\n')) {
    bool drop = false;
    for (const std::string& who : gone) {
      if (absl::StrContains(line, absl::StrCat("\"", who, "\""))) drop = true;
    }
    if (!drop && !line.empty()) absl::StrAppend(&kept, line, "\n");
  }
  return kept;
}

// Reads `reader` until its caught_up marker.
template <typename Reader, typename Message>
bool ReadToCaughtUp(Reader* reader, Message* msg) {
  while (reader->Read(msg)) {
    if (msg->has_caught_up()) return true;
  }
  return false;
}

TEST_F(SecurityTest, APolicyReloadEndsTheStreamsOfCallersWhoLostAccess) {
  auto root_pos = v1::PurchaseOrderService::NewStub(Channel("root"));
  {
    grpc::ClientContext ctx;
    v1::CreatePurchaseOrderRequest req;
    req.set_account_id(kA);
    *req.mutable_purchase_order() = NewPo("po");
    v1::PurchaseOrder out;
    ASSERT_TRUE(root_pos->CreatePurchaseOrder(&ctx, req, &out).ok());
  }
  // Notification streams of account A: the viewer's (to be revoked) and
  // the biller's (kept); every account's: the notifier's (kept); the whole
  // log: the auditor's (to be revoked).
  struct NotificationStream {
    std::unique_ptr<v1::NotificationService::Stub> stub;
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::SubscribeNotificationsResponse>>
        reader;
  };
  auto open_notifications = [&](const std::string& who,
                                const std::string& account,
                                bool allowed = true) {
    auto s = std::make_unique<NotificationStream>();
    s->stub = v1::NotificationService::NewStub(Channel(who));
    s->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(60));
    v1::SubscribeNotificationsRequest req;
    req.set_account_id(account);
    s->reader = s->stub->SubscribeNotifications(&s->ctx, req);
    v1::SubscribeNotificationsResponse msg;
    EXPECT_EQ(ReadToCaughtUp(s->reader.get(), &msg), allowed) << who;
    return s;
  };
  auto viewer = open_notifications("viewer-a", kA);
  auto biller = open_notifications("biller-a", kA);
  auto notifier = open_notifications("notifier", "");
  auto log = v1::EventLogService::NewStub(Channel("auditor"));
  grpc::ClientContext log_ctx;
  log_ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
  auto events = log->SubscribeEvents(&log_ctx, v1::SubscribeEventsRequest());
  v1::SubscribeEventsResponse event;
  ASSERT_TRUE(ReadToCaughtUp(events.get(), &event));

  WriteAll(dir_.path() + "/policy.textproto",
           PolicyWithout({Spiffe("viewer-a"), Spiffe("auditor")}));
  ASSERT_OK(server_->Reload());
  const uint64_t head_at_reload = head();

  // Raised after the reload: the 75% alert of account A.
  auto root_invoices = v1::InvoiceService::NewStub(Channel("root"));
  ASSERT_TRUE(
      RecordInvoice(root_invoices.get(), kA, "inv-after-reload", 800).ok());

  // The revoked streams end PERMISSION_DENIED with nothing raised after.
  v1::SubscribeNotificationsResponse note;
  while (viewer->reader->Read(&note)) {
    EXPECT_FALSE(note.has_notification()) << note.DebugString();
  }
  grpc::Status ended = viewer->reader->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ReasonOf(ended), "PERMISSION_DENIED");
  while (events->Read(&event)) {
    if (event.has_event()) {
      EXPECT_LE(event.event().position(), head_at_reload);
    }
  }
  EXPECT_EQ(events->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // The kept ones get the new notification, and nothing is missed.
  for (NotificationStream* kept : {biller.get(), notifier.get()}) {
    bool got = false;
    while (!got && kept->reader->Read(&note)) {
      if (note.has_notification()) {
        EXPECT_EQ(note.notification().account_id(), kA);
        EXPECT_GT(note.notification().position(), head_at_reload);
        got = true;
      }
    }
    EXPECT_TRUE(got);
    kept->ctx.TryCancel();
    while (kept->reader->Read(&note)) {
    }
    kept->reader->Finish();
  }

  // And the revoked caller cannot open a new one.
  auto again = open_notifications("viewer-a", kA, /*allowed=*/false);
  EXPECT_EQ(again->reader->Finish().error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// Writes NAME.pem and NAME.key: a client certificate for
// spiffe://poledger.test/`identity`, signed by the test CA, that expires
// `lifetime` from now.
void MakeShortLivedCert(const std::string& dir, const std::string& ca_dir,
                        const std::string& name, const std::string& identity,
                        absl::Duration lifetime) {
  const auto made = testing::RunCommand(absl::StrCat(
      "cd ", dir, " && openssl genpkey -algorithm EC -pkeyopt "
      "ec_paramgen_curve:P-256 -out ", name, ".key 2>&1 && "
      "openssl req -new -key ", name, ".key -subj /CN=", name, " -out ",
      name, ".csr 2>&1"));
  ASSERT_EQ(made.exit_code, 0) << made.out;
  // openssl x509 counts validity in days: set the end time with the API.
  std::unique_ptr<BIO, decltype(&BIO_free)> csr_bio(
      BIO_new_file((dir + "/" + name + ".csr").c_str(), "r"), BIO_free);
  std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> csr(
      PEM_read_bio_X509_REQ(csr_bio.get(), nullptr, nullptr, nullptr),
      X509_REQ_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> ca_bio(
      BIO_new_file((ca_dir + "/ca.pem").c_str(), "r"), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> ca(
      PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr), X509_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_file((ca_dir + "/ca.key").c_str(), "r"), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> ca_key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr),
      EVP_PKEY_free);
  ASSERT_TRUE(csr != nullptr && ca != nullptr && ca_key != nullptr);
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 4242);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.get()));
  X509_set_subject_name(cert.get(), X509_REQ_get_subject_name(csr.get()));
  X509_set_pubkey(cert.get(), X509_REQ_get0_pubkey(csr.get()));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                  static_cast<long>(absl::ToInt64Seconds(lifetime)));
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, ca.get(), cert.get(), nullptr, nullptr, 0);
  const std::string san = "URI:" + Spiffe(identity);
  for (auto [nid, value] : {std::pair<int, const char*>{NID_subject_alt_name,
                                                        san.c_str()},
                            {NID_ext_key_usage, "clientAuth"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    ASSERT_NE(ext, nullptr);
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  ASSERT_GT(X509_sign(cert.get(), ca_key.get(), EVP_sha256()), 0);
  std::unique_ptr<BIO, decltype(&BIO_free)> out(
      BIO_new_file((dir + "/" + name + ".pem").c_str(), "w"), BIO_free);
  ASSERT_EQ(PEM_write_bio_X509(out.get(), cert.get()), 1);
}

TEST_F(SecurityTest, AStreamEndsUnauthenticatedWhenItsCertificateExpires) {
  MakeShortLivedCert(certs_->path(), certs_->path(), "short-lived", "viewer-a",
                     absl::Seconds(4));
  const absl::Time opened = absl::Now();
  auto stub = v1::NotificationService::NewStub(Channel("short-lived"));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::SubscribeNotificationsRequest req;
  req.set_account_id(kA);
  auto reader = stub->SubscribeNotifications(&ctx, req);
  v1::SubscribeNotificationsResponse msg;
  ASSERT_TRUE(ReadToCaughtUp(reader.get(), &msg));
  while (reader->Read(&msg)) {
  }
  const grpc::Status ended = reader->Finish();
  const absl::Duration open_for = absl::Now() - opened;
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReasonOf(ended), "CERTIFICATE_EXPIRED");
  // At the expiry (whole seconds, checked on the stream's one-second tick),
  // not at the 60 s deadline.
  EXPECT_GE(open_for, absl::Seconds(2));
  EXPECT_LE(open_for, absl::Seconds(7));
}

// --- The shipped clients ---------------------------------------------------

TEST_F(SecurityTest, ShippedClientsSpeakTlsWithTheirIdentities) {
  const std::string server = absl::StrCat("127.0.0.1:", server_->port());
  auto tls_env = [&](const std::string& who) {
    return absl::StrCat("POLEDGER_CLIENT_TLS_CA=", Cert("ca.pem"),
                        " POLEDGER_CLIENT_TLS_CERT=", Cert(who + ".pem"),
                        " POLEDGER_CLIENT_TLS_KEY=", Cert(who + ".key"), " ");
  };
  auto tls_flags = [&](const std::string& who) {
    return absl::StrCat(" --tls-ca=", Cert("ca.pem"),
                        " --tls-cert=", Cert(who + ".pem"),
                        " --tls-key=", Cert(who + ".key"));
  };
  const std::string create = absl::StrCat(
      POLEDGER_POCTL_BINARY, " --server=", server,
      " --account=acct-a po create --id po-1 --bill-from 'AWS' "
      "--effective 2026-01 --expiration 2030-12 --contact a@example.com");
  // poctl from the environment: the purchaser may, the viewer may not.
  auto run = testing::RunCommand(tls_env("purchaser-a") + create + " 2>&1");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  run = testing::RunCommand(tls_env("viewer-a") + create + " 2>&1");
  EXPECT_EQ(run.exit_code, 8) << run.out;
  EXPECT_THAT(run.out, ::testing::HasSubstr(
                           "error: PERMISSION_DENIED [PERMISSION_DENIED]"));
  // Plaintext to a TLS server: unreachable (the retries cut short).
  run = testing::RunCommand(
      absl::StrCat(POLEDGER_POCTL_BINARY, " --timeout=1",
                   create.substr(strlen(POLEDGER_POCTL_BINARY)), " 2>&1"));
  EXPECT_EQ(run.exit_code, 7) << run.out;
  auto records = server_->ledger()->store()->ReadForward(1, 10);
  ASSERT_OK(records);
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].actor, Spiffe("purchaser-a"));

  // The auditor reads the whole log online; a viewer may not.
  run = testing::RunCommand(absl::StrCat(POLEDGER_AUDIT_BINARY,
                                         " verify --server=", server,
                                         tls_flags("auditor"), " 2>&1"));
  EXPECT_EQ(run.exit_code, 0) << run.out;
  run = testing::RunCommand(absl::StrCat(POLEDGER_AUDIT_BINARY,
                                         " verify --server=", server,
                                         tls_flags("viewer-a"), " 2>&1"));
  EXPECT_NE(run.exit_code, 0) << run.out;
  EXPECT_THAT(run.out, ::testing::HasSubstr("PERMISSION_DENIED"));

  // The load generator sets up accounts and measures writes: root's work.
  run = testing::RunCommand(
      absl::StrCat(POLEDGER_LOADGEN_BINARY, " --server=", server,
                   " --methods=info --seconds=0.5 --rounds=1 --concurrency=1",
                   tls_flags("root"), " 2>&1"));
  EXPECT_EQ(run.exit_code, 0) << run.out;

  // The notifier follows every account's notifications as "notifier"; a
  // viewer of one account may not.
  const std::string notifier = absl::StrCat(
      "timeout -s TERM 2 ", POLEDGER_NOTIFIER_BINARY, " --server=", server,
      " --smtp-url=smtp://127.0.0.1:1 --from=ledger@example.com --checkpoint=",
      dir_.path(), "/checkpoint");
  run = testing::RunCommand(notifier + tls_flags("notifier") + " 2>&1");
  EXPECT_THAT(run.out, ::testing::HasSubstr("from position 0"));
  EXPECT_THAT(run.out, ::testing::Not(::testing::HasSubstr("stream ended")));
  run = testing::RunCommand(notifier + tls_flags("viewer-a") + " 2>&1");
  EXPECT_THAT(run.out, ::testing::HasSubstr("PERMISSION_DENIED"));
}

// --- The binary's flags and signals
// ----------------------------------------------

TEST_F(SecurityTest, PlaintextOffLoopbackAndTlsWithoutPolicyAreRefused) {
  for (const auto& [args, why] :
       std::vector<std::pair<std::string, std::string>>{
           {"--listen=0.0.0.0:0", "without TLS"},
           {absl::StrCat("--tls-cert=", Cert("server.pem"),
                         " --tls-key=", Cert("server.key"),
                         " --tls-client-ca=", Cert("ca.pem")),
            "--authz-policy"},
           {absl::StrCat("--tls-cert=", Cert("server.pem")), "together"},
       }) {
    const auto run = testing::RunCommand(
        absl::StrCat(POLEDGER_SERVER_BINARY, " --data-dir=", dir_.path(),
                     "/refused ", args, " 2>&1"));
    EXPECT_EQ(run.exit_code, 2) << args << ": " << run.out;
    EXPECT_THAT(run.out, ::testing::HasSubstr(why)) << args;
  }
}

TEST_F(SecurityTest, SighupReloadsTheRunningServersCertificates) {
  server_.reset();  // This test runs the binary.
  testing::ServerProcess process;
  ASSERT_TRUE(
      process.Start(POLEDGER_SERVER_BINARY,
                    {"--data-dir=" + dir_.path() + "/data2",
                     "--tls-cert=" + dir_.path() + "/server.pem",
                     "--tls-key=" + dir_.path() + "/server.key",
                     "--tls-client-ca=" + Cert("ca.pem"), "--authz-allow-all"}))
      << process.output();
  auto channel_to = [&] {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadAll(Cert("ca.pem"));
    tls.pem_cert_chain = ReadAll(Cert("admin.pem"));
    tls.pem_private_key = ReadAll(Cert("admin.key"));
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(process.address(),
                                     grpc::SslCredentials(tls), args);
  };
  EXPECT_EQ(ServerCn(channel_to().get()), "poledger-server");
  std::filesystem::copy_file(Cert("server2.pem"), dir_.path() + "/server.pem",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(Cert("server2.key"), dir_.path() + "/server.key",
                             std::filesystem::copy_options::overwrite_existing);
  // Before the signal the server keeps serving what it loaded.
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(ServerCn(channel_to().get()), "poledger-server");
  kill(process.pid(), SIGHUP);
  std::string cn;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    cn = ServerCn(channel_to().get());
    if (cn == "poledger-server-rotated") break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(cn, "poledger-server-rotated");
  EXPECT_THAT(process.output(),
              ::testing::HasSubstr("SIGHUP: TLS files and policy reloaded"));
  // allow-all mode is what GetServerInfo reports.
  auto admin = v1::AdminService::NewStub(channel_to());
  grpc::ClientContext ctx;
  v1::GetServerInfoResponse info;
  ASSERT_TRUE(
      admin->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.authorization(), "allow-all");
  EXPECT_EQ(process.Stop(), 0);
}

}  // namespace
}  // namespace poledger
