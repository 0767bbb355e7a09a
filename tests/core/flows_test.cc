// Whole flows from the user's description: marketplace transactions and the
// one-time purchase order.
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
using namespace ::poledger::core::testing;  // NOLINT

constexpr auto kMonthly = v1::LINE_ITEM_TYPE_AWS_MONTHLY_USAGE;

RecordMarketplaceTransaction Transaction(const std::string& id,
                                         const std::string& po,
                                         int32_t line_number = 0) {
  RecordMarketplaceTransaction t;
  t.transaction_id = id;
  t.purchase_order_id = po;
  t.bill_from = kAws;
  t.currency_code = "USD";
  t.month = "2026-03";
  t.amount_micros = Units(1200);
  t.description = "SaaS contract";
  t.line_number = line_number;
  return t;
}

const v1::MarketplaceTransactionRecorded& Recorded(const Decision& d) {
  return d.events.back().marketplace_transaction_recorded();
}

TEST(MarketplaceTest, AddsALineToAnExistingPurchaseOrder) {
  Account account;
  account.Must(Create("1234", {Line(1, kMonthly)}));
  Decision d = account.Must(Transaction("tx-1", "1234"));
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[0].line_item_added().marketplace_transaction_id(), "tx-1");
  EXPECT_EQ(Recorded(d).outcome(), v1::MARKETPLACE_OUTCOME_LINE_ADDED);
  EXPECT_EQ(Recorded(d).line_number(), 2);
  const LineItemState& line = account.po("1234").lines.at(2);
  EXPECT_EQ(line.definition.type(), v1::LINE_ITEM_TYPE_AWS_MARKETPLACE_TRANSACTION);
  EXPECT_EQ(line.definition.start_month(), "2026-03");
  EXPECT_EQ(line.definition.end_month(), "2026-12");
  EXPECT_FALSE(line.definition.balance_tracking());
  // Its invoices carry the PO id and go to that line.
  RecordInvoice inv = Invoice("mp-inv", 100, v1::INVOICE_CATEGORY_MARKETPLACE);
  inv.invoice.set_purchase_order_id("1234");
  v1::InvoiceRecorded e = InvoiceEvent(account.Must(inv));
  EXPECT_EQ(e.purchase_order_id(), "1234");
  EXPECT_EQ(e.line_number(), 2);
}

TEST(MarketplaceTest, CreatesAPurchaseOrderWithTheDecidedDefaults) {
  Account account;
  Decision d = account.Must(Transaction("tx-1", "poc1", 7));
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(Recorded(d).outcome(), v1::MARKETPLACE_OUTCOME_PURCHASE_ORDER_CREATED);
  const PurchaseOrderState& po = account.po("poc1");
  EXPECT_EQ(po.origin, v1::PURCHASE_ORDER_ORIGIN_MARKETPLACE);
  EXPECT_EQ(po.header.effective_month(), "2026-03");
  EXPECT_EQ(po.header.expiration_month(), "2027-02");
  EXPECT_EQ(po.header.currency_code(), "USD");
  EXPECT_THAT(po.header.bill_from(), ::testing::ElementsAre(kAws));
  EXPECT_EQ(po.header.contacts_size(), 0);
  ASSERT_EQ(po.lines.count(7), 1u);
  EXPECT_FALSE(po.lines.at(7).definition.balance_tracking());
  EXPECT_EQ(po.status, v1::PURCHASE_ORDER_STATUS_ACTIVE);
  // Default line number is 1.
  account.Must(Transaction("tx-2", "poc2"));
  EXPECT_EQ(account.po("poc2").lines.count(1), 1u);
}

TEST(MarketplaceTest, AMonthTooLateForItsPurchaseOrderIsRefused) {
  Account account;
  RecordMarketplaceTransaction t = Transaction("tx-1", "poc1");
  t.month = "9999-03";
  EXPECT_THAT(account.Run(t), StatusIs(absl::StatusCode::kInvalidArgument,
                                       ::testing::HasSubstr("month")));
  t.month = "9999-01";  // Its purchase order ends 9999-12.
  account.Must(t);
  EXPECT_EQ(account.po("poc1").header.expiration_month(), "9999-12");
}

TEST(MarketplaceTest, FullActiveLimitRecordsWithoutAPurchaseOrder) {
  Account account;
  for (int i = 0; i < kMaxActivePurchaseOrders; ++i) {
    account.Must(Create(absl::StrCat("po-", i), {}));
  }
  Decision d = account.Must(Transaction("tx", "new-po"));
  ASSERT_EQ(d.events.size(), 1u);
  EXPECT_EQ(Recorded(d).outcome(), v1::MARKETPLACE_OUTCOME_NOT_ASSOCIATED);
  EXPECT_EQ(Recorded(d).reason_code(), "ACTIVE_PURCHASE_ORDER_LIMIT");
  EXPECT_EQ(account.state().purchase_orders.count("new-po"), 0u);
}

TEST(MarketplaceTest, IdempotentAndValidated) {
  Account account;
  account.Must(Transaction("tx", "poc1"));
  const uint64_t version = account.state().version;
  Decision again = account.Must(Transaction("tx", "poc1"));
  EXPECT_EQ(again.duplicate_of_version, version);
  auto conflict = account.Run(Transaction("tx", "poc2"));
  EXPECT_THAT(conflict, StatusIs(absl::StatusCode::kAlreadyExists));
  // A PO number too long for a PO id is recorded, not associated.
  Decision long_id = account.Must(Transaction("tx-long", std::string(150, 'x')));
  EXPECT_EQ(Recorded(long_id).reason_code(), "INVALID_PURCHASE_ORDER_ID");
  auto too_long = account.Run(Transaction("tx-2", std::string(201, 'x')));
  EXPECT_EQ(FieldOf(too_long.status()), "purchase_order_id");
  RecordMarketplaceTransaction bad = Transaction("tx-3", "p");
  bad.month = "2026-1";
  EXPECT_EQ(FieldOf(account.Run(bad).status()), "month");
}

// The user's one-time PO flow, end to end.
TEST(OneTimePurchaseOrderTest, SuspendOthersUseItThenGoBack) {
  Account account;
  account.Must(Create("regular-a", {Line(1, v1::LINE_ITEM_TYPE_ALL, 100000)}));
  account.Must(Create("regular-b", {Line(1, kMonthly, 100000)}));
  // Add the one-time PO and suspend the others.
  account.Must(Create("one-time", {Line(1, v1::LINE_ITEM_TYPE_ALL, 5000)}));
  for (const char* id : {"regular-a", "regular-b"}) {
    account.Must(ChangePurchaseOrderStatus{id, v1::PURCHASE_ORDER_STATUS_SUSPENDED});
  }
  // The purchase goes to the one-time PO.
  v1::InvoiceRecorded e = InvoiceEvent(account.Must(
      Invoice("purchase", 4000, v1::INVOICE_CATEGORY_SUBSCRIPTION_PURCHASE)));
  EXPECT_EQ(e.purchase_order_id(), "one-time");
  // Reactivate the others and suspend the one-time PO.
  for (const char* id : {"regular-a", "regular-b"}) {
    account.Must(ChangePurchaseOrderStatus{id, v1::PURCHASE_ORDER_STATUS_ACTIVE});
  }
  account.Must(ChangePurchaseOrderStatus{"one-time", v1::PURCHASE_ORDER_STATUS_SUSPENDED});
  e = InvoiceEvent(account.Must(Invoice("usage", 100)));
  EXPECT_EQ(e.purchase_order_id(), "regular-b");  // Most specific type.
  e = InvoiceEvent(account.Must(
      Invoice("sub", 100, v1::INVOICE_CATEGORY_SUBSCRIPTION_PURCHASE)));
  EXPECT_EQ(e.purchase_order_id(), "regular-a");
  // Or delete it instead: invoices still go back to the others.
  account.Must(DeletePurchaseOrder{"one-time"});
  e = InvoiceEvent(account.Must(
      Invoice("sub-2", 100, v1::INVOICE_CATEGORY_SUBSCRIPTION_PURCHASE)));
  EXPECT_EQ(e.purchase_order_id(), "regular-a");
}

}  // namespace
}  // namespace core
}  // namespace poledger
