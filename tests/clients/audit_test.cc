// poledger-audit, run as a process against a live server's data directory
// and against a tampered one.
#include <stdio.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/log.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "poledger/v1/snapshot.pb.h"
#include "rocksdb/db.h"
#include "eventstore/record_format.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/command.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::testing::HasSubstr;

using ToolResult = ::poledger::testing::CommandResult;

ToolResult RunAudit(const std::string& args) {
  return ::poledger::testing::RunCommand(
      absl::StrCat(POLEDGER_AUDIT_BINARY, " ", args, " 2>/dev/null"));
}

class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = DataDir();
    options.clock = "manual:2026-02-01T00:00:00Z";
    auto server = PoledgerServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                       grpc::InsecureChannelCredentials());
    pos_ = v1::PurchaseOrderService::NewStub(channel);
    invoices_ = v1::InvoiceService::NewStub(channel);
    log_ = v1::EventLogService::NewStub(channel);
    Populate();
  }

  std::string DataDir() const { return dir_.path() + "/data"; }

  void Populate() {
    grpc::ClientContext ctx;
    v1::CreatePurchaseOrderRequest create;
    create.set_account_id("acct-1");
    v1::PurchaseOrder* po = create.mutable_purchase_order();
    po->set_purchase_order_id("PO-1");
    po->add_bill_from("Amazon Web Services, Inc.");
    po->set_currency_code("USD");
    po->set_effective_month("2026-01");
    po->set_expiration_month("2026-12");
    po->add_contacts()->set_email("finance@example.com");
    v1::LineItem* line = po->add_line_items();
    line->set_line_number(1);
    line->set_type(v1::LINE_ITEM_TYPE_ALL);
    line->set_start_month("2026-01");
    line->set_end_month("2026-12");
    line->set_balance_tracking(true);
    line->mutable_amount()->set_units(1000);
    line->set_quantity(1);
    v1::PurchaseOrder out;
    ASSERT_TRUE(pos_->CreatePurchaseOrder(&ctx, create, &out).ok());
    for (int i = 1; i <= 3; ++i) {
      grpc::ClientContext ictx;
      v1::RecordInvoiceRequest req;
      req.set_account_id("acct-1");
      v1::Invoice* inv = req.mutable_invoice();
      inv->set_invoice_id(absl::StrCat("inv-", i));
      inv->set_bill_from("Amazon Web Services, Inc.");
      inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
      inv->set_billing_period("2026-02");
      inv->mutable_amount()->set_currency_code("USD");
      inv->mutable_amount()->set_units(100 * i);
      v1::Invoice recorded;
      ASSERT_TRUE(invoices_->RecordInvoice(&ictx, req, &recorded).ok());
      if (i == 1) middle_ = recorded.position();
    }
  }

  TempDir dir_;
  std::unique_ptr<PoledgerServer> server_;
  std::unique_ptr<v1::PurchaseOrderService::Stub> pos_;
  std::unique_ptr<v1::InvoiceService::Stub> invoices_;
  std::unique_ptr<v1::EventLogService::Stub> log_;
  uint64_t middle_ = 0;
};

TEST_F(AuditTest, VerifyOnALiveLogPrintsTheServersDigest) {
  grpc::ClientContext ctx;
  v1::GetLogDigestResponse digest;
  ASSERT_TRUE(log_->GetLogDigest(&ctx, v1::GetLogDigestRequest(), &digest).ok());
  const ToolResult r = RunAudit("verify --data-dir=" + DataDir());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("head: ", digest.head_position())));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("digest: ", digest.chain_hash())));
  EXPECT_THAT(r.out, HasSubstr("OK"));
}

TEST_F(AuditTest, ReplayAtAPositionEqualsGetPurchaseOrderAt) {
  grpc::ClientContext ctx;
  v1::GetPurchaseOrderAtRequest req;
  req.set_account_id("acct-1");
  req.set_purchase_order_id("PO-1");
  req.set_position(middle_);
  v1::GetPurchaseOrderAtResponse server_view;
  ASSERT_TRUE(log_->GetPurchaseOrderAt(&ctx, req, &server_view).ok());
  // The contacts opened with the server's key (the test's environment's),
  // given as a file.
  const std::string key_file = DataDir() + "-data.key";
  {
    std::ofstream key(key_file);
    key << std::getenv("POLEDGER_DATA_KEY") << "\n";
  }
  const ToolResult r = RunAudit(absl::StrCat(
      "replay --data-dir=", DataDir(), " --data-key-file=", key_file,
      " --account=acct-1 --po=PO-1 --position=", middle_));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  v1::PurchaseOrder replayed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &replayed).ok())
      << r.out;
  EXPECT_EQ(replayed.SerializeAsString(),
            server_view.purchase_order().SerializeAsString());
  EXPECT_EQ(replayed.balance().units(), 900);
  EXPECT_EQ(RunAudit(absl::StrCat("replay --data-dir=", DataDir(),
                                  " --account=acct-1 --po=PO-9 --position=1"))
                .exit_code,
            3);
}

TEST_F(AuditTest, ReplayAtATimeAndExportARange) {
  // Everything happened at the manual clock's 2026-02-01: before it the PO
  // did not exist, at it the PO has every invoice.
  EXPECT_EQ(RunAudit("replay --data-dir=" + DataDir() +
                     " --account=acct-1 --po=PO-1 --time=2026-01-31T23:59:59Z")
                .exit_code,
            3);
  const ToolResult at = RunAudit("replay --data-dir=" + DataDir() +
                                 " --account=acct-1 --po=PO-1 "
                                 "--time=2026-02-01T00:00:00Z");
  ASSERT_EQ(at.exit_code, 0) << at.out;
  v1::PurchaseOrder po;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(at.out, &po).ok());
  EXPECT_EQ(po.balance().units(), 400);
  const ToolResult range = RunAudit("export --data-dir=" + DataDir() +
                                    " --from=2 --to=3");
  std::vector<std::string> lines = absl::StrSplit(range.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  v1::Event first;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[0], &first).ok());
  EXPECT_EQ(first.position(), 2u);
  EXPECT_EQ(RunAudit("export --data-dir=" + DataDir() + " --account=other").out, "");
}

TEST_F(AuditTest, ExportRoundTripsEveryEvent) {
  const ToolResult r = RunAudit("export --data-dir=" + DataDir());
  ASSERT_EQ(r.exit_code, 0);
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  grpc::ClientContext ctx;
  v1::ReadEventsRequest req;
  req.set_page_size(1000);
  v1::ReadEventsResponse all;
  ASSERT_TRUE(log_->ReadEvents(&ctx, req, &all).ok());
  ASSERT_EQ(lines.size(), static_cast<size_t>(all.events_size()));
  for (size_t i = 0; i < lines.size(); ++i) {
    v1::Event e;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[i], &e).ok());
    EXPECT_EQ(e.SerializeAsString(), all.events(i).SerializeAsString()) << i;
  }
  const ToolResult invoices = RunAudit("export --data-dir=" + DataDir() +
                                       " --type=invoice_recorded --po=PO-1");
  EXPECT_EQ(std::count(invoices.out.begin(), invoices.out.end(), '\n'), 3);
}

TEST_F(AuditTest, HistoryShowsChangesAndBalances) {
  const ToolResult r = RunAudit("history --data-dir=" + DataDir() +
                                " --account=acct-1 --po=PO-1");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("created, 1 line items, 1 contacts, 2026-01..2026-12"));
  EXPECT_THAT(r.out, HasSubstr("invoice inv-2 200.00 USD -> line 1; line balance "
                               "700.00 USD, PO balance 700.00 USD"));
  EXPECT_THAT(r.out, HasSubstr("NOTIFICATION_KIND_BALANCE_THRESHOLD"));
}

TEST_F(AuditTest, VerifyPinpointsAChangedRecord) {
  server_.reset();  // Stop the server to edit its files.
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), DataDir(), &raw).ok());
    std::string value;
    ASSERT_TRUE(raw->Get(rocksdb::ReadOptions(), record_format::LogKey(3), &value).ok());
    value[value.size() - 20] ^= 0x01;
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), record_format::LogKey(3), value).ok());
    delete raw;
  }
  const ToolResult r = RunAudit("verify --data-dir=" + DataDir());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("head: 2"));
  EXPECT_THAT(r.out, HasSubstr("BROKEN at position 3"));
}

TEST_F(AuditTest, OnlineThroughTheServerGivesTheOfflineAnswers) {
  const std::string server = absl::StrCat("--server=127.0.0.1:", server_->port());
  const std::string dir = "--data-dir=" + DataDir();
  const ToolResult online = RunAudit("verify " + server);
  EXPECT_EQ(online.exit_code, 0) << online.out;
  EXPECT_EQ(online.out, RunAudit("verify " + dir).out);
  EXPECT_EQ(RunAudit("export " + server).out, RunAudit("export " + dir).out);
  const std::string replay =
      absl::StrCat(" --account=acct-1 --po=PO-1 --position=", middle_);
  const ToolResult r = RunAudit("replay " + server + replay);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, RunAudit("replay " + dir + replay).out);
  EXPECT_EQ(RunAudit("history " + server + " --account=acct-1 --po=PO-1").out,
            RunAudit("history " + dir + " --account=acct-1 --po=PO-1").out);
  EXPECT_EQ(RunAudit("verify " + server + " " + dir).exit_code, 2);
}

TEST_F(AuditTest, VerifyExpectFailsWhenThePinnedDigestIsGone) {
  grpc::ClientContext ctx;
  v1::GetLogDigestResponse pinned;
  ASSERT_TRUE(log_->GetLogDigest(&ctx, v1::GetLogDigestRequest(), &pinned).ok());
  const std::string pin =
      absl::StrCat(pinned.head_position(), ":", pinned.chain_hash());
  const ToolResult holds = RunAudit("verify --data-dir=" + DataDir() +
                                    " --expect=" + pin);
  EXPECT_EQ(holds.exit_code, 0) << holds.out;
  EXPECT_THAT(holds.out, HasSubstr(absl::StrCat("pinned ", pinned.head_position(),
                                                ": matches")));
  std::string other = pinned.chain_hash();
  other[0] = other[0] == '0' ? '1' : '0';
  const ToolResult differs = RunAudit(absl::StrCat(
      "verify --data-dir=", DataDir(), " --expect=", pinned.head_position(), ":",
      other));
  EXPECT_EQ(differs.exit_code, 1) << differs.out;
  EXPECT_THAT(differs.out, HasSubstr("PINNED DIGEST MISMATCH"));
  EXPECT_THAT(differs.out, HasSubstr("the log was rewritten"));
  const ToolResult beyond = RunAudit(absl::StrCat(
      "verify --data-dir=", DataDir(), " --expect=", pinned.head_position() + 5,
      ":", pinned.chain_hash()));
  EXPECT_EQ(beyond.exit_code, 1);
  EXPECT_THAT(beyond.out, HasSubstr("no longer reaches pinned position"));
  EXPECT_EQ(RunAudit("verify --data-dir=" + DataDir() + " --expect=12").exit_code, 2);
  EXPECT_EQ(RunAudit("verify --data-dir=" + DataDir() + " --expect=x:ab").exit_code, 2);

  // The head removed: the rest of the log is intact, but the pin fails.
  server_.reset();
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), DataDir(), &raw).ok());
    ASSERT_TRUE(raw->Delete(rocksdb::WriteOptions(),
                            record_format::LogKey(pinned.head_position()))
                    .ok());
    delete raw;
  }
  const ToolResult cut = RunAudit("verify --data-dir=" + DataDir() + " --expect=" + pin);
  EXPECT_EQ(cut.exit_code, 1) << cut.out;
  EXPECT_THAT(cut.out, HasSubstr("PINNED DIGEST MISMATCH"));
  // The server's clean stop had moved the verified-through mark to the
  // removed head: the auditor names that too.
  EXPECT_THAT(cut.out, HasSubstr("MARK DIFFERS"));
}

TEST_F(AuditTest, CheckSnapshotComparesTheSnapshotWithTheWholeLog) {
  auto admin = v1::AdminService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::CreateSnapshotResponse snap;
  ASSERT_TRUE(admin->CreateSnapshot(&ctx, v1::CreateSnapshotRequest(), &snap).ok());
  {
    // More after the snapshot: the tail.
    grpc::ClientContext ictx;
    v1::RecordInvoiceRequest req;
    req.set_account_id("acct-1");
    v1::Invoice* inv = req.mutable_invoice();
    inv->set_invoice_id("inv-after");
    inv->set_bill_from("Amazon Web Services, Inc.");
    inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
    inv->set_billing_period("2026-02");
    inv->mutable_amount()->set_currency_code("USD");
    inv->mutable_amount()->set_units(5);
    v1::Invoice recorded;
    ASSERT_TRUE(invoices_->RecordInvoice(&ictx, req, &recorded).ok());
  }
  const ToolResult ok = RunAudit("check-snapshot --data-dir=" + DataDir());
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  EXPECT_THAT(ok.out, HasSubstr("accounts: 1"));
  EXPECT_THAT(ok.out, HasSubstr("OK"));

  // An invoice's part lost while its account's part counts it: the very
  // defect that lost acknowledged invoices.
  server_.reset();
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), DataDir(), &raw).ok());
    ASSERT_TRUE(raw->Delete(rocksdb::WriteOptions(),
                            record_format::SnapshotKey(
                                std::string("acct-1\0inv-2", 12)))
                    .ok());
    // And an entry as an append would save it, for a version never logged.
    v1::InvoiceSnapshot ghost;
    ghost.set_invoice_id("inv-ghost");
    ghost.set_recorded_version(99);
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(),
                         record_format::SnapshotKey(
                             std::string("acct-1\0inv-ghost", 16)),
                         ghost.SerializeAsString())
                    .ok());
    delete raw;
  }
  const ToolResult lost = RunAudit("check-snapshot --data-dir=" + DataDir());
  EXPECT_EQ(lost.exit_code, 1) << lost.out;
  EXPECT_THAT(lost.out, HasSubstr("DIFFERS: account acct-1: the state loaded "
                                  "from the snapshot"));
  EXPECT_THAT(lost.out, HasSubstr("inv-2"));
  EXPECT_THAT(lost.out,
              HasSubstr("invoice inv-ghost of account acct-1 is saved as "
                        "recorded at version 99, which its stream never "
                        "reached"));
}

TEST(AuditUsageTest, MissingDataDirectoryIsNotFound) {
  EXPECT_EQ(RunAudit("verify --data-dir=/nonexistent/poledger").exit_code, 3);
  EXPECT_EQ(RunAudit("frobnicate").exit_code, 2);
}

}  // namespace
}  // namespace poledger
