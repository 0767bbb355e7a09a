// Request field paths: domain errors named from the request, and update
// masks translated to the domain's field names.

#include "api/field_paths.h"

#include "api/convert.h"
#include "core/errors.h"
#include "gmock/gmock.h"
#include "google/protobuf/field_mask.pb.h"
#include "gtest/gtest.h"
#include "poledger/v1/events.pb.h"
#include "poledger/v1/invoices.pb.h"
#include "poledger/v1/purchase_orders.pb.h"

namespace poledger {
namespace api {
namespace {

using ::testing::ElementsAre;

const RequestShape kCreate{v1::CreatePurchaseOrderRequest::descriptor(),
                           "purchase_order"};

TEST(InRequestTest, SubjectFieldsArePrefixedAndRenamed) {
  absl::Status s = InRequest(
      core::InvalidField("balance_thresholds_percent[1]", "must be 1 to 99"),
      kCreate);
  EXPECT_EQ(core::FieldOf(s), "purchase_order.balance_thresholds[1]");
  EXPECT_EQ(s.message(),
            "purchase_order.balance_thresholds[1]: must be 1 to 99");
  EXPECT_EQ(core::ReasonOf(s), "INVALID_FIELD");
  EXPECT_TRUE(ResolvesIn(kCreate.request, core::FieldOf(s)));

  s = InRequest(core::InvalidField("line_items[2].amount_micros", "too big"),
                kCreate);
  EXPECT_EQ(core::FieldOf(s), "purchase_order.line_items[2].amount");
  EXPECT_TRUE(ResolvesIn(kCreate.request, core::FieldOf(s)));

  s = InRequest(core::InvalidField("contacts[0].email", "bad"), kCreate);
  EXPECT_EQ(core::FieldOf(s), "purchase_order.contacts[0].email");
}

TEST(InRequestTest, RequestFieldsStayAsTheyAre) {
  for (const char* field : {"request_id", "account_id"}) {
    absl::Status s = InRequest(core::InvalidField(field, "bad"), kCreate);
    EXPECT_EQ(core::FieldOf(s), field);
  }
  const RequestShape update{v1::UpdatePurchaseOrderRequest::descriptor(),
                            "purchase_order"};
  absl::Status s =
      InRequest(core::InvalidField("update_mask.paths[3]", "bad"), update);
  EXPECT_EQ(core::FieldOf(s), "update_mask.paths[3]");
  EXPECT_TRUE(ResolvesIn(update.request, core::FieldOf(s)));
  // Line item commands name the request's line_item themselves.
  const RequestShape add{v1::AddLineItemRequest::descriptor(), ""};
  s = InRequest(core::InvalidField("line_item.tax_rate_ppm", "bad"), add);
  EXPECT_EQ(core::FieldOf(s), "line_item.tax");
  EXPECT_TRUE(ResolvesIn(add.request, core::FieldOf(s)));
  // No field: unchanged.
  s = InRequest(absl::NotFoundError("gone"), kCreate);
  EXPECT_EQ(s, absl::NotFoundError("gone"));
}

TEST(ResolvesInTest, WalksMessagesAndIndexes) {
  const auto* d = v1::CreatePurchaseOrderRequest::descriptor();
  EXPECT_TRUE(ResolvesIn(d, "purchase_order.line_items[0].tax"));
  EXPECT_FALSE(ResolvesIn(d, "purchase_order.line_items.tax.x"));
  EXPECT_FALSE(ResolvesIn(d, "purchase_order.description[0]"));
  EXPECT_FALSE(ResolvesIn(d, "purchase_order.balance_thresholds_percent"));
  EXPECT_FALSE(ResolvesIn(d, "invoice"));
}

google::protobuf::FieldMask Mask(std::initializer_list<const char*> paths) {
  google::protobuf::FieldMask m;
  for (const char* p : paths) m.add_paths(p);
  return m;
}

TEST(DomainMaskTest, LinePathsBecomeDefinitionFields) {
  auto m = convert::LineMask(Mask({"amount", "tax", "end_month"}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT(*m, ElementsAre("amount_micros", "tax_amount_micros",
                              "tax_rate_ppm", "end_month"));
  for (const char* bad :
       {"line_number", "total_value", "balance", "amount_micros", "colour"}) {
    auto refused = convert::LineMask(Mask({"type", bad}));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_EQ(core::FieldOf(refused.status()), "update_mask.paths[1]") << bad;
    EXPECT_THAT(std::string(refused.status().message()),
                ::testing::HasSubstr("not an updatable line item field"));
  }
}

TEST(DomainMaskTest, HeaderPathsBecomeHeaderFields) {
  auto m = convert::HeaderMask(Mask({"balance_thresholds", "contacts"}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT(*m, ElementsAre("balance_thresholds_percent", "contacts"));
  for (const char* bad : {"status", "purchase_order_id", "line_items",
                          "balance_thresholds_percent", "value"}) {
    auto refused = convert::HeaderMask(Mask({bad}));
    EXPECT_EQ(core::FieldOf(refused.status()), "update_mask.paths[0]") << bad;
  }
  // Every header field is updatable by its API name.
  const auto* header = v1::PurchaseOrderHeader::descriptor();
  for (int i = 0; i < header->field_count(); ++i) {
    std::string api = header->field(i)->name();
    if (api == "balance_thresholds_percent") api = "balance_thresholds";
    EXPECT_TRUE(convert::HeaderMask(Mask({api.c_str()})).ok()) << api;
  }
}

}  // namespace
}  // namespace api
}  // namespace poledger
