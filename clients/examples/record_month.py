#!/usr/bin/env python3
"""Records a month of invoices for one account, as a billing service would:
one monthly-usage invoice per day, each with a request id derived from what
it is (account, invoice id), over a channel with poledger's service config
(deadlines, UNAVAILABLE retried with backoff). Running it again records
nothing twice: the request ids (and invoice ids) make every write
idempotent, so a billing run that died half-way is simply run again.

  PYTHONPATH=STUBS python3 clients/examples/record_month.py \
      --server=127.0.0.1:50051 --account=123456789012 --month=2026-03

STUBS: Python stubs generated from proto/ (README, "Calling poledger from
your service"). Prints one line per invoice and a summary; exit status 0
when every invoice is recorded (or was before), 1 otherwise.
"""

import argparse
import calendar
import json
import os
import sys

import grpc

from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import types_pb2

SERVICE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "..", "service_config.json")


def channel(address):
    with open(SERVICE_CONFIG) as f:
        config = json.dumps(json.load(f))
    return grpc.insecure_channel(address, options=[
        ("grpc.service_config", config),
        ("grpc.enable_retries", 1),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--account", required=True)
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--bill-from", default="Amazon Web Services, Inc.")
    parser.add_argument("--currency", default="USD")
    parser.add_argument("--units-per-day", type=int, default=100)
    args = parser.parse_args()

    year, month = (int(x) for x in args.month.split("-"))
    days = calendar.monthrange(year, month)[1]
    stub = invoices_pb2_grpc.InvoiceServiceStub(channel(args.server))
    recorded = failed = 0
    for day in range(1, days + 1):
        invoice_id = f"{args.account}-{args.month}-{day:02d}"
        request = invoices_pb2.RecordInvoiceRequest(
            account_id=args.account,
            request_id=f"record-month/{invoice_id}",
            invoice=invoices_pb2.Invoice(
                invoice_id=invoice_id,
                bill_from=args.bill_from,
                category=types_pb2.INVOICE_CATEGORY_MONTHLY_USAGE,
                billing_period=args.month,
                amount=types_pb2.Money(currency_code=args.currency,
                                       units=args.units_per_day)))
        try:
            # The service config sets the deadline and retries UNAVAILABLE.
            # A proxy in front of shards routes on x-poledger-account.
            invoice = stub.RecordInvoice(
                request, metadata=[("x-poledger-account", args.account)])
        except grpc.RpcError as e:
            failed += 1
            print(f"{invoice_id}: {e.code().name}: {e.details()}")
            continue
        recorded += 1
        a = invoice.association
        where = (f"{a.purchase_order_id} line {a.line_number}" if a.associated
                 else "no purchase order")
        print(f"{invoice_id}: position {invoice.position}, {where}")
    print(f"recorded {recorded} of {days} invoices, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
