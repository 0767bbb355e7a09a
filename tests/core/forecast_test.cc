// The spend forecast: burn rate over the last three billing months with
// invoices, and the month the balance runs out at that rate.
#include "core/forecast.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/core_test_util.h"

namespace poledger {
namespace core {
namespace {

using namespace ::poledger::core::testing;  // NOLINT
using Outlook = SpendForecast::Outlook;

YearMonth M(const std::string& text) {
  absl::StatusOr<YearMonth> m = YearMonth::Parse(text, "month");
  EXPECT_TRUE(m.ok()) << text;
  return m.value_or(YearMonth());
}

TEST(ForecastTest, Table) {
  struct Case {
    const char* name;
    std::vector<std::pair<const char*, int64_t>> months;  // micros
    int64_t balance;
    const char* term_end;
    Outlook outlook;
    int64_t rate;
    int averaged;
    const char* runs_out;  // kRunsOut only.
  };
  const std::vector<Case> cases = {
      {"nothing invoiced", {}, 1000, "2026-12", Outlook::kNoSpend, 0, 0, ""},
      {"one month",
       {{"2026-03", 300}},
       900,
       "2026-12",
       Outlook::kRunsOut,
       300,
       1,
       "2026-06"},
      {"three months, a partial last month rounds up",
       {{"2026-01", 100}, {"2026-02", 200}, {"2026-03", 300}},
       500,
       "2026-12",
       Outlook::kRunsOut,
       200,
       3,
       "2026-06"},
      {"only the last three months count",
       {{"2026-01", 1000},
        {"2026-02", 100},
        {"2026-03", 200},
        {"2026-04", 300}},
       400,
       "2026-12",
       Outlook::kRunsOut,
       200,
       3,
       "2026-06"},
      {"months without invoices are skipped",
       {{"2026-01", 100}, {"2026-05", 200}, {"2026-09", 300}},
       400,
       "2026-12",
       Outlook::kRunsOut,
       200,
       3,
       "2026-11"},
      {"running out in the last month of the term is within it",
       {{"2026-10", 100}},
       200,
       "2026-12",
       Outlook::kRunsOut,
       100,
       1,
       "2026-12"},
      {"one month past the term lasts it",
       {{"2026-10", 100}},
       201,
       "2026-12",
       Outlook::kLastsTheTerm,
       100,
       1,
       ""},
      {"a balance of a thousand years",
       {{"2026-10", 1}},
       INT64_MAX,
       "9999-12",
       Outlook::kLastsTheTerm,
       1,
       1,
       ""},
      {"a balance at zero ran out in the last month",
       {{"2026-02", 500}, {"2026-03", 500}},
       0,
       "2026-12",
       Outlook::kRunsOut,
       500,
       2,
       "2026-03"},
      {"an overrun ran out in the last month",
       {{"2026-04", 700}},
       -200,
       "2026-12",
       Outlook::kRunsOut,
       700,
       1,
       "2026-04"},
      {"the rate rounds down to the micro",
       {{"2026-01", 100}, {"2026-02", 100}, {"2026-03", 101}},
       300,
       "2026-12",
       Outlook::kRunsOut,
       100,
       3,
       "2026-06"},
      {"all credited back: no rate",
       {{"2026-01", 100}, {"2026-02", -100}},
       1000,
       "2026-12",
       Outlook::kNoSpend,
       0,
       2,
       ""},
      {"less than a micro a month: no rate",
       {{"2026-01", 1}, {"2026-02", 1}, {"2026-03", -1}},
       1000,
       "2026-12",
       Outlook::kNoSpend,
       0,
       3,
       ""},
  };
  for (const Case& c : cases) {
    std::map<YearMonth, int64_t> by_month;
    for (const auto& [month, micros] : c.months) by_month[M(month)] = micros;
    const SpendForecast f = Forecast(by_month, c.balance, M(c.term_end));
    EXPECT_EQ(f.outlook, c.outlook) << c.name;
    EXPECT_EQ(f.burn_rate, c.rate) << c.name;
    EXPECT_EQ(f.months_averaged, c.averaged) << c.name;
    if (c.outlook == Outlook::kRunsOut) {
      EXPECT_EQ(f.runs_out.ToString(), c.runs_out) << c.name;
    }
  }
}

// Through Decide and Apply: invoices and credit memos by billing period,
// the line's end month and the purchase order's expiration month as terms,
// untracked lines left out, and the months kept in a snapshot.
TEST(ForecastTest, FollowsTheAccountsInvoicesAndSnapshots) {
  Account account;
  account.Must(
      Create("po", {Line(1, v1::LINE_ITEM_TYPE_AWS_MONTHLY_USAGE, 1000,
                         "2026-01", "2026-07"),
                    Line(2, v1::LINE_ITEM_TYPE_ALL, 500, "2026-01", "2026-12",
                         /*tracking=*/false)}));
  EXPECT_FALSE(ForecastLine(account.po("po").lines.at(2)).has_value());
  std::optional<SpendForecast> line =
      ForecastLine(account.po("po").lines.at(1));
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(line->outlook, Outlook::kNoSpend);

  account.Must(
      Invoice("jan", 100, v1::INVOICE_CATEGORY_MONTHLY_USAGE, "2026-01"));
  account.Must(
      Invoice("feb", 150, v1::INVOICE_CATEGORY_MONTHLY_USAGE, "2026-02"));
  account.Must(
      Invoice("mar", 250, v1::INVOICE_CATEGORY_MONTHLY_USAGE, "2026-03"));
  // 500 of 1000 spent at 166.666666 a month: 4 more months, July.
  line = ForecastLine(account.po("po").lines.at(1));
  EXPECT_EQ(line->burn_rate, Units(500) / 3);
  EXPECT_EQ(line->outlook, Outlook::kRunsOut);
  EXPECT_EQ(line->runs_out.ToString(), "2026-07");
  // The whole purchase order: the tracked line only, to the expiration.
  std::optional<SpendForecast> po = ForecastPurchaseOrder(account.po("po"));
  ASSERT_TRUE(po.has_value());
  EXPECT_EQ(po->runs_out.ToString(), "2026-07");

  // A credit memo counts in its own billing period (the test helper bills
  // it in 2026-03): March nets 150, the rate falls to 133.333333, and the
  // balance of 600 lasts 5 months: August, past the line's July.
  account.Must(CreditMemo("cm", "mar", 100));
  line = ForecastLine(account.po("po").lines.at(1));
  EXPECT_EQ(line->burn_rate, Units(400) / 3);
  EXPECT_EQ(line->outlook, Outlook::kLastsTheTerm);
  // For the purchase order the term ends in December: August.
  po = ForecastPurchaseOrder(account.po("po"));
  EXPECT_EQ(po->outlook, Outlook::kRunsOut);
  EXPECT_EQ(po->runs_out.ToString(), "2026-08");

  // A snapshot keeps the months.
  absl::StatusOr<AccountState> restored =
      FromSnapshot(ToSnapshot(account.state()));
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->purchase_orders.at("po").lines.at(1).invoiced_by_month,
            account.po("po").lines.at(1).invoiced_by_month);
  EXPECT_EQ(account.po("po").lines.at(1).invoiced_by_month.size(), 3u);

  // A month credited to zero leaves the map.
  account.Must(CreditMemo("cm-2", "mar", 150));
  EXPECT_EQ(account.po("po").lines.at(1).invoiced_by_month.count(M("2026-03")),
            0u);
}

}  // namespace
}  // namespace core
}  // namespace poledger
