// Validation, limits, the status lifecycle and expected versions.
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/core_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace core {
namespace {

using ::poledger::testing::StatusIs;
using ::testing::HasSubstr;
using namespace ::poledger::core::testing;  // NOLINT

constexpr auto kMonthly = v1::LINE_ITEM_TYPE_AWS_MONTHLY_USAGE;

struct BadCreate {
  std::string name;
  std::function<void(CreatePurchaseOrder&)> mutate;
  std::string field;  // Expected FieldOf the error.
};

TEST(ValidationTest, MalformedCreatesAreInvalidArgumentNamingTheField) {
  const std::vector<BadCreate> cases = {
      {"empty id", [](auto& c) { c.purchase_order_id = ""; },
       "purchase_order_id"},
      {"101-char id",
       [](auto& c) { c.purchase_order_id = std::string(101, 'a'); },
       "purchase_order_id"},
      {"bad id char", [](auto& c) { c.purchase_order_id = "po\n1"; },
       "purchase_order_id"},
      {"bad id char !", [](auto& c) { c.purchase_order_id = "po!"; },
       "purchase_order_id"},
      {"no bill from", [](auto& c) { c.header.clear_bill_from(); }, "bill_from"},
      {"duplicate bill from",
       [](auto& c) { c.header.add_bill_from(kAws); }, "bill_from[1]"},
      {"bad currency", [](auto& c) { c.header.set_currency_code("usd"); },
       "currency_code"},
      {"bad effective month",
       [](auto& c) { c.header.set_effective_month("2026-13"); },
       "effective_month"},
      {"expiration before effective",
       [](auto& c) { c.header.set_expiration_month("2025-12"); },
       "expiration_month"},
      {"11 contacts",
       [](auto& c) {
         for (int i = 0; i < 10; ++i) {
           v1::Contact* x = c.header.add_contacts();
           x->set_email(absl::StrCat("c", i, "@example.com"));
         }
       },
       "contacts"},
      {"bad email",
       [](auto& c) { c.header.mutable_contacts(0)->set_email("not-an-email"); },
       "contacts[0].email"},
      {"email without domain dot",
       [](auto& c) { c.header.mutable_contacts(0)->set_email("a@b"); },
       "contacts[0].email"},
      {"email with two @",
       [](auto& c) { c.header.mutable_contacts(0)->set_email("a@b@c.com"); },
       "contacts[0].email"},
      {"bad phone",
       [](auto& c) { c.header.mutable_contacts(0)->set_phone("call me"); },
       "contacts[0].phone"},
      {"51 tags",
       [](auto& c) {
         for (int i = 0; i < 51; ++i) {
           v1::Tag* t = c.header.add_tags();
           t->set_key(absl::StrCat("k", i));
         }
       },
       "tags"},
      {"duplicate tag key",
       [](auto& c) {
         c.header.add_tags()->set_key("cost-center");
         c.header.add_tags()->set_key("cost-center");
       },
       "tags[1].key"},
      {"threshold 0",
       [](auto& c) { c.header.add_balance_thresholds_percent(0); },
       "balance_thresholds_percent[0]"},
      {"101 lines",
       [](auto& c) {
         c.line_items.clear();
         for (int i = 1; i <= 101; ++i) c.line_items.push_back(Line(i, kMonthly));
       },
       "line_items"},
      {"line number 0", [](auto& c) { c.line_items[0].set_line_number(0); },
       "line_items[0].line_number"},
      {"duplicate line number",
       [](auto& c) { c.line_items.push_back(Line(1, kMonthly)); },
       "line_items[1].line_number"},
      {"line type unspecified",
       [](auto& c) { c.line_items[0].set_type(v1::LINE_ITEM_TYPE_UNSPECIFIED); },
       "line_items[0].type"},
      {"line end before start",
       [](auto& c) {
         c.line_items[0].set_start_month("2026-05");
         c.line_items[0].set_end_month("2026-04");
       },
       "line_items[0].end_month"},
      {"line outside the PO window",
       [](auto& c) { c.line_items[0].set_end_month("2027-01"); },
       "line_items[0].start_month"},
      {"tracking without amount",
       [](auto& c) { c.line_items[0].set_amount_micros(0); },
       "line_items[0].amount"},
      {"tracking without quantity",
       [](auto& c) { c.line_items[0].set_quantity(0); },
       "line_items[0].quantity"},
      {"negative amount",
       [](auto& c) { c.line_items[0].set_amount_micros(-1); },
       "line_items[0].amount"},
      {"tax rate over 100%",
       [](auto& c) { c.line_items[0].set_tax_rate_ppm(1000001); },
       "line_items[0].tax"},
      {"total overflows",
       [](auto& c) {
         c.line_items[0].set_amount_micros(INT64_MAX / 2);
         c.line_items[0].set_quantity(3);
       },
       "line_items[0].amount"},
  };
  for (const BadCreate& c : cases) {
    SCOPED_TRACE(c.name);
    Account account;
    CreatePurchaseOrder cmd = Create("po-1", {Line(1, kMonthly)});
    c.mutate(cmd);
    auto result = account.Run(cmd);
    EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr(c.field + ": ")));
    EXPECT_EQ(FieldOf(result.status()), c.field);
    EXPECT_FALSE(ReasonOf(result.status()).empty());
    EXPECT_TRUE(account.state().purchase_orders.empty());
    EXPECT_EQ(account.state().version, 0u);
  }
}

TEST(ValidationTest, AcceptsEveryAllowedIdCharacterAndFillsDefaults) {
  Account account;
  const std::string id = "PO 2026_a.b:c/d=e+f-g%h@i#9";
  v1::LineItemDefinition untracked = Line(2, v1::LINE_ITEM_TYPE_ALL, 0);
  untracked.set_balance_tracking(false);
  untracked.set_quantity(0);
  account.Must(Create(id, {Line(1, kMonthly), untracked}));
  const PurchaseOrderState& po = account.po(id);
  EXPECT_EQ(po.status, v1::PURCHASE_ORDER_STATUS_ACTIVE);
  EXPECT_THAT(po.header.balance_thresholds_percent(), ::testing::ElementsAre(75));
  EXPECT_EQ(po.lines.at(2).definition.quantity(), 1);
  account.Must(Create(std::string(100, 'x'), {}));
}

TEST(ValidationTest, LineTotalsIncludeTax) {
  Account account;
  v1::LineItemDefinition absolute = Line(1, kMonthly, 100);
  absolute.set_quantity(3);
  absolute.set_tax_amount_micros(Units(12));
  v1::LineItemDefinition rate = Line(2, kMonthly, 100);
  rate.set_quantity(2);
  rate.set_tax_rate_ppm(190000);  // 19%
  account.Must(Create("po", {absolute, rate}));
  EXPECT_EQ(account.po("po").lines.at(1).total_value, Units(312));
  EXPECT_EQ(account.po("po").lines.at(2).total_value, Units(238));
  EXPECT_EQ(account.po("po").Value(), Units(550));
  EXPECT_EQ(account.po("po").Balance(), Units(550));
}

TEST(LimitsTest, HundredActivePurchaseOrdersPerAccount) {
  Account account;
  for (int i = 0; i < kMaxActivePurchaseOrders; ++i) {
    account.Must(Create(absl::StrCat("po-", i), {}));
  }
  auto refused = account.Run(Create("po-101", {}));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ReasonOf(refused.status()), "ACTIVE_PURCHASE_ORDER_LIMIT");
  // A suspended one frees a place; reactivating it then hits the limit.
  account.Must(ChangePurchaseOrderStatus{"po-0", v1::PURCHASE_ORDER_STATUS_SUSPENDED});
  account.Must(Create("po-101", {}));
  auto reactivate = account.Run(
      ChangePurchaseOrderStatus{"po-0", v1::PURCHASE_ORDER_STATUS_ACTIVE});
  EXPECT_EQ(ReasonOf(reactivate.status()), "ACTIVE_PURCHASE_ORDER_LIMIT");
  EXPECT_EQ(account.state().ActiveCount(), kMaxActivePurchaseOrders);
}

TEST(LimitsTest, HundredLineItemsPerPurchaseOrder) {
  Account account;
  std::vector<v1::LineItemDefinition> lines;
  for (int i = 1; i <= kMaxLineItems; ++i) lines.push_back(Line(i, kMonthly));
  account.Must(Create("po", lines));
  auto refused = account.Run(AddLineItem{"po", Line(101, kMonthly)});
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ReasonOf(refused.status()), "LINE_ITEM_LIMIT");
  EXPECT_EQ(account.po("po").lines.size(), 100u);
}

TEST(LineItemsTest, AddUpdateRemove) {
  Account account;
  account.Must(Create("po", {Line(1, kMonthly)}));
  EXPECT_THAT(account.Run(AddLineItem{"po", Line(1, kMonthly)}),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(account.Run(AddLineItem{"nope", Line(2, kMonthly)}),
              StatusIs(absl::StatusCode::kNotFound));
  auto outside = account.Run(
      AddLineItem{"po", Line(2, kMonthly, 10, "2025-12", "2026-02")});
  EXPECT_THAT(outside, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ReasonOf(outside.status()),
            "LINE_ITEM_OUTSIDE_PURCHASE_ORDER_WINDOW");
  account.Must(AddLineItem{"po", Line(2, v1::LINE_ITEM_TYPE_ALL, 50)});
  v1::LineItemDefinition change;
  change.set_line_number(2);
  change.set_amount_micros(Units(80));
  account.Must(UpdateLineItem{"po", change, {"amount_micros"}});
  EXPECT_EQ(account.po("po").lines.at(2).total_value, Units(80));
  EXPECT_EQ(account.po("po").lines.at(2).definition.type(),
            v1::LINE_ITEM_TYPE_ALL);
  EXPECT_THAT(account.Run(UpdateLineItem{"po", change, {"colour"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("update_mask.paths[0]")));
  change.set_line_number(9);
  EXPECT_THAT(account.Run(UpdateLineItem{"po", change, {"amount_micros"}}),
              StatusIs(absl::StatusCode::kNotFound));
  account.Must(RemoveLineItem{"po", 1});
  EXPECT_THAT(account.Run(RemoveLineItem{"po", 1}),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(account.po("po").lines.size(), 1u);
}

TEST(UpdateTest, MaskedHeaderUpdateAndWindowCheck) {
  Account account;
  account.Must(Create("po", {Line(1, kMonthly, 10, "2026-03", "2026-06")}));
  v1::PurchaseOrderHeader change;
  change.set_description("renamed");
  change.set_effective_month("2026-04");
  account.Must(UpdatePurchaseOrder{"po", change, {"description"}});
  EXPECT_EQ(account.po("po").header.description(), "renamed");
  EXPECT_EQ(account.po("po").header.effective_month(), "2026-01");
  auto shrink = account.Run(UpdatePurchaseOrder{"po", change, {"effective_month"}});
  EXPECT_THAT(shrink, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ReasonOf(shrink.status()), "LINE_ITEM_OUTSIDE_PURCHASE_ORDER_WINDOW");
  EXPECT_THAT(account.Run(UpdatePurchaseOrder{"po", change, {"owner"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // An update that changes nothing records nothing.
  const uint64_t version = account.state().version;
  account.Must(UpdatePurchaseOrder{"po", change, {"description"}});
  EXPECT_EQ(account.state().version, version);
}

TEST(UpdateTest, LineMaskNamesDefinitionFields) {
  Account account;
  v1::LineItemDefinition first = Line(1, v1::LINE_ITEM_TYPE_ALL, 100);
  first.set_tax_amount_micros(Units(5));
  account.Must(Create("po", {first}));
  // A tax changes kind when both oneof members are named: the one the new
  // values set wins and the other is cleared.
  v1::LineItemDefinition change;
  change.set_line_number(1);
  change.set_tax_rate_ppm(100000);
  account.Must(
      UpdateLineItem{"po", change, {"tax_amount_micros", "tax_rate_ppm"}});
  const v1::LineItemDefinition& after = account.po("po").lines.at(1).definition;
  EXPECT_EQ(after.tax_case(), v1::LineItemDefinition::kTaxRatePpm);
  EXPECT_EQ(after.amount_micros(), Units(100));
  EXPECT_EQ(account.po("po").lines.at(1).total_value, Units(110));
  // The line number says which line; it cannot itself be updated.
  auto renumber = account.Run(UpdateLineItem{"po", change, {"line_number"}});
  EXPECT_THAT(renumber, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("update_mask.paths[0]")));
  // An empty mask replaces every field but the line number.
  v1::LineItemDefinition whole = Line(1, kMonthly, 30);
  account.Must(UpdateLineItem{"po", whole, {}});
  EXPECT_EQ(account.po("po").lines.at(1).definition.SerializeAsString(),
            whole.SerializeAsString());
}

TEST(ExpectedVersionTest, StaleWritesAreAborted) {
  Account account;
  account.Must(Create("po", {Line(1, kMonthly)}));
  const uint64_t v = account.po("po").version;
  v1::PurchaseOrderHeader change;
  change.set_description("first");
  account.Must(UpdatePurchaseOrder{"po", change, {"description"}, v});
  change.set_description("second");
  auto stale = account.Run(UpdatePurchaseOrder{"po", change, {"description"}, v});
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kAborted,
                              HasSubstr("not the expected")));
  EXPECT_EQ(ReasonOf(stale.status()), "WRONG_EXPECTED_VERSION");
  EXPECT_THAT(account.Run(DeletePurchaseOrder{"po", v}),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(account.po("po").header.description(), "first");
}

struct Transition {
  v1::PurchaseOrderStatus from;
  v1::PurchaseOrderStatus to;
  bool allowed;
  // The status after an allowed change (UNSPECIFIED: `to`).
  v1::PurchaseOrderStatus result = v1::PURCHASE_ORDER_STATUS_UNSPECIFIED;
};

// Brings a fresh PO (expiring 2026-12) to `status`.
void Reach(Account& account, v1::PurchaseOrderStatus status) {
  account.Must(Create("po", {}));
  const absl::Time after_expiry = At(2027, 1, 1);
  switch (status) {
    case v1::PURCHASE_ORDER_STATUS_SUSPENDED:
      account.Must(ChangePurchaseOrderStatus{"po", status});
      break;
    case v1::PURCHASE_ORDER_STATUS_EXPIRED:
      account.Must(Tick{}, after_expiry);
      break;
    case v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED:
      account.Must(ChangePurchaseOrderStatus{"po", v1::PURCHASE_ORDER_STATUS_SUSPENDED});
      account.Must(Tick{}, after_expiry);
      break;
    default:
      break;
  }
  ASSERT_EQ(account.po("po").status, status);
}

TEST(StatusTest, EveryUserTransition) {
  using S = v1::PurchaseOrderStatus;
  const S kA = v1::PURCHASE_ORDER_STATUS_ACTIVE;
  const S kS = v1::PURCHASE_ORDER_STATUS_SUSPENDED;
  const S kE = v1::PURCHASE_ORDER_STATUS_EXPIRED;
  const S kSE = v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED;
  const Transition table[] = {
      {kA, kS, true},
      {kA, kE, false},
      {kA, kSE, false},
      {kS, kA, true},
      {kS, kE, false},
      {kS, kSE, false},
      // "Suspend an Active or Expired PO": Expired -> Suspended-expired.
      {kE, kSE, true},
      {kE, kA, false},
      {kE, kS, true, kSE},
      {kSE, kE, true},
      {kSE, kA, false},
      {kSE, kS, true, kSE},
  };
  for (const Transition& t : table) {
    SCOPED_TRACE(absl::StrCat(v1::PurchaseOrderStatus_Name(t.from), " -> ",
                              v1::PurchaseOrderStatus_Name(t.to)));
    Account account;
    Reach(account, t.from);
    auto result = account.Run(ChangePurchaseOrderStatus{"po", t.to},
                              At(2027, 1, 2));
    if (t.allowed) {
      EXPECT_OK(result);
      EXPECT_EQ(
          account.po("po").status,
          t.result == v1::PURCHASE_ORDER_STATUS_UNSPECIFIED ? t.to : t.result);
    } else {
      EXPECT_THAT(result, StatusIs(absl::StatusCode::kFailedPrecondition));
      EXPECT_EQ(ReasonOf(result.status()), "INVALID_STATUS_TRANSITION");
      EXPECT_EQ(account.po("po").status, t.from);
    }
  }
}

TEST(StatusTest, SameStatusIsANoOpAndUnspecifiedIsInvalid) {
  Account account;
  account.Must(Create("po", {}));
  const uint64_t version = account.state().version;
  account.Must(ChangePurchaseOrderStatus{"po", v1::PURCHASE_ORDER_STATUS_ACTIVE});
  EXPECT_EQ(account.state().version, version);
  EXPECT_THAT(account.Run(ChangePurchaseOrderStatus{
                  "po", v1::PURCHASE_ORDER_STATUS_UNSPECIFIED}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(account.Run(ChangePurchaseOrderStatus{
                  "missing", v1::PURCHASE_ORDER_STATUS_SUSPENDED}),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(StatusTest, ExtendingAnExpiredPurchaseOrderMakesItActive) {
  Account account;
  Reach(account, v1::PURCHASE_ORDER_STATUS_EXPIRED);
  v1::PurchaseOrderHeader change;
  change.set_expiration_month("2027-06");
  Decision d = account.Must(
      UpdatePurchaseOrder{"po", change, {"expiration_month"}}, At(2027, 1, 5));
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[1].purchase_order_status_changed().reason(),
            v1::STATUS_CHANGE_REASON_EXPIRATION_EXTENDED);
  EXPECT_EQ(account.po("po").status, v1::PURCHASE_ORDER_STATUS_ACTIVE);
}

TEST(StatusTest, SuspendedExpiredMustBeSetBackToExpiredBeforeExtending) {
  Account account;
  Reach(account, v1::PURCHASE_ORDER_STATUS_SUSPENDED_EXPIRED);
  v1::PurchaseOrderHeader change;
  change.set_expiration_month("2027-06");
  auto refused = account.Run(
      UpdatePurchaseOrder{"po", change, {"expiration_month"}}, At(2027, 1, 5));
  EXPECT_EQ(ReasonOf(refused.status()), "INVALID_STATUS_TRANSITION");
  account.Must(ChangePurchaseOrderStatus{"po", v1::PURCHASE_ORDER_STATUS_EXPIRED},
               At(2027, 1, 5));
  account.Must(UpdatePurchaseOrder{"po", change, {"expiration_month"}},
               At(2027, 1, 5));
  EXPECT_EQ(account.po("po").status, v1::PURCHASE_ORDER_STATUS_ACTIVE);
}

TEST(DeleteTest, DeleteFreesTheIdAndDropsPendingReminders) {
  Account account;
  account.Must(Create("po", {Line(1, kMonthly)}));
  EXPECT_FALSE(account.po("po").reminders.empty());
  account.Must(DeletePurchaseOrder{"po"});
  EXPECT_EQ(account.state().purchase_orders.count("po"), 0u);
  EXPECT_TRUE(account.Must(Tick{}, At(2026, 12, 31)).events.empty());
  account.Must(Create("po", {}));
  EXPECT_THAT(account.Run(Create("po", {})),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

}  // namespace
}  // namespace core
}  // namespace poledger
