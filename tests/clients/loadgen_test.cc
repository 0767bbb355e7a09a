// poledger-loadgen run as a process against an in-process server on
// 127.0.0.1: it measures every method at every concurrency without errors
// (request ids never repeat across its alternating windows) and reports the
// same-run ratios.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/ledger.h"
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
  const testing::CommandResult r =
      Run("--seconds=0.4 --rounds=2 --concurrency=1,8 --accounts=3");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  int rows = 0;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    std::vector<absl::string_view> f =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());
    const bool method_row = absl::StartsWith(f.empty() ? "" : f[0], "Get") ||
                            absl::StartsWith(f.empty() ? "" : f[0], "Record") ||
                            absl::StartsWith(f.empty() ? "" : f[0], "Create");
    if (f.size() != 6 || !method_row) continue;
    ++rows;
    double rate = 0;
    ASSERT_TRUE(absl::SimpleAtod(f[2], &rate)) << line;
    EXPECT_GT(rate, 0) << line;
    EXPECT_EQ(f[5], "0") << "errors in: " << line << "\n" << r.out;
  }
  EXPECT_EQ(rows, 8) << r.out;  // 4 methods x 2 concurrencies.
  EXPECT_THAT(r.out, HasSubstr("ratio at 8 to GetServerInfo: RecordInvoice "));
  EXPECT_THAT(r.out, HasSubstr("ratio at 8 to GetPurchaseOrder: RecordInvoice "));
  // The writes were durable: the log holds them.
  EXPECT_GT(server_->ledger()->store()->Head().position, 3u) << r.out;
}

TEST_F(LoadgenTest, RefusesAnUnknownMethod) {
  const testing::CommandResult r = Run("--methods=info,bogus");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("bogus"));
}

}  // namespace
}  // namespace poledger
