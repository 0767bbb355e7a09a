// poctl run as a process against an in-process server on 127.0.0.1.
#include <stdio.h>
#include <sys/wait.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "poledger/v1/invoices.pb.h"
#include "poledger/v1/log.pb.h"
#include "poledger/v1/purchase_orders.pb.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/command.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

using Result = ::poledger::testing::CommandResult;

class PoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.path() + "/data";
    options.clock = "manual:2026-02-01T00:00:00Z";
    auto server = PoledgerServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
  }

  // Runs poctl; Result::out holds its stdout and stderr together.
  Result Run(const std::string& args, std::string server = "") {
    if (server.empty()) server = absl::StrCat("127.0.0.1:", server_->port());
    return ::poledger::testing::RunCommand(
        absl::StrCat(POLEDGER_POCTL_BINARY, " --server=", server,
                     " --account=123456789012 ", args, " 2>&1"));
  }

  void CreatePo(const std::string& id) {
    Result r = Run("po create --id " + id +
                   " --bill-from 'Amazon Web Services, Inc.' --effective 2026-01"
                   " --expiration 2026-12 --contact 'Finance <fin@example.com>'");
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }

  TempDir dir_;
  std::unique_ptr<PoledgerServer> server_;
};

TEST_F(PoctlTest, CreateListStatusAndLines) {
  CreatePo("PO-1");
  Result line = Run("po line add PO-1 --line 1 --type monthly-usage --start 2026-01"
                    " --end 2026-12 --amount 1000.50 --quantity 2 --tax-rate 10");
  ASSERT_EQ(line.exit_code, 0) << line.out;
  EXPECT_THAT(line.out, HasSubstr("2201.10 USD"));
  Result list = Run("po list");
  ASSERT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.out, HasSubstr("ID    STATUS  MONTHS"));
  EXPECT_THAT(list.out, HasSubstr("PO-1  ACTIVE  2026-01..2026-12  2201.10 USD"));
  Result suspended = Run("po suspend PO-1");
  ASSERT_EQ(suspended.exit_code, 0);
  EXPECT_THAT(suspended.out, HasSubstr("SUSPENDED"));
  Result active = Run("po list --status suspended");
  EXPECT_THAT(active.out, HasSubstr("PO-1"));
  ASSERT_EQ(Run("po activate PO-1").exit_code, 0);
  Result update = Run("po update --id PO-1 --description 'Cloud 2026'");
  ASSERT_EQ(update.exit_code, 0) << update.out;
  EXPECT_THAT(update.out, HasSubstr("Cloud 2026"));
  ASSERT_EQ(Run("po line update PO-1 --line 1 --amount 10 --quantity 1").exit_code, 0);
  ASSERT_EQ(Run("po line remove PO-1 --line 1").exit_code, 0);
  ASSERT_EQ(Run("po delete PO-1").exit_code, 0);
  EXPECT_EQ(Run("po get PO-1").exit_code, 4);
}

// README "Personal data": an operator erases a person by address.
TEST_F(PoctlTest, AdminEraseErasesAContactByAddress) {
  CreatePo("PO-1");
  EXPECT_THAT(Run("po get PO-1").out, HasSubstr("fin@example.com"));
  Result erased = Run("admin erase FIN@example.com --reference DSR-1");
  ASSERT_EQ(erased.exit_code, 0) << erased.out;
  EXPECT_THAT(erased.out, HasSubstr("123456789012  erased at position 2"));
  Result got = Run("po get PO-1");
  EXPECT_THAT(got.out, HasSubstr("[erased]"));
  EXPECT_THAT(got.out, Not(HasSubstr("fin@example.com")));
  EXPECT_THAT(Run("admin erase fin@example.com").out,
              HasSubstr("123456789012  erased before"));
  Result unknown = Run("admin erase nobody@example.com");
  EXPECT_EQ(unknown.exit_code, 4) << unknown.out;
  EXPECT_THAT(unknown.out, HasSubstr("SUBJECT_NOT_FOUND"));
}

TEST_F(PoctlTest, InvoiceWithExplanationAndJsonOutput) {
  CreatePo("PO-1");
  ASSERT_EQ(Run("po line add PO-1 --line 1 --type all --start 2026-01 --end 2026-12"
                " --amount 1000").exit_code,
            0);
  Result table = Run("invoice record --id INV-1 --bill-from 'Amazon Web Services, Inc.'"
                     " --category monthly-usage --period 2026-03 --amount 250");
  ASSERT_EQ(table.exit_code, 0) << table.out;
  EXPECT_THAT(table.out, HasSubstr("purchase order      PO-1"));
  EXPECT_THAT(table.out,
              HasSubstr("purchase orders: 1 SELECTED; fitting lines: 1"
                        " (--full lists each)"));
  Result full = Run("invoice get INV-1 --full");
  ASSERT_EQ(full.exit_code, 0) << full.out;
  EXPECT_THAT(full.out, HasSubstr("PO-1            SELECTED  1:SELECTED"));
  Result json = Run("-o json invoice get INV-1");
  ASSERT_EQ(json.exit_code, 0);
  v1::Invoice inv;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &inv).ok())
      << json.out;
  EXPECT_EQ(inv.association().purchase_order_id(), "PO-1");
  EXPECT_EQ(inv.association().line_balance_after().units(), 750);
  Result po_json = Run("-o json po get PO-1");
  v1::PurchaseOrder po;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(po_json.out, &po).ok());
  EXPECT_EQ(po.balance().units(), 750);
  Result events = Run("-o json events read");
  std::vector<std::string> lines = absl::StrSplit(events.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  v1::Event last;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[2], &last).ok());
  EXPECT_EQ(last.event_type(), "invoice_recorded");
}

TEST_F(PoctlTest, ImportsABillingRunFromCsvAndJsonLines) {
  CreatePo("PO-1");
  ASSERT_EQ(
      Run("po line add PO-1 --line 1 --type all --start 2026-01 --end 2026-12"
          " --amount 1000")
          .exit_code,
      0);
  auto head = [&] { return server_->ledger()->store()->Head().position; };
  const std::string csv = dir_.path() + "/run.csv";
  std::ofstream(csv)
      << "invoice_id,bill_from,category,billing_period,amount,currency\r\n"
         "INV-1,\"Amazon Web Services, Inc.\",monthly-usage,2026-03,100,USD\n"
         "INV-2,\"Amazon Web Services, "
         "Inc.\",monthly-usage,2026-03,700.50,USD\n"
         "INV-3,\"Someone \"\"Else\"\"\",monthly-usage,2026-03,5,USD\n"
         "INV-4,\"Amazon Web Services, Inc.\",monthly-usage,2026-03,-1,USD\n";
  // A preview decides every item and records nothing.
  const uint64_t before = head();
  Result dry = Run("invoice import --dry-run " + csv);
  EXPECT_EQ(dry.exit_code, 9) << dry.out;  // INV-4 is refused.
  EXPECT_THAT(dry.out, ContainsRegex("would be recorded +3"));
  EXPECT_EQ(head(), before);
  Result run = Run("invoice import " + csv);
  EXPECT_EQ(run.exit_code, 9) << run.out;
  EXPECT_THAT(run.out,
              HasSubstr("line 5: INVALID_FIELD: requests[3].invoice.amount: "
                        "must be positive"));
  EXPECT_THAT(run.out, ContainsRegex("\nrecorded +3\n"));
  EXPECT_THAT(run.out, ContainsRegex("already recorded +0"));
  EXPECT_THAT(run.out, ContainsRegex("refused +1\n  INVALID_FIELD +1"));
  EXPECT_THAT(
      run.out,
      ContainsRegex("unassociated +1\n  NO_CANDIDATE +1"));  // INV-3's seller.
  const uint64_t after = head();
  EXPECT_GT(after, before);
  // Run again: nothing new.
  Result again = Run("invoice import " + csv);
  EXPECT_THAT(again.out, ContainsRegex("already recorded +3"));
  EXPECT_EQ(head(), after);
  // JSON lines, each with its own account or --account's; batches of 1.
  const std::string jsonl = dir_.path() + "/run.jsonl";
  std::ofstream(jsonl)
      << R"({"invoice_id": "INV-5", "bill_from": "Amazon Web Services, Inc.", )"
         R"("category": "INVOICE_CATEGORY_MONTHLY_USAGE", "billing_period": "2026-03", )"
         R"("amount": {"currency_code": "USD", "units": "10"}})"
      << "\n\n"
      << R"({"account_id": "999988887777", "invoice_id": "INV-1", )"
         R"("bill_from": "Amazon Web Services, Inc.", "category": "INVOICE_CATEGORY_MONTHLY_USAGE", )"
         R"("billing_period": "2026-03", "amount": {"currency_code": "USD", "units": "10"}})"
      << "\n";
  Result json = Run("invoice import --batch-size 1 " + jsonl);
  EXPECT_EQ(json.exit_code, 0) << json.out;
  EXPECT_THAT(json.out, ContainsRegex("^recorded +2\n"));
  auto found = server_->ledger()->FindInvoice("999988887777", "INV-1");
  ASSERT_OK(found);
  EXPECT_TRUE(found->has_value());
  // A line that does not parse stops the import before anything is sent.
  const std::string bad = dir_.path() + "/bad.csv";
  std::ofstream(bad) << "invoice_id,amount,colour\nINV-9,1,red\n";
  const uint64_t last = head();
  Result refused = Run("invoice import " + bad);
  EXPECT_EQ(refused.exit_code, 2) << refused.out;
  EXPECT_THAT(refused.out, HasSubstr("line 2: unknown column 'colour'"));
  EXPECT_EQ(head(), last);
}

TEST_F(PoctlTest, RecordDryRunShowsWhereAnInvoiceWouldGo) {
  CreatePo("PO-1");
  ASSERT_EQ(
      Run("po line add PO-1 --line 1 --type all --start 2026-01 --end 2026-12"
          " --amount 1000")
          .exit_code,
      0);
  const uint64_t before = server_->ledger()->store()->Head().position;
  Result r =
      Run("invoice record --dry-run --id INV-1 --bill-from 'Amazon Web "
          "Services, Inc.'"
          " --category monthly-usage --period 2026-03 --amount 900");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("purchase order      PO-1"));
  EXPECT_THAT(r.out, HasSubstr("(preview: not recorded)"));
  EXPECT_THAT(r.out, HasSubstr("raises: BALANCE_THRESHOLD (line 1 past 75%"));
  EXPECT_EQ(server_->ledger()->store()->Head().position, before);
  EXPECT_EQ(Run("invoice get INV-1").exit_code, 4);
}

TEST_F(PoctlTest, CreateFromAJsonFile) {
  const std::string path = dir_.path() + "/po.json";
  std::ofstream(path) << R"({"purchase_order_id": "PO-J",
    "bill_from": ["Amazon Web Services, Inc."], "currency_code": "USD",
    "effective_month": "2026-01", "expiration_month": "2026-06",
    "line_items": [{"line_number": 1, "type": "LINE_ITEM_TYPE_ALL",
      "start_month": "2026-01", "end_month": "2026-06",
      "amount": {"units": "500"}, "quantity": "1"}]})";
  Result r = Run("po create -f " + path);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("500.00 USD"));
}

TEST_F(PoctlTest, ErrorsGiveOneLineAndAnExitCodePerClass) {
  CreatePo("PO-1");
  Result bad = Run("po create --id 'bad!' --bill-from x --effective 2026-01"
                   " --expiration 2026-12");
  EXPECT_EQ(bad.exit_code, 3);
  EXPECT_THAT(bad.out, HasSubstr("error: INVALID_ARGUMENT [INVALID_FIELD] "
                                 "field=purchase_order.purchase_order_id: "));
  Result dup = Run("po create --id PO-1 --bill-from x --effective 2026-01"
                   " --expiration 2026-12");
  EXPECT_EQ(dup.exit_code, 5);
  EXPECT_THAT(dup.out, HasSubstr("[PURCHASE_ORDER_ALREADY_EXISTS]"));
  Result stale = Run("po suspend PO-1 --expected-version 99");
  EXPECT_EQ(stale.exit_code, 6);
  EXPECT_THAT(stale.out, HasSubstr("[WRONG_EXPECTED_VERSION]"));
  EXPECT_EQ(Run("po get nope").exit_code, 4);
  EXPECT_EQ(Run("po frobnicate").exit_code, 2);
  Result down = Run("--timeout 2 po list", "127.0.0.1:1");
  EXPECT_EQ(down.exit_code, 7);
}

}  // namespace
}  // namespace poledger
