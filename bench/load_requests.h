// The requests poledger-loadgen sends, shared with bench/ledger_bench.cc so
// that the benchmark of the write path without gRPC does the same work as
// the server under the load generator.
#ifndef POLEDGER_BENCH_LOAD_REQUESTS_H_
#define POLEDGER_BENCH_LOAD_REQUESTS_H_

#include <cstdint>
#include <string>

#include "poledger/v1/invoices.pb.h"
#include "poledger/v1/purchase_orders.pb.h"

namespace poledger {

// A purchase order of `lines` line items (the first AWS monthly usage, the
// others of any type), effective 2026-01 to 2036-12, 1,000,000,000 USD
// each. 100 of 100 lines are an account at the domain's limits.
inline v1::PurchaseOrder LoadPurchaseOrder(const std::string& id,
                                           int lines = 3) {
  v1::PurchaseOrder po;
  po.set_purchase_order_id(id);
  po.add_bill_from("Amazon Web Services, Inc.");
  po.set_currency_code("USD");
  po.set_effective_month("2026-01");
  po.set_expiration_month("2036-12");
  for (int l = 1; l <= lines; ++l) {
    v1::LineItem* line = po.add_line_items();
    line->set_line_number(l);
    line->set_type(l == 1 ? v1::LINE_ITEM_TYPE_AWS_MONTHLY_USAGE
                          : v1::LINE_ITEM_TYPE_ALL);
    line->set_start_month("2026-01");
    line->set_end_month("2036-12");
    line->set_balance_tracking(true);
    line->mutable_amount()->set_units(1000000000);
    line->set_quantity(1);
  }
  return po;
}

// A monthly-usage invoice for June 2026 of 1 to 100 USD (by `seq`), which
// matches LoadPurchaseOrder's first line.
inline void FillLoadInvoice(const std::string& id, int64_t seq,
                            v1::Invoice* invoice) {
  invoice->set_invoice_id(id);
  invoice->set_bill_from("Amazon Web Services, Inc.");
  invoice->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
  invoice->set_billing_period("2026-06");
  invoice->mutable_amount()->set_currency_code("USD");
  invoice->mutable_amount()->set_units(1 + seq % 100);
}

}  // namespace poledger

#endif  // POLEDGER_BENCH_LOAD_REQUESTS_H_
