"""End-to-end scenarios from the user's description, driven by an
independent client (python3-grpcio) against the built poledger-server on
127.0.0.1, with a manual clock and a fresh data directory per test.

Environment: POLEDGER_SERVER (the binary), PYTHONPATH (generated stubs).
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf import timestamp_pb2

from google.rpc import error_details_pb2
from google.rpc import status_pb2
from grpc_std import health_pb2
from grpc_std import health_pb2_grpc
from grpc_std import reflection_pb2
from grpc_std import reflection_pb2_grpc
from poledger.v1 import events_pb2
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc
from poledger.v1 import types_pb2

ACCOUNT = "123456789012"
AWS = "Amazon Web Services, Inc."
T = types_pb2


class Server:
    """poledger-server as a child process on 127.0.0.1, port picked by the
    kernel, stopped with SIGTERM (SIGKILL after 20 s). With --http-listen
    in `extra`, http_port is the HTTP listener's; with TLS flags, give the
    client's `credentials`."""

    def __init__(self, clock="manual:2026-02-01T00:00:00Z", extra=(),
                 credentials=None, data_dir=None):
        self.dir = tempfile.mkdtemp(prefix="poledger-e2e-")
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.proc = subprocess.Popen(
            [os.environ["POLEDGER_SERVER"], "--listen=127.0.0.1:0",
             "--data-dir=" + self.data_dir,
             "--clock=" + clock, "--heartbeat-seconds=0.5"] + list(extra),
            stderr=subprocess.PIPE, text=True)
        self.output = []
        self.http_port = None
        port = None
        deadline = time.time() + 30
        while port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.output.append(line)
            m = re.search(r"console on https?://127\.0\.0\.1:(\d+)", line)
            if m:
                self.http_port = int(m.group(1))
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        if port is None:
            self.stop()
            raise RuntimeError("server did not start: " + "".join(self.output))
        # Keep draining stderr so the server never blocks on it.
        threading.Thread(target=self._drain, daemon=True).start()
        self.address = "127.0.0.1:%d" % port
        if credentials is None:
            self.channel = grpc.insecure_channel(self.address)
        else:
            self.channel = grpc.secure_channel(self.address, credentials)
        grpc.channel_ready_future(self.channel).result(timeout=30)

    def _drain(self):
        for line in self.proc.stderr:
            self.output.append(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


def money(units, currency="USD"):
    return T.Money(currency_code=currency, units=units)


def new_po(po_id, amount=1000, line_type=T.LINE_ITEM_TYPE_ALL,
           contacts=True):
    po = po_pb2.PurchaseOrder(
        purchase_order_id=po_id, bill_from=[AWS], currency_code="USD",
        effective_month="2026-01", expiration_month="2026-12",
        line_items=[po_pb2.LineItem(
            line_number=1, type=line_type, start_month="2026-01",
            end_month="2026-12", balance_tracking=True, amount=money(amount),
            quantity=1)])
    if contacts:
        po.contacts.add(name="Finance", email="finance@example.com")
    return po


def error_info(err):
    """The ErrorInfo reason and BadRequest fields of an RpcError."""
    reason, fields = None, []
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(info):
                reason = info.reason
            elif detail.Unpack(bad):
                fields = [v.field for v in bad.field_violations]
    return reason, fields


class EndToEndTest(unittest.TestCase):

    def setUp(self):
        self.server = Server()
        ch = self.server.channel
        self.pos = po_grpc.PurchaseOrderServiceStub(ch)
        self.invoices = invoices_pb2_grpc.InvoiceServiceStub(ch)
        self.notifications = log_pb2_grpc.NotificationServiceStub(ch)
        self.log = log_pb2_grpc.EventLogServiceStub(ch)
        self.admin = log_pb2_grpc.AdminServiceStub(ch)

    def tearDown(self):
        self.server.channel.close()
        self.assertEqual(self.server.stop(), 0, "".join(self.server.output))

    def create(self, po):
        return self.pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order=po), timeout=10)

    def status(self, po_id, status):
        return self.pos.UpdatePurchaseOrderStatus(
            po_pb2.UpdatePurchaseOrderStatusRequest(
                account_id=ACCOUNT, purchase_order_id=po_id, status=status),
            timeout=10)

    def record(self, invoice_id, amount, category=T.INVOICE_CATEGORY_MONTHLY_USAGE):
        return self.invoices.RecordInvoice(invoices_pb2.RecordInvoiceRequest(
            account_id=ACCOUNT, invoice=invoices_pb2.Invoice(
                invoice_id=invoice_id, bill_from=AWS, category=category,
                billing_period="2026-03", amount=money(amount))), timeout=10)

    def test_health_reports_serving(self):
        health = health_pb2_grpc.HealthStub(self.server.channel)
        resp = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        self.assertEqual(resp.status, health_pb2.HealthCheckResponse.SERVING)

    def test_one_time_purchase_order(self):
        self.create(new_po("regular", 100000))
        self.create(new_po("one-time", 5000))
        self.status("regular", T.PURCHASE_ORDER_STATUS_SUSPENDED)
        inv = self.record("purchase", 4000,
                          T.INVOICE_CATEGORY_SUBSCRIPTION_PURCHASE)
        self.assertEqual(inv.association.purchase_order_id, "one-time")
        self.status("regular", T.PURCHASE_ORDER_STATUS_ACTIVE)
        self.status("one-time", T.PURCHASE_ORDER_STATUS_SUSPENDED)
        inv = self.record("usage", 100)
        self.assertEqual(inv.association.purchase_order_id, "regular")
        self.pos.DeletePurchaseOrder(po_pb2.DeletePurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order_id="one-time"), timeout=10)
        inv = self.record("usage-2", 100)
        self.assertEqual(inv.association.purchase_order_id, "regular")
        # The default answer counts the purchase orders by outcome; GetInvoice
        # in FULL lists each one.
        counts = {c.outcome: c.count
                  for c in inv.association.explanation.purchase_order_outcomes}
        self.assertEqual(counts, {events_pb2.CANDIDATE_OUTCOME_SELECTED: 1})
        self.assertEqual(len(inv.association.explanation.purchase_orders), 0)
        full = self.invoices.GetInvoice(invoices_pb2.GetInvoiceRequest(
            account_id=ACCOUNT, invoice_id="usage-2",
            view=invoices_pb2.INVOICE_VIEW_FULL), timeout=10)
        outcomes = {c.purchase_order_id: c.outcome
                    for c in full.association.explanation.purchase_orders}
        self.assertEqual(outcomes, {"regular": events_pb2.CANDIDATE_OUTCOME_SELECTED})

    def test_spend_forecast(self):
        self.create(new_po("po", 1000))
        got = self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order_id="po"), timeout=10)
        self.assertEqual(got.forecast.outlook,
                         po_pb2.SpendForecast.OUTLOOK_NO_SPEND)
        for period, amount in (("2026-01", 100), ("2026-02", 150),
                               ("2026-03", 250)):
            self.invoices.RecordInvoice(invoices_pb2.RecordInvoiceRequest(
                account_id=ACCOUNT, invoice=invoices_pb2.Invoice(
                    invoice_id="inv-" + period, bill_from=AWS,
                    category=T.INVOICE_CATEGORY_MONTHLY_USAGE,
                    billing_period=period, amount=money(amount))), timeout=10)
        got = self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order_id="po"), timeout=10)
        # 500 left at 166.666666 a month after March: July.
        expected = po_pb2.SpendForecast(
            outlook=po_pb2.SpendForecast.OUTLOOK_RUNS_OUT,
            burn_rate=T.Money(currency_code="USD", units=166,
                              nanos=666666000),
            months_averaged=3, runs_out_month="2026-07")
        self.assertEqual(got.line_items[0].forecast, expected)
        self.assertEqual(got.forecast, expected)
        listed = self.pos.ListPurchaseOrders(po_pb2.ListPurchaseOrdersRequest(
            account_id=ACCOUNT, view=po_pb2.PURCHASE_ORDER_VIEW_BASIC),
            timeout=10)
        self.assertEqual(listed.purchase_orders[0].forecast, expected)

    def test_balance_alert_arrives_on_the_notification_stream(self):
        self.create(new_po("po", 1000))
        stream = self.notifications.SubscribeNotifications(
            log_pb2.SubscribeNotificationsRequest(account_id=ACCOUNT),
            timeout=30)
        first = next(stream)
        self.assertTrue(first.HasField("caught_up"))
        self.record("inv-1", 200)   # 80% left: no alert.
        self.record("inv-2", 100)   # 70% left: the 75% alert.
        for msg in stream:
            if msg.HasField("notification"):
                n = msg.notification
                self.assertEqual(n.kind, events_pb2.NOTIFICATION_KIND_BALANCE_THRESHOLD)
                self.assertEqual(n.threshold_percent, 75)
                self.assertEqual(n.invoice_id, "inv-2")
                self.assertEqual((n.balance.units, n.balance.nanos,
                                  n.balance.currency_code), (700, 0, "USD"))
                self.assertEqual(n.total_value.units, 1000)
                self.assertEqual([r.email for r in n.recipients],
                                 ["finance@example.com"])
                break
        stream.cancel()

    def test_expiry_by_the_manual_clock(self):
        self.create(new_po("po"))
        self.admin.SetTime(log_pb2.SetTimeRequest(
            time=timestamp_pb2.Timestamp(seconds=1798761599)), timeout=10)  # 2026-12-31T23:59:59Z
        po = self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order_id="po"), timeout=10)
        self.assertEqual(po.status, T.PURCHASE_ORDER_STATUS_ACTIVE)
        self.admin.AdvanceTime(log_pb2.AdvanceTimeRequest(
            duration={"seconds": 1}), timeout=10)
        po = self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order_id="po"), timeout=10)
        self.assertEqual(po.status, T.PURCHASE_ORDER_STATUS_EXPIRED)
        listed = self.notifications.ListNotifications(
            log_pb2.ListNotificationsRequest(account_id=ACCOUNT), timeout=10)
        kinds = [n.kind for n in listed.notifications]
        self.assertEqual(kinds[-1], events_pb2.NOTIFICATION_KIND_EXPIRED)
        self.assertIn(events_pb2.NOTIFICATION_KIND_EXPIRATION_REMINDER, kinds)

    def test_marketplace_auto_create(self):
        resp = self.invoices.RecordMarketplaceTransaction(
            invoices_pb2.RecordMarketplaceTransactionRequest(
                account_id=ACCOUNT, transaction=invoices_pb2.MarketplaceTransaction(
                    transaction_id="tx-1", purchase_order_id="poc1",
                    bill_from=AWS, amount=money(1200), month="2026-03")),
            timeout=10)
        self.assertEqual(resp.outcome,
                         events_pb2.MARKETPLACE_OUTCOME_PURCHASE_ORDER_CREATED)
        po = self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order_id="poc1"), timeout=10)
        self.assertEqual(po.effective_month, "2026-03")
        self.assertEqual(po.expiration_month, "2027-02")
        self.assertEqual(len(po.contacts), 0)
        self.assertEqual(po.line_items[0].type,
                         T.LINE_ITEM_TYPE_AWS_MARKETPLACE_TRANSACTION)

    def test_limits(self):
        for i in range(100):
            self.create(new_po("po-%d" % i, contacts=False))
        with self.assertRaises(grpc.RpcError) as ctx:
            self.create(new_po("po-100"))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(error_info(ctx.exception)[0], "ACTIVE_PURCHASE_ORDER_LIMIT")
        po = new_po("too-many-contacts")
        for i in range(10):
            po.contacts.add(email="c%d@example.com" % i)
        with self.assertRaises(grpc.RpcError) as ctx:
            self.create(po)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error_info(ctx.exception),
                         ("INVALID_FIELD", ["purchase_order.contacts"]))

    def test_reflection_lists_and_describes(self):
        stub = reflection_pb2_grpc.ServerReflectionStub(self.server.channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="poledger.v1.InvoiceService"),
        ]
        responses = list(stub.ServerReflectionInfo(iter(requests), timeout=10))
        services = {s.name for s in responses[0].list_services_response.service}
        for name in ("poledger.v1.PurchaseOrderService", "poledger.v1.InvoiceService",
                     "poledger.v1.NotificationService", "poledger.v1.EventLogService",
                     "poledger.v1.AdminService", "grpc.health.v1.Health"):
            self.assertIn(name, services)
        methods = {}
        for raw in responses[1].file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            for svc in fd.service:
                for m in svc.method:
                    methods["%s.%s" % (svc.name, m.name)] = m
        record = methods["InvoiceService.RecordInvoice"]
        self.assertEqual(record.input_type, ".poledger.v1.RecordInvoiceRequest")
        self.assertEqual(record.output_type, ".poledger.v1.Invoice")


if __name__ == "__main__":
    unittest.main()
