// Balance alerts, expiration reminders and expiry, driven by time passed in.
#include <string>
#include <vector>

#include "core/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/core_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using namespace ::poledger::core::testing;  // NOLINT

constexpr auto kMonthly = v1::LINE_ITEM_TYPE_AWS_MONTHLY_USAGE;

std::vector<std::string> Labels(const std::vector<v1::ScheduledReminder>& rs) {
  std::vector<std::string> out;
  for (const auto& r : rs) {
    out.push_back(absl::StrCat(r.label(), " @ ",
                               absl::FormatTime("%Y-%m-%d",
                                                FromProtoTime(r.due_time()),
                                                absl::UTCTimeZone())));
  }
  return out;
}

TEST(RemindersTest, ScheduleDependsOnHowFarAwayTheExpirationIs) {
  const YearMonth dec = *YearMonth::Parse("2026-12", "");  // Date: Dec 31.
  // More than three months away: two months before.
  EXPECT_THAT(Labels(PlanReminders(dec, At(2026, 2, 1))),
              ElementsAre("two months before @ 2026-10-31"));
  // Exactly three months away counts as one to three.
  EXPECT_THAT(Labels(PlanReminders(dec, At(2026, 9, 30))),
              ElementsAre("one month before @ 2026-11-30"));
  EXPECT_THAT(Labels(PlanReminders(dec, At(2026, 11, 15))),
              ElementsAre("one month before @ 2026-11-30"));
  // Less than a month: a week before and on the date.
  EXPECT_THAT(Labels(PlanReminders(dec, At(2026, 12, 1))),
              ElementsAre("one week before @ 2026-12-24",
                          "on the expiration date @ 2026-12-31"));
  // Reminders already past are left out.
  EXPECT_THAT(Labels(PlanReminders(dec, At(2026, 12, 28))),
              ElementsAre("on the expiration date @ 2026-12-31"));
  EXPECT_THAT(PlanReminders(dec, At(2027, 1, 1)), IsEmpty());
  // Shorter months clamp: "one month before" Mar 31 is Feb 28.
  EXPECT_THAT(Labels(PlanReminders(*YearMonth::Parse("2026-03", ""),
                                   At(2026, 1, 15))),
              ElementsAre("one month before @ 2026-02-28"));
}

TEST(TickTest, NextDueIsTheEarliestWorkATickWouldDo) {
  Account account;
  EXPECT_EQ(NextDue(account.state()), std::nullopt);
  account.Must(Create("po", {Line(1, kMonthly)}), At(2026, 12, 1));
  // Reminders a week before and on the date; then the expiry.
  EXPECT_EQ(NextDue(account.state()), At(2026, 12, 24));
  account.Must(Tick{}, At(2026, 12, 24));
  EXPECT_EQ(NextDue(account.state()), At(2026, 12, 31));
  account.Must(Tick{}, At(2026, 12, 31));
  EXPECT_EQ(NextDue(account.state()), At(2027, 1, 1));  // The expiry.
  account.Must(Tick{}, At(2027, 1, 1));
  EXPECT_EQ(NextDue(account.state()), std::nullopt);  // Expired: nothing due.
}

TEST(TickTest, RemindersFireOnceAndExpiryAtTheFirstInstantAfterTheDate) {
  Account account;
  account.Must(Create("po", {Line(1, kMonthly)}), At(2026, 12, 1));
  EXPECT_TRUE(account.Must(Tick{}, At(2026, 12, 23, 23, 59, 59)).events.empty());
  Decision week = account.Must(Tick{}, At(2026, 12, 24));
  ASSERT_EQ(week.events.size(), 1u);
  const v1::NotificationRaised& n = week.events[0].notification_raised();
  EXPECT_EQ(n.kind(), v1::NOTIFICATION_KIND_EXPIRATION_REMINDER);
  EXPECT_EQ(n.reminder_label(), "one week before");
  EXPECT_EQ(n.expiration_date(), "2026-12-31");
  ASSERT_EQ(n.recipients_size(), 1);
  EXPECT_EQ(n.recipients(0).email(), "finance@example.com");
  EXPECT_FALSE(n.notification_id().empty());
  // However often it is called, nothing fires twice.
  EXPECT_TRUE(account.Must(Tick{}, At(2026, 12, 24, 1)).events.empty());
  Decision on_date = account.Must(Tick{}, At(2026, 12, 31));
  ASSERT_EQ(on_date.events.size(), 1u);
  EXPECT_EQ(on_date.events[0].notification_raised().reminder_label(),
            "on the expiration date");
  // Still Active at 23:59:59 on the last day.
  EXPECT_TRUE(account.Must(Tick{}, At(2026, 12, 31, 23, 59, 59)).events.empty());
  EXPECT_EQ(account.po("po").status, v1::PURCHASE_ORDER_STATUS_ACTIVE);
  Decision expired = account.Must(Tick{}, At(2027, 1, 1));
  ASSERT_EQ(expired.events.size(), 2u);
  EXPECT_EQ(expired.events[0].purchase_order_expired().to_status(),
            v1::PURCHASE_ORDER_STATUS_EXPIRED);
  EXPECT_EQ(expired.events[1].notification_raised().kind(),
            v1::NOTIFICATION_KIND_EXPIRED);
  EXPECT_EQ(account.po("po").status, v1::PURCHASE_ORDER_STATUS_EXPIRED);
  EXPECT_TRUE(account.Must(Tick{}, At(2027, 6, 1)).events.empty());
}

TEST(TickTest, ALateTickExpiresOnceAndSupersedesPendingReminders) {
  Account account;
  account.Must(Create("po", {}), At(2026, 2, 1));
  account.Must(Create("suspended", {}), At(2026, 2, 1));
  account.Must(ChangePurchaseOrderStatus{"suspended", v1::PURCHASE_ORDER_STATUS_SUSPENDED});
  Decision late = account.Must(Tick{}, At(2027, 3, 1));
  int expiries = 0, notices = 0, reminders = 0;
  for (const auto& e : late.events) {
    expiries += e.has_purchase_order_expired();
    if (e.has_notification_raised()) {
      (e.notification_raised().kind() == v1::NOTIFICATION_KIND_EXPIRED
           ? notices
           : reminders) += 1;
    }
  }
  EXPECT_EQ(expiries, 2);
  EXPECT_EQ(notices, 2);
  EXPECT_EQ(reminders, 0);
  EXPECT_EQ(account.po("suspended").status,
            v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED);
  EXPECT_TRUE(account.Must(Tick{}, At(2027, 3, 2)).events.empty());
}

TEST(TickTest, ChangingTheExpirationReschedulesReminders) {
  Account account;
  account.Must(Create("po", {}), At(2026, 2, 1));
  ASSERT_EQ(account.po("po").reminders.size(), 1u);  // two months before
  v1::PurchaseOrderHeader change;
  change.set_expiration_month("2026-03");
  account.Must(UpdatePurchaseOrder{"po", change, {"expiration_month"}},
               At(2026, 3, 10));
  // Less than a month away: a week before (Mar 24) and on the date (Mar 31).
  ASSERT_EQ(account.po("po").reminders.size(), 2u);
  Decision d = account.Must(Tick{}, At(2026, 3, 25));
  ASSERT_EQ(d.events.size(), 1u);
  EXPECT_EQ(d.events[0].notification_raised().reminder_label(), "one week before");
}

TEST(TickTest, NotificationWithoutContactsHasNoRecipients) {
  Account account;
  v1::PurchaseOrderHeader h = Header();
  h.clear_contacts();
  account.Must(Create("po", {}, h), At(2026, 12, 1));
  Decision d = account.Must(Tick{}, At(2026, 12, 24));
  ASSERT_EQ(d.events.size(), 1u);
  EXPECT_EQ(d.events[0].notification_raised().recipients_size(), 0);
}

TEST(BalanceAlertTest, FiresOncePerCrossingAndRearms) {
  Account account;
  account.Must(Create("po", {Line(1, kMonthly, 1000)}));
  // 1000 -> 800: still >= 75%.
  EXPECT_THAT(Notifications(account.Must(Invoice("a", 200))), IsEmpty());
  // 800 -> 700: below 75%: one alert, to the contacts at that moment.
  auto alerts = Notifications(account.Must(Invoice("b", 100)));
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].kind(), v1::NOTIFICATION_KIND_BALANCE_THRESHOLD);
  EXPECT_EQ(alerts[0].threshold_percent(), 75);
  EXPECT_EQ(alerts[0].line_number(), 1);
  EXPECT_EQ(alerts[0].balance_micros(), Units(700));
  EXPECT_EQ(alerts[0].total_value_micros(), Units(1000));
  EXPECT_EQ(alerts[0].invoice_id(), "b");
  EXPECT_EQ(alerts[0].recipients(0).email(), "finance@example.com");
  // Further down: no new alert for the same crossing.
  EXPECT_THAT(Notifications(account.Must(Invoice("c", 100))), IsEmpty());
  // A credit back to >= 75% re-arms; the next drop alerts again.
  account.Must(CreditMemo("cm", "c", 100));
  account.Must(CreditMemo("cm2", "b", 50));  // 750: exactly 75%, re-armed.
  EXPECT_TRUE(account.po("po").lines.at(1).fired_thresholds.empty());
  EXPECT_EQ(Notifications(account.Must(Invoice("d", 1))).size(), 1u);
}

TEST(BalanceAlertTest, SeveralThresholdsAndLineUpdates) {
  Account account;
  v1::PurchaseOrderHeader h = Header();
  h.add_balance_thresholds_percent(50);
  h.add_balance_thresholds_percent(90);
  account.Must(Create("po", {Line(1, kMonthly, 1000)}, h));
  auto alerts = Notifications(account.Must(Invoice("a", 600)));  // 40% left.
  ASSERT_EQ(alerts.size(), 2u);
  EXPECT_EQ(alerts[0].threshold_percent(), 50);
  EXPECT_EQ(alerts[1].threshold_percent(), 90);
  // Raising the total re-arms both; lowering it again alerts.
  v1::LineItemDefinition bigger;
  bigger.set_line_number(1);
  bigger.set_amount_micros(Units(10000));
  account.Must(UpdateLineItem{"po", bigger, {"amount_micros"}});
  EXPECT_TRUE(account.po("po").lines.at(1).fired_thresholds.empty());
  v1::LineItemDefinition smaller = bigger;
  smaller.set_amount_micros(Units(700));
  alerts = Notifications(
      account.Must(UpdateLineItem{"po", smaller, {"amount_micros"}}));
  ASSERT_EQ(alerts.size(), 2u);  // 100/700 left: below 50% and 90%.
}

TEST(BalanceAlertTest, UntrackedLinesNeverAlert) {
  Account account;
  v1::LineItemDefinition untracked = Line(1, kMonthly, 100);
  untracked.set_balance_tracking(false);
  account.Must(Create("po", {untracked}));
  EXPECT_THAT(Notifications(account.Must(Invoice("a", 1000))), IsEmpty());
}

}  // namespace
}  // namespace core
}  // namespace poledger
