"""Prometheus metrics: a running server scraped under load, the text parsed
with Debian's python3-prometheus-client, and the values checked against
what the test did (exact counts) and against the log head.

Environment: POLEDGER_SERVER (the binary), PYTHONPATH (generated stubs).
"""

import re
import threading
import time
import unittest
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from e2e_test import ACCOUNT, AWS, Server, money, new_po
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc
from poledger.v1 import types_pb2 as T

RECORD = "poledger.v1.InvoiceService/RecordInvoice"
CREATE = "poledger.v1.PurchaseOrderService/CreatePurchaseOrder"
GET = "poledger.v1.PurchaseOrderService/GetPurchaseOrder"


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(extra=["--metrics-listen=127.0.0.1:0"])
        url = None
        for line in self.server.output:
            m = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", line)
            if m:
                url = m.group(1)
        self.assertIsNotNone(url, "".join(self.server.output))
        self.url = url
        self.pos = po_grpc.PurchaseOrderServiceStub(self.server.channel)
        self.invoices = invoices_pb2_grpc.InvoiceServiceStub(self.server.channel)

    def tearDown(self):
        self.server.stop()

    def scrape(self):
        """{(name, frozenset(labels)): value} of every sample."""
        text = urllib.request.urlopen(self.url, timeout=10).read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return samples

    @staticmethod
    def get(samples, name, **labels):
        return samples.get((name, frozenset(labels.items())), 0.0)

    def invoice(self, account, invoice_id, amount=10):
        return self.invoices.RecordInvoice(invoices_pb2.RecordInvoiceRequest(
            account_id=account, invoice=invoices_pb2.Invoice(
                invoice_id=invoice_id, bill_from=AWS,
                category=T.INVOICE_CATEGORY_MONTHLY_USAGE,
                billing_period="2026-03", amount=money(amount))), timeout=10)

    def test_counts_move_by_exactly_what_was_done(self):
        before = self.scrape()
        head_before = self.get(before, "poledger_log_head_position")
        for account, po in ((ACCOUNT, "po-1"), (ACCOUNT, "po-2"), ("222", "po-1")):
            self.pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
                account_id=account, purchase_order=new_po(po, amount=100000)),
                timeout=10)
        for i in range(20):
            self.invoice(ACCOUNT, "inv-%d" % i)
        with self.assertRaises(grpc.RpcError) as bad:
            self.invoice(ACCOUNT, "", amount=10)  # No invoice id.
        self.assertEqual(bad.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as missing:
            self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
                account_id=ACCOUNT, purchase_order_id="nope"), timeout=10)
        self.assertEqual(missing.exception.code(), grpc.StatusCode.NOT_FOUND)
        after = self.scrape()

        def delta(name, **labels):
            return self.get(after, name, **labels) - self.get(before, name, **labels)

        self.assertEqual(delta("poledger_grpc_requests_total", method=RECORD, code="OK"), 20)
        self.assertEqual(delta("poledger_grpc_requests_total", method=RECORD,
                               code="INVALID_ARGUMENT"), 1)
        self.assertEqual(delta("poledger_grpc_requests_total", method=CREATE, code="OK"), 3)
        self.assertEqual(delta("poledger_grpc_requests_total", method=GET,
                               code="NOT_FOUND"), 1)
        self.assertEqual(delta("poledger_grpc_request_duration_seconds_count",
                               method=RECORD), 21)
        self.assertGreater(delta("poledger_grpc_request_duration_seconds_sum",
                                 method=RECORD), 0)
        self.assertEqual(self.get(after, "poledger_grpc_in_flight_requests",
                                  method=RECORD), 0)
        # The store: 23 appends (one per command that wrote), and exactly the
        # events the head moved by.
        head_after = self.get(after, "poledger_log_head_position")
        self.assertGreaterEqual(head_after - head_before, 23)
        self.assertEqual(delta("poledger_eventstore_events_total"),
                         head_after - head_before)
        self.assertEqual(delta("poledger_eventstore_appends_total"), 23)
        self.assertEqual(delta("poledger_eventstore_commit_batch_appends_sum"), 23)
        self.assertGreater(delta("poledger_eventstore_written_bytes_total"), 0)
        self.assertGreater(delta("poledger_eventstore_commit_duration_seconds_count"), 0)
        self.assertEqual(self.get(after, "poledger_eventstore_write_failed"), 0)
        self.assertEqual(self.get(after, "poledger_accounts"), 2)
        self.assertEqual(self.get(after, "poledger_accounts_loaded"), 1)
        # No snapshot ran: the 20 invoices are held in memory until one does.
        self.assertEqual(delta("poledger_invoices_in_memory"), 20)
        self.assertEqual(self.get(after, "poledger_purchase_orders", status="ACTIVE"), 3)
        self.assertEqual(self.get(after, "poledger_purchase_orders", status="SUSPENDED"), 0)
        self.assertEqual(self.get(after, "poledger_snapshot_age_events"),
                         head_after - self.get(after, "poledger_snapshot_position"))

    def test_streams_by_method_and_scheduler_lag(self):
        self.pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order=new_po("po")), timeout=10)
        stream = log_pb2_grpc.NotificationServiceStub(
            self.server.channel).SubscribeNotifications(
                log_pb2.SubscribeNotificationsRequest(account_id=ACCOUNT),
                timeout=30)
        self.assertTrue(next(stream).HasField("caught_up"))
        during = self.scrape()
        self.assertEqual(self.get(during, "poledger_open_streams_by_method",
                                  method="NotificationService.SubscribeNotifications"), 1)
        self.assertEqual(self.get(during, "poledger_open_streams_by_method",
                                  method="EventLogService.SubscribeEvents"), 0)
        self.assertEqual(self.get(during, "poledger_open_streams"), 1)
        # The manual clock ticks as it moves: nothing is overdue.
        self.assertEqual(self.get(during, "poledger_scheduler_lag_seconds"), 0)
        stream.cancel()
        deadline = time.time() + 10
        while time.time() < deadline:
            after = self.scrape()
            if self.get(after, "poledger_open_streams_by_method",
                        method="NotificationService.SubscribeNotifications") == 0:
                break
            time.sleep(0.05)
        self.assertEqual(self.get(after, "poledger_open_streams_by_method",
                                  method="NotificationService.SubscribeNotifications"), 0)

    def wait_for_lag(self, predicate):
        """The slowest stream's lag once `predicate` holds (10 s at most)."""
        deadline = time.time() + 10
        while True:
            lag = self.get(self.scrape(), "poledger_stream_slowest_lag_events")
            if predicate(lag) or time.time() > deadline:
                return lag
            time.sleep(0.05)

    def test_slowest_stream_lag_rises_while_a_client_stops_reading(self):
        self.pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order=new_po("po", amount=10**9)),
            timeout=10)
        self.assertEqual(self.get(self.scrape(), "poledger_stream_slowest_lag_events"), 0)
        # A small receive window: the server's writes to this client wait
        # as soon as it stops reading.
        slow_channel = grpc.insecure_channel(self.server.address, options=[
            ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)])
        log = log_pb2_grpc.EventLogServiceStub(slow_channel)
        stream = log.SubscribeEvents(log_pb2.SubscribeEventsRequest(), timeout=60)
        last = 0
        for msg in stream:
            if msg.HasField("event"):
                last = msg.event.position
            if msg.HasField("caught_up"):
                break
        self.assertEqual(self.wait_for_lag(lambda lag: lag == 0), 0)
        # 1,000 invoices (~400 bytes each as events) while it reads nothing.
        for i in range(1000):
            self.invoices.RecordInvoice(invoices_pb2.RecordInvoiceRequest(
                account_id=ACCOUNT, invoice=invoices_pb2.Invoice(
                    invoice_id="slow-%d" % i, bill_from=AWS,
                    category=T.INVOICE_CATEGORY_MONTHLY_USAGE,
                    billing_period="2026-03", amount=money(1),
                    tax_registration_number="x" * 50)), timeout=10)
        head = self.get(self.scrape(), "poledger_log_head_position")
        lag = self.get(self.scrape(), "poledger_stream_slowest_lag_events")
        self.assertGreaterEqual(lag, 500)
        self.assertLessEqual(lag, head - last)
        # It reads on to the head: the lag falls back to 0.
        for msg in stream:
            if msg.HasField("event"):
                last = msg.event.position
                if last == head:
                    break
        self.assertEqual(last, head)
        self.assertEqual(self.wait_for_lag(lambda lag: lag == 0), 0)
        stream.cancel()
        slow_channel.close()

    def test_scrapes_under_write_load(self):
        self.pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order=new_po("po", amount=10**9)), timeout=10)
        before = self.scrape()
        acked = []
        lock = threading.Lock()

        def writer(w):
            # An account each: the ledger runs one account's commands one at
            # a time, so only different accounts share group commits.
            for i in range(150):
                self.invoice("acct-%d" % w, "w%d-%d" % (w, i))
                with lock:
                    acked.append(1)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
        for t in threads:
            t.start()
        scrapes = 0
        while any(t.is_alive() for t in threads):
            during = self.scrape()  # Parses while 16 clients write.
            self.assertIn(("poledger_log_head_position", frozenset()), during)
            scrapes += 1
            time.sleep(0.05)
        for t in threads:
            t.join()
        after = self.scrape()
        self.assertGreater(scrapes, 1)
        self.assertEqual(len(acked), 16 * 150)
        ok = (self.get(after, "poledger_grpc_requests_total", method=RECORD, code="OK")
              - self.get(before, "poledger_grpc_requests_total", method=RECORD, code="OK"))
        self.assertEqual(ok, 16 * 150)
        head = (self.get(after, "poledger_log_head_position")
                - self.get(before, "poledger_log_head_position"))
        events = (self.get(after, "poledger_eventstore_events_total")
                  - self.get(before, "poledger_eventstore_events_total"))
        self.assertEqual(events, head)
        appends = (self.get(after, "poledger_eventstore_appends_total")
                   - self.get(before, "poledger_eventstore_appends_total"))
        self.assertEqual(appends, 16 * 150)
        # Concurrent writers share group commits: fewer commits than appends.
        commits = (self.get(after, "poledger_eventstore_commit_batch_appends_count")
                   - self.get(before, "poledger_eventstore_commit_batch_appends_count"))
        self.assertLess(commits, appends)


if __name__ == "__main__":
    unittest.main()
