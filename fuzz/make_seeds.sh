#!/usr/bin/env bash
# Writes the seed corpora in fuzz/corpus/ from the text-format requests
# below (protoc --encode). Run once after a proto change; the output is
# committed.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
enc() {  # enc KIND_BYTE MESSAGE OUT < text
  { printf "\\x$(printf %02x "$1")"; protoc -Iproto -I/usr/include \
      --encode="poledger.v1.$2" proto/poledger/v1/*.proto; } > "$3"
}
d=fuzz/corpus/requests
line='line_items { line_number: 1 type: LINE_ITEM_TYPE_ALL start_month: "2026-01" end_month: "2026-12" balance_tracking: true amount { currency_code: "USD" units: 500 } quantity: 2 tax { rate_ppm: 190000 } }'
po="purchase_order_id: \"PO-9\" description: \"seed\" bill_from: \"Amazon Web Services, Inc.\" currency_code: \"USD\" effective_month: \"2026-01\" expiration_month: \"2026-06\" contacts { name: \"Finance\" email: \"finance@example.com\" } tags { key: \"team\" value: \"infra\" } balance_thresholds: 50 $line"
echo "account_id: \"123456789012\" purchase_order { $po }" | enc 0 CreatePurchaseOrderRequest $d/create
echo 'account_id: "123456789012" purchase_order { purchase_order_id: "PO-1" description: "new" expiration_month: "2027-01" } update_mask { paths: "description" paths: "expiration_month" }' | enc 1 UpdatePurchaseOrderRequest $d/update
echo 'account_id: "123456789012" purchase_order_id: "PO-1" status: PURCHASE_ORDER_STATUS_SUSPENDED' | enc 2 UpdatePurchaseOrderStatusRequest $d/status
echo 'account_id: "123456789012" purchase_order_id: "PO-2" expected_version: 3' | enc 3 DeletePurchaseOrderRequest $d/delete
echo 'account_id: "123456789012" purchase_order_id: "PO-1" line_item { line_number: 7 type: LINE_ITEM_TYPE_AWS_SUBSCRIPTION_PURCHASE start_month: "2026-02" end_month: "2026-05" balance_tracking: true amount { currency_code: "USD" units: 10 nanos: 500000000 } quantity: 3 }' | enc 4 UpdateLineItemRequest $d/add_line
echo 'account_id: "123456789012" purchase_order_id: "PO-1" line_item { line_number: 1 amount { currency_code: "USD" units: 5 } } update_mask { paths: "amount" }' | enc 5 UpdateLineItemRequest $d/update_line
echo 'account_id: "123456789012" purchase_order_id: "PO-2" line_number: 2' | enc 6 RemoveLineItemRequest $d/remove_line
echo 'account_id: "123456789012" invoice { invoice_id: "INV-9" bill_from: "Amazon Web Services, Inc." category: INVOICE_CATEGORY_MONTHLY_USAGE billing_period: "2026-02" amount { currency_code: "USD" units: 900 } }' | enc 7 RecordInvoiceRequest $d/invoice
echo 'account_id: "123456789012" invoice { invoice_id: "CM-1" kind: INVOICE_KIND_CREDIT_MEMO original_invoice_id: "INV-PO-1" bill_from: "Amazon Web Services, Inc." category: INVOICE_CATEGORY_MONTHLY_USAGE billing_period: "2026-02" amount { currency_code: "USD" units: 100 } }' | enc 7 RecordInvoiceRequest $d/credit_memo
echo 'account_id: "123456789012" transaction { transaction_id: "TX-1" purchase_order_id: "PO-1" bill_from: "Amazon Web Services, Inc." amount { currency_code: "USD" units: 40 } month: "2026-03" line_number: 4 }' | enc 8 RecordMarketplaceTransactionRequest $d/marketplace
echo 'account_id: "123456789012" transaction { transaction_id: "TX-2" purchase_order_id: "new-po" bill_from: "Amazon Web Services, Inc." amount { currency_code: "USD" units: 40 } month: "2026-03" }' | enc 8 RecordMarketplaceTransactionRequest $d/marketplace_new
inv() { echo "requests { account_id: \"123456789012\" invoice { invoice_id: \"$1\" kind: $2 original_invoice_id: \"$3\" bill_from: \"Amazon Web Services, Inc.\" category: INVOICE_CATEGORY_MONTHLY_USAGE billing_period: \"2026-02\" amount { currency_code: \"USD\" units: $4 } } }"; }
{ inv INV-PO-1 INVOICE_KIND_INVOICE "" 300; inv B-1 INVOICE_KIND_INVOICE "" 600; inv B-1 INVOICE_KIND_INVOICE "" 600
  inv B-1 INVOICE_KIND_INVOICE "" 7; inv CM-B INVOICE_KIND_CREDIT_MEMO B-1 50; inv CM-A INVOICE_KIND_CREDIT_MEMO INV-PO-2 10; } |
  enc 255 BatchRecordInvoicesRequest $d/batch

d=fuzz/corpus/snapshot
pb() { protoc -Iproto -I/usr/include --encode="poledger.v1.$1" proto/poledger/v1/*.proto; }
echo 'account_id: "a" version: 4 purchase_orders { purchase_order_id: "PO-1" header { bill_from: "Amazon Web Services, Inc." currency_code: "USD" effective_month: "2026-01" expiration_month: "2026-12" } line_items { definition { line_number: 1 type: LINE_ITEM_TYPE_ALL start_month: "2026-01" end_month: "2026-12" balance_tracking: true amount_micros: 1000000000 quantity: 1 } total_value_micros: 1000000000 invoiced_micros: 300000000 created_version: 1 } created_version: 1 version: 2 }' | pb AccountSnapshot > "$work/account"
echo 'invoice_id: "INV-1" kind: INVOICE_KIND_INVOICE amount_micros: 300000000 purchase_order_id: "PO-1" purchase_order_created_version: 1 line_number: 1 line_created_version: 1 recorded_version: 2' | pb InvoiceSnapshot > "$work/invoice"
n=$(stat -c %s "$work/account")
{ printf "\\x$(printf %02x $((n >> 8)))\\x$(printf %02x $((n & 255)))"; cat "$work/account" "$work/invoice"; } > $d/account_and_invoice

d=fuzz/corpus/record
printf '\x01\x10account/123456789012\x0a\x03PO1' > $d/sealed_and_damaged
printf '\x00' > $d/empty_value

d=fuzz/corpus/page_token
printf 'ListPurchaseOrders\n12:123456789012\n1:0\nPO-1' > $d/query_and_token
printf 'ReadEvents\n0:\nMTI' > $d/number
