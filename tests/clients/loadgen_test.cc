// poledger-loadgen run as a process against an in-process server on
// 127.0.0.1: it measures every method at every concurrency without errors
// (request ids never repeat across its alternating windows) and reports the
// same-run ratios.
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/command.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::testing::HasSubstr;

class LoadgenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.path() + "/data";
    auto server = PoledgerServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
  }

  testing::CommandResult Run(const std::string& args) {
    return testing::RunCommand(absl::StrCat(
        POLEDGER_LOADGEN_BINARY, " --server=127.0.0.1:", server_->port(), " ",
        args, " 2>&1"));
  }

  TempDir dir_;
  std::unique_ptr<PoledgerServer> server_;
};

TEST_F(LoadgenTest, MeasuresEveryMethodAndConcurrencyWithoutErrors) {
  // The server runs in this process: its CPU time is this process's.
  const testing::CommandResult r =
      Run(absl::StrCat("--seconds=0.5 --rounds=2 --concurrency=1,8 "
                       "--accounts=3 --server-pid=",
                       getpid()));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::vector<std::string> methods;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    std::vector<absl::string_view> f =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());
    const bool method_row = absl::StartsWith(f.empty() ? "" : f[0], "Get") ||
                            absl::StartsWith(f.empty() ? "" : f[0], "Record") ||
                            absl::StartsWith(f.empty() ? "" : f[0], "Create");
    if (!method_row) continue;
    ASSERT_EQ(f.size(), 9u) << line;
    methods.push_back(absl::StrCat(f[0], "@", f[1]));
    double rate = 0, client_cpu = 0, server_cpu = 0;
    ASSERT_TRUE(absl::SimpleAtod(f[2], &rate)) << line;
    EXPECT_GT(rate, 0) << line;
    EXPECT_EQ(f[5], "0") << "errors in: " << line << "\n" << r.out;
    // CPU per request: positive, and far below a second.
    ASSERT_TRUE(absl::SimpleAtod(f[6], &client_cpu)) << line;
    ASSERT_TRUE(absl::SimpleAtod(f[7], &server_cpu)) << line;
    EXPECT_GT(client_cpu, 0) << line;
    EXPECT_LT(client_cpu, 1e6) << line;
    EXPECT_GT(server_cpu, 0) << line;
    EXPECT_LT(server_cpu, 1e6) << line;
    // Every method here answers with a message of some bytes.
    double answer = 0;
    ASSERT_TRUE(absl::SimpleAtod(f[8], &answer)) << line;
    EXPECT_GT(answer, 0) << line;
  }
  EXPECT_THAT(methods,
              ::testing::ElementsAre(
                  "GetServerInfo@1", "GetPurchaseOrder@1", "GetInvoice@1",
                  "RecordInvoice@1", "CreatePurchaseOrder@1", "GetServerInfo@8",
                  "GetPurchaseOrder@8", "GetInvoice@8", "RecordInvoice@8",
                  "CreatePurchaseOrder@8"))
      << r.out;
  EXPECT_THAT(r.out, HasSubstr("ratio at 8 to GetServerInfo: RecordInvoice "));
  EXPECT_THAT(r.out, HasSubstr(" CreatePurchaseOrder "));
  EXPECT_THAT(r.out, HasSubstr("ratio at 8 to GetInvoice: RecordInvoice "));
  EXPECT_THAT(r.out,
              HasSubstr("ratio at 8 to GetPurchaseOrder: CreatePurchaseOrder "));
  // The writes were durable: the log holds them.
  EXPECT_GT(server_->ledger()->store()->Head().position, 3u) << r.out;
}

TEST_F(LoadgenTest, WithoutAServerPidReportsOnlyItsOwnCpu) {
  const testing::CommandResult r =
      Run("--methods=info --seconds=0.2 --rounds=1 --concurrency=2 --accounts=1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  bool seen = false;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    std::vector<absl::string_view> f =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.empty() || f[0] != "GetServerInfo") continue;
    seen = true;
    ASSERT_EQ(f.size(), 9u) << line;
    double client_cpu = 0;
    EXPECT_TRUE(absl::SimpleAtod(f[6], &client_cpu)) << line;
    EXPECT_EQ(f[7], "-") << line;
  }
  EXPECT_TRUE(seen) << r.out;
  // Only what was measured gets a ratio.
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("ratio")));
}

// --account-size=full sets each account up at the domain's limits, 100
// purchase orders of 100 lines, and measures against it.
TEST_F(LoadgenTest, AFullAccountHasOneHundredPurchaseOrdersOfOneHundredLines) {
  const testing::CommandResult r =
      Run("--account-size=full --methods=get,invoice --seconds=0.3 "
          "--rounds=1 --concurrency=1 --accounts=1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("RecordInvoice +1 "));
  const std::vector<std::string> accounts = server_->ledger()->AccountIds();
  ASSERT_EQ(accounts.size(), 1u);
  size_t purchase_orders = 0, lines = 0;
  ASSERT_OK(
      server_->ledger()->Read(accounts[0], [&](const core::AccountState& s) {
        purchase_orders = s.purchase_orders.size();
        for (const auto& [id, po] : s.purchase_orders) lines += po.lines.size();
      }));
  EXPECT_EQ(purchase_orders, 100u);
  EXPECT_EQ(lines, 100u * 100u);
}

TEST_F(LoadgenTest, RefusesAnUnknownMethod) {
  const testing::CommandResult r = Run("--methods=info,bogus");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("bogus"));
}

}  // namespace
}  // namespace poledger
