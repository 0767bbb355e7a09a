// Events stored by earlier versions must still decode and apply; events
// from later versions (with fields this version does not know) too.
#include <string>

#include "absl/strings/escaping.h"
#include "core/account.h"
#include "gtest/gtest.h"
#include "tests/core/core_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace core {
namespace {

// A PurchaseOrderCreated as the first schema wrote it (2026-11): no origin,
// no reminders, no balance thresholds. Do not regenerate: it stands for
// bytes already on disk.
constexpr char kStoredV1Created[] =
    "0a060880f2d6ca0652610a096c65676163792d706f12321219416d617a6f6e2057656220"
    "53657276696365732c20496e632e22035553442a07323032362d30313207323032362d"
    "30361a20080110021a07323032362d30312207323032362d303630013880e497d0124001";

// The same event written by a later version: an unknown field 99 inside the
// event and 98 in the envelope.
constexpr char kFutureCreated[] =
    "0a060880f2d6ca06526a0a096c65676163792d706f12321219416d617a6f6e2057656220"
    "53657276696365732c20496e632e22035553442a07323032362d30313207323032362d"
    "30361a20080110021a07323032362d30312207323032362d303630013880e497d01240"
    "019a0606667574757265900607";

void ExpectLegacyPurchaseOrder(const std::string& hex) {
  v1::AccountEvent event;
  ASSERT_TRUE(event.ParseFromString(absl::HexStringToBytes(hex)));
  ASSERT_TRUE(event.has_purchase_order_created());
  AccountState state;
  ASSERT_OK(Apply(state, event));
  const PurchaseOrderState& po = state.purchase_orders.at("legacy-po");
  EXPECT_EQ(po.status, v1::PURCHASE_ORDER_STATUS_ACTIVE);
  EXPECT_EQ(po.header.currency_code(), "USD");
  EXPECT_EQ(po.expiration.ToString(), "2026-06");
  EXPECT_EQ(po.origin, v1::PURCHASE_ORDER_ORIGIN_UNSPECIFIED);
  EXPECT_TRUE(po.reminders.empty());
  // The default threshold applies to events written before thresholds.
  ASSERT_EQ(po.header.balance_thresholds_percent_size(), 1);
  EXPECT_EQ(po.header.balance_thresholds_percent(0), 75);
  ASSERT_EQ(po.lines.count(1), 1u);
  EXPECT_EQ(po.lines.at(1).total_value, 5000000000);
  EXPECT_EQ(po.create_time, absl::FromUnixSeconds(1767225600));
  // And the rules run on it.
  auto d = Decide(state, testing::Invoice("inv", 4000), absl::FromUnixSeconds(1767225600));
  ASSERT_OK(d);
  EXPECT_EQ(testing::InvoiceEvent(*d).purchase_order_id(), "legacy-po");
  EXPECT_EQ(testing::Notifications(*d).size(), 1u);  // 1000/5000 < 75%.
}

TEST(EventEvolutionTest, StoredFirstSchemaPayloadStillApplies) {
  ExpectLegacyPurchaseOrder(kStoredV1Created);
}

TEST(EventEvolutionTest, UnknownFieldsFromLaterVersionsAreTolerated) {
  ExpectLegacyPurchaseOrder(kFutureCreated);
  v1::AccountEvent event;
  ASSERT_TRUE(event.ParseFromString(absl::HexStringToBytes(kFutureCreated)));
  // Unknown fields survive a re-encode, so nothing a newer writer said is
  // lost by an older reader passing the event on.
  EXPECT_EQ(absl::BytesToHexString(event.SerializeAsString()).size(),
            std::string(kFutureCreated).size());
}

}  // namespace
}  // namespace core
}  // namespace poledger
