// A valid purchase order for the server tests that need one and nothing
// particular about it.
#ifndef POLEDGER_TESTS_TESTING_PURCHASE_ORDERS_H_
#define POLEDGER_TESTS_TESTING_PURCHASE_ORDERS_H_

#include <cstdint>
#include <string>

#include "poledger/v1/purchase_orders.pb.h"

namespace poledger {
namespace testing {

// `id`, billed by AWS in USD, 2026-01 to 2030-12, one contact, one
// balance-tracked line of any type worth `units` USD.
inline v1::PurchaseOrder SimplePurchaseOrder(const std::string& id,
                                             int64_t units) {
  v1::PurchaseOrder po;
  po.set_purchase_order_id(id);
  po.add_bill_from("Amazon Web Services, Inc.");
  po.set_currency_code("USD");
  po.set_effective_month("2026-01");
  po.set_expiration_month("2030-12");
  po.add_contacts()->set_email("finance@example.com");
  v1::LineItem* l = po.add_line_items();
  l->set_line_number(1);
  l->set_type(v1::LINE_ITEM_TYPE_ALL);
  l->set_start_month("2026-01");
  l->set_end_month("2030-12");
  l->set_balance_tracking(true);
  l->mutable_amount()->set_currency_code("USD");
  l->mutable_amount()->set_units(units);
  l->set_quantity(1);
  return po;
}

}  // namespace testing
}  // namespace poledger

#endif  // POLEDGER_TESTS_TESTING_PURCHASE_ORDERS_H_
