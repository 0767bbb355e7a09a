"""The examples under clients/examples/, run against a real server.

Environment: POLEDGER_SERVER (the binary), PYTHONPATH (generated stubs),
POLEDGER_EXAMPLES (clients/examples), POLEDGER_FOLLOW_NOTIFICATIONS (the
built C++ example).
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc
from poledger.v1 import types_pb2

ACCOUNT = "123456789012"
AWS = "Amazon Web Services, Inc."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordMonthTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="poledger-example-")
        self.port = free_port()
        self.server = None

    def tearDown(self):
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_server(self):
        self.server = subprocess.Popen(
            [os.environ["POLEDGER_SERVER"], f"--listen=127.0.0.1:{self.port}",
             "--data-dir=" + os.path.join(self.dir, "data")],
            stderr=subprocess.DEVNULL)

    def run_example(self, wait=True):
        proc = subprocess.Popen(
            [sys.executable,
             os.path.join(os.environ["POLEDGER_EXAMPLES"], "record_month.py"),
             f"--server=127.0.0.1:{self.port}", "--account=123456789012",
             "--month=2026-03"],
            stdout=subprocess.PIPE, text=True)
        return proc

    def invoice_events(self):
        stub = log_pb2_grpc.EventLogServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{self.port}"))
        ids = []
        request = log_pb2.ReadEventsRequest(page_size=1000,
                                            event_types=["invoice_recorded"])
        response = stub.ReadEvents(request, timeout=10)
        for e in response.events:
            ids.append(e.payload.invoice_recorded.invoice.invoice_id)
        return ids, response.head_position

    def test_retries_until_the_server_is_up_and_a_rerun_writes_nothing(self):
        # The example starts first: its calls fail with UNAVAILABLE and the
        # service config's retries carry them until the server listens.
        example = self.run_example()
        time.sleep(0.3)
        self.start_server()
        out, _ = example.communicate(timeout=120)
        self.assertEqual(example.returncode, 0, out)
        self.assertIn("recorded 31 of 31 invoices, 0 failed", out)
        ids, head = self.invoice_events()
        self.assertEqual(len(ids), 31)
        self.assertEqual(len(set(ids)), 31)

        # Run again: every write is a retry of one already made.
        again = self.run_example()
        out, _ = again.communicate(timeout=120)
        self.assertEqual(again.returncode, 0, out)
        self.assertIn("recorded 31 of 31 invoices, 0 failed", out)
        ids_after, head_after = self.invoice_events()
        self.assertEqual(head_after, head)
        self.assertEqual(sorted(ids_after), sorted(ids))


class FollowNotificationsTest(unittest.TestCase):
    """clients/examples/follow_notifications.cc across a server restart."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="poledger-example-")
        self.port = free_port()
        self.server = None

    def tearDown(self):
        self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_server(self):
        self.server = subprocess.Popen(
            [os.environ["POLEDGER_SERVER"], f"--listen=127.0.0.1:{self.port}",
             "--data-dir=" + os.path.join(self.dir, "data"),
             "--clock=manual:2026-02-01T00:00:00Z"],
            stderr=subprocess.DEVNULL)
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        self.pos = po_grpc.PurchaseOrderServiceStub(channel)
        self.invoices = invoices_pb2_grpc.InvoiceServiceStub(channel)

    def stop_server(self):
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=30)

    def call(self, fn, request):
        # Until the ledger is loaded the server answers UNAVAILABLE.
        for _ in range(100):
            try:
                return fn(request, timeout=10)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                time.sleep(0.05)
        raise AssertionError("server not ready")

    def raise_balance_alert(self, po_id):
        """A tracked line of 1,000 USD and an invoice of 300: the balance
        falls below 75%, which raises one notification."""
        self.call(self.pos.CreatePurchaseOrder, po_pb2.CreatePurchaseOrderRequest(
            account_id=ACCOUNT,
            purchase_order=po_pb2.PurchaseOrder(
                purchase_order_id=po_id, bill_from=[AWS], currency_code="USD",
                effective_month="2026-01", expiration_month="2026-12",
                line_items=[po_pb2.LineItem(
                    line_number=1, type=types_pb2.LINE_ITEM_TYPE_ALL,
                    start_month="2026-01", end_month="2026-12",
                    balance_tracking=True,
                    amount=types_pb2.Money(currency_code="USD", units=1000),
                    quantity=1)])))
        self.call(self.invoices.RecordInvoice, invoices_pb2.RecordInvoiceRequest(
            account_id=ACCOUNT,
            invoice=invoices_pb2.Invoice(
                invoice_id="INV-" + po_id, bill_from=AWS,
                category=types_pb2.INVOICE_CATEGORY_MONTHLY_USAGE,
                billing_period="2026-02",
                amount=types_pb2.Money(currency_code="USD", units=300))))

    def test_resumes_after_a_server_restart_without_repeating(self):
        checkpoint = os.path.join(self.dir, "position")
        self.start_server()
        self.raise_balance_alert("PO-1")
        follower = subprocess.Popen(
            [os.environ["POLEDGER_FOLLOW_NOTIFICATIONS"],
             f"--server=127.0.0.1:{self.port}", f"--account={ACCOUNT}",
             f"--checkpoint={checkpoint}", "--count=2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = follower.stdout.readline().split()
        self.assertEqual(first[1:], ["NOTIFICATION_KIND_BALANCE_THRESHOLD", "PO-1"])
        # Restart the server under the follower, then raise another.
        self.stop_server()
        self.start_server()
        self.raise_balance_alert("PO-2")
        second = follower.stdout.readline().split()
        if not second:
            follower.wait(timeout=30)
            self.fail("the follower stopped: " + follower.stderr.read())
        self.assertEqual(second[1:], ["NOTIFICATION_KIND_BALANCE_THRESHOLD", "PO-2"])
        self.assertGreater(int(second[0]), int(first[0]))
        self.assertEqual(follower.wait(timeout=30), 0)
        with open(checkpoint) as f:
            self.assertEqual(int(f.read()), int(second[0]))


if __name__ == "__main__":
    unittest.main()
