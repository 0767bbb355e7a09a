// Money and calendar arithmetic.
#include <cstdint>
#include <limits>

#include "core/calendar.h"
#include "core/errors.h"
#include "core/money.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace core {
namespace {

using ::poledger::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

TEST(MoneyTest, CheckedArithmeticRefusesOverflow) {
  EXPECT_EQ(*AddMicros(2, 3, "x"), 5);
  EXPECT_EQ(*SubMicros(2, 3, "x"), -1);
  EXPECT_EQ(*MulMicros(1500000, 3, "x"), 4500000);
  for (auto result : {AddMicros(kMax, 1, "total"), SubMicros(kMin, 1, "total"),
                      MulMicros(kMax / 2 + 1, 2, "total")}) {
    EXPECT_THAT(result, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("total")));
    EXPECT_EQ(ReasonOf(result.status()), "MONEY_OVERFLOW");
  }
}

TEST(MoneyTest, RatesRoundHalfAwayFromZero) {
  EXPECT_EQ(*ApplyRatePpm(1000000, 200000, "tax"), 200000);  // 20% of 1.00
  EXPECT_EQ(*ApplyRatePpm(5, 100000, "tax"), 1);    // 0.5 micro -> 1
  EXPECT_EQ(*ApplyRatePpm(4, 100000, "tax"), 0);    // 0.4 micro -> 0
  EXPECT_EQ(*ApplyRatePpm(-5, 100000, "tax"), -1);  // -0.5 -> -1
  EXPECT_EQ(*ApplyRatePpm(kMax, 1000000, "tax"), kMax);
  EXPECT_THAT(ApplyRatePpm(kMax, 2000000, "tax"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(MoneyTest, UnitsAndNanosConvertExactly) {
  EXPECT_EQ(*MicrosFromUnitsNanos(12, 340000000, "amount"), 12340000);
  EXPECT_EQ(*MicrosFromUnitsNanos(-1, -500000000, "amount"), -1500000);
  EXPECT_EQ(*MicrosFromUnitsNanos(0, -1000, "amount"), -1);
  int64_t units;
  int32_t nanos;
  MicrosToUnitsNanos(-1500000, &units, &nanos);
  EXPECT_EQ(units, -1);
  EXPECT_EQ(nanos, -500000000);
  EXPECT_THAT(MicrosFromUnitsNanos(1, 1, "amount"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("amount: amounts are kept to the micro")));
  EXPECT_THAT(MicrosFromUnitsNanos(1, -1000, "amount"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("same sign")));
  EXPECT_THAT(MicrosFromUnitsNanos(0, 1000000000, "amount"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto overflow = MicrosFromUnitsNanos(kMax / 100, 0, "line_items[0].amount");
  EXPECT_THAT(overflow, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(FieldOf(overflow.status()), "line_items[0].amount");
}

TEST(MoneyTest, FormatsDecimals) {
  EXPECT_EQ(FormatMicros(1234500000, "USD"), "1234.50 USD");
  EXPECT_EQ(FormatMicros(-1, "EUR"), "-0.000001 EUR");
  EXPECT_EQ(FormatMicros(0, ""), "0.00");
  EXPECT_EQ(FormatMicros(kMin, "X"), "-9223372036854.775808 X");
}

TEST(MoneyTest, CurrencyCodes) {
  EXPECT_TRUE(IsCurrencyCode("USD"));
  EXPECT_FALSE(IsCurrencyCode("usd"));
  EXPECT_FALSE(IsCurrencyCode("US"));
  EXPECT_FALSE(IsCurrencyCode("USDX"));
}

TEST(CalendarTest, ParsesOnlyValidMonths) {
  auto m = YearMonth::Parse("2026-02", "effective_month");
  ASSERT_OK(m);
  EXPECT_EQ(m->ToString(), "2026-02");
  EXPECT_EQ(m->LastDay(), absl::CivilDay(2026, 2, 28));
  EXPECT_EQ(YearMonth::Parse("2028-02", "x")->LastDay(),
            absl::CivilDay(2028, 2, 29));
  for (const char* bad : {"2026-13", "2026-00", "2026-1", "26-01", "2026/01",
                          "", "1969-12", "2026-1a", "2026-011"}) {
    auto parsed = YearMonth::Parse(bad, "effective_month");
    EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("effective_month: ")))
        << bad;
    EXPECT_EQ(FieldOf(parsed.status()), "effective_month");
  }
}

TEST(CalendarTest, MonthBoundsAreUtc) {
  const YearMonth m = *YearMonth::Parse("2026-12", "x");
  EXPECT_EQ(m.Start(), absl::FromUnixSeconds(1796083200));  // 2026-12-01
  EXPECT_EQ(m.End(), absl::FromUnixSeconds(1798761600));    // 2027-01-01
  EXPECT_EQ(YearMonth::Containing(m.End() - absl::Seconds(1)), m);
  EXPECT_EQ(m.Plus(11).ToString(), "2027-11");
}

TEST(CalendarTest, AddMonthsClampsToTheLastDay) {
  EXPECT_EQ(AddMonthsClamped(absl::CivilDay(2026, 3, 31), -1),
            absl::CivilDay(2026, 2, 28));
  EXPECT_EQ(AddMonthsClamped(absl::CivilDay(2028, 3, 31), -1),
            absl::CivilDay(2028, 2, 29));
  EXPECT_EQ(AddMonthsClamped(absl::CivilDay(2026, 12, 31), -2),
            absl::CivilDay(2026, 10, 31));
  EXPECT_EQ(AddMonthsClamped(absl::CivilDay(2026, 12, 31), -3),
            absl::CivilDay(2026, 9, 30));
  EXPECT_EQ(AddMonthsClamped(absl::CivilDay(2026, 1, 15), -1),
            absl::CivilDay(2025, 12, 15));
  EXPECT_EQ(FormatDay(absl::CivilDay(2026, 2, 3)), "2026-02-03");
}

}  // namespace
}  // namespace core
}  // namespace poledger
