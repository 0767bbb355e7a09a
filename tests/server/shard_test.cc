// Shards: a server started with --shard=I/N serves only its accounts. Every
// account-scoped method refuses another shard's account with
// FAILED_PRECONDITION / WRONG_SHARD naming the owner and writes nothing;
// the x-poledger-account header must agree with the body; a batch refuses
// only its items of other shards; a data directory holding another shard's
// accounts is not served.
#include "core/shard.h"

#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "api/authz.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/generic_call.h"
#include "tests/testing/purchase_orders.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::testing::HasSubstr;

// ErrorInfo and BadRequest of a status.
struct Details {
  std::string reason;
  std::map<std::string, std::string> metadata;
  std::vector<std::string> fields;
};

Details DetailsOf(const std::string& error_details) {
  Details out;
  google::rpc::Status rpc;
  if (!rpc.ParseFromString(error_details)) return out;
  for (const auto& any : rpc.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::BadRequest bad;
    if (any.UnpackTo(&info)) {
      out.reason = info.reason();
      out.metadata.insert(info.metadata().begin(), info.metadata().end());
    } else if (any.UnpackTo(&bad)) {
      for (const auto& v : bad.field_violations())
        out.fields.push_back(v.field());
    }
  }
  return out;
}

// The first "acct-N" of shard `index` of `count`.
std::string AccountOfShard(uint32_t index, uint32_t count) {
  for (int i = 0;; ++i) {
    std::string account = absl::StrCat("acct-", i);
    if (core::ShardOf(account, count) == index) return account;
  }
}

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override { Start("1/3"); }

  void Start(const std::string& shard) {
    server_.reset();
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.path() + "/data";
    options.clock = "manual:2026-02-01T00:00:00Z";
    options.shard = shard;
    auto server = PoledgerServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
  }

  uint64_t head() const { return server_->ledger()->store()->Head().position; }

  grpc::Status CreatePo(const std::string& account, const std::string& po,
                        const std::string& header = "") {
    auto stub = v1::PurchaseOrderService::NewStub(channel_);
    grpc::ClientContext ctx;
    if (!header.empty()) ctx.AddMetadata("x-poledger-account", header);
    v1::CreatePurchaseOrderRequest req;
    req.set_account_id(account);
    *req.mutable_purchase_order() = testing::SimplePurchaseOrder(po, 1000);
    v1::PurchaseOrder out;
    return stub->CreatePurchaseOrder(&ctx, req, &out);
  }

  TempDir dir_;
  std::unique_ptr<PoledgerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  const std::string own_ = AccountOfShard(1, 3);
  const std::string other_ = AccountOfShard(2, 3);
};

TEST_F(ShardTest, EveryAccountScopedMethodRefusesAnotherShardsAccount) {
  ASSERT_TRUE(CreatePo(own_, "po-1").ok());
  const uint64_t start = head();
  int account_scoped = 0;
  for (const auto* method : api::ApiMethods()) {
    if (method->input_type()->FindFieldByName("account_id") == nullptr) {
      continue;
    }
    ++account_scoped;
    for (const bool with_header : {false, true}) {
      std::map<std::string, std::string> metadata;
      if (with_header) metadata["x-poledger-account"] = other_;
      const grpc::Status status =
          testing::CallGeneric(channel_.get(), method,
                               testing::RequestBytes(method, other_), metadata);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
          << method->full_name() << " " << status.error_message();
      const Details details = DetailsOf(status.error_details());
      EXPECT_EQ(details.reason, "WRONG_SHARD") << method->full_name();
      EXPECT_EQ(details.metadata.at("owning_shard"), "2")
          << method->full_name();
      EXPECT_EQ(details.metadata.at("shard_count"), "3") << method->full_name();
      EXPECT_THAT(
          status.error_message(),
          HasSubstr(absl::StrCat("\"", other_, "\" belongs to shard 2 of 3")));
      EXPECT_EQ(head(), start) << method->full_name() << " wrote";
    }
  }
  // Every account-scoped method of the API (the batch's items name their
  // accounts: see ABatchRefusesOnlyItsItemsOfOtherShards).
  EXPECT_EQ(account_scoped, 21);
}

TEST_F(ShardTest, AHeaderThatDisagreesWithTheBodyIsInvalid) {
  const uint64_t start = head();
  for (const auto* method : api::ApiMethods()) {
    if (method->input_type()->FindFieldByName("account_id") == nullptr) {
      continue;
    }
    const grpc::Status status = testing::CallGeneric(
        channel_.get(), method, testing::RequestBytes(method, own_),
        {{"x-poledger-account", own_ + "x"}});
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << method->full_name();
    const Details details = DetailsOf(status.error_details());
    EXPECT_EQ(details.reason, "INVALID_FIELD") << method->full_name();
    EXPECT_THAT(details.fields, ::testing::ElementsAre("account_id"));
    EXPECT_THAT(status.error_message(),
                HasSubstr("differs from the x-poledger-account header"));
  }
  EXPECT_EQ(head(), start);
  // Agreeing, or absent (grpcurl without -H), the call goes through.
  EXPECT_TRUE(CreatePo(own_, "po-1", own_).ok());
  EXPECT_TRUE(CreatePo(own_, "po-2").ok());
  EXPECT_EQ(head(), start + 2);
}

TEST_F(ShardTest, ABatchRefusesOnlyItsItemsOfOtherShards) {
  ASSERT_TRUE(CreatePo(own_, "po-1").ok());
  const uint64_t start = head();
  auto invoices = v1::InvoiceService::NewStub(channel_);
  v1::BatchRecordInvoicesRequest batch;
  for (const std::string& account : {own_, other_, own_}) {
    v1::RecordInvoiceRequest* item = batch.add_requests();
    item->set_account_id(account);
    v1::Invoice* inv = item->mutable_invoice();
    inv->set_invoice_id(absl::StrCat("inv-", batch.requests_size()));
    inv->set_bill_from("Amazon Web Services, Inc.");
    inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
    inv->set_billing_period("2026-02");
    inv->mutable_amount()->set_currency_code("USD");
    inv->mutable_amount()->set_units(10);
  }
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-poledger-shard", "1");
  v1::BatchRecordInvoicesResponse out;
  ASSERT_TRUE(invoices->BatchRecordInvoices(&ctx, batch, &out).ok());
  ASSERT_EQ(out.results_size(), 3);
  EXPECT_TRUE(out.results(0).has_invoice());
  EXPECT_EQ(out.results(1).error().code(),
            static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  EXPECT_THAT(out.results(1).error().message(),
              HasSubstr("belongs to shard 2 of 3"));
  const Details item = DetailsOf(out.results(1).error().SerializeAsString());
  EXPECT_EQ(item.reason, "WRONG_SHARD");
  EXPECT_EQ(item.metadata.at("owning_shard"), "2");
  EXPECT_TRUE(out.results(2).has_invoice());
  EXPECT_EQ(head(), start + 2);
}

TEST_F(ShardTest, GetServerInfoReportsTheShard) {
  auto admin = v1::AdminService::NewStub(channel_);
  grpc::ClientContext ctx;
  v1::GetServerInfoResponse info;
  ASSERT_TRUE(
      admin->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.shard_index(), 1u);
  EXPECT_EQ(info.shard_count(), 3u);
}

TEST_F(ShardTest, ADataDirectoryOfAnotherShardIsNotServed) {
  ASSERT_TRUE(CreatePo(own_, "po-1").ok());
  server_.reset();
  // Shard 1 of 3's log is not shard 2 of 3's, nor the whole of one shard.
  for (const char* shard : {"2/3", "0/2"}) {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.path() + "/data";
    options.clock = "manual:2026-02-01T00:00:00Z";
    options.shard = shard;
    EXPECT_THAT(PoledgerServer::Start(options),
                testing::StatusIs(
                    absl::StatusCode::kFailedPrecondition,
                    HasSubstr(absl::StrCat("holds account \"", own_, "\""))))
        << shard;
  }
  // A bad --shard is a bad option.
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = dir_.path() + "/data";
  options.shard = "3/3";
  EXPECT_THAT(PoledgerServer::Start(options),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("--shard: must be I/N")));
  // Trusting a proxy needs client certificates to tell it from anyone.
  options.shard = "";
  options.trusted_proxy_identities = {"spiffe://poledger.test/haproxy"};
  EXPECT_THAT(
      PoledgerServer::Start(options),
      testing::StatusIs(absl::StatusCode::kInvalidArgument,
                        HasSubstr("--trusted-proxy-identity needs TLS")));
  // Its own shard, and no shards at all, serve it.
  Start("1/3");
  Start("");
  EXPECT_EQ(head(), 1u);
}

}  // namespace
}  // namespace poledger
