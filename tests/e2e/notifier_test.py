"""poledger-notifier against a real SMTP server on 127.0.0.1 (Debian's
python3-aiosmtpd) and the built poledger-server on a manual clock.

Environment: POLEDGER_SERVER, POLEDGER_NOTIFIER, PYTHONPATH (stubs).
"""

import email
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from aiosmtpd.controller import Controller
from google.protobuf import timestamp_pb2

from e2e_test import ACCOUNT, AWS, Server, money, new_po
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc


class Mailbox:
    """An aiosmtpd handler that keeps every accepted message."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos),
                                  email.message_from_bytes(envelope.content)))
        return "250 OK"

    def wait_for(self, count, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotifierTest(unittest.TestCase):

    def setUp(self):
        self.server = Server(clock="manual:2026-11-20T00:00:00Z")
        ch = self.server.channel
        self.pos = po_grpc.PurchaseOrderServiceStub(ch)
        self.invoices = invoices_pb2_grpc.InvoiceServiceStub(ch)
        self.admin = log_pb2_grpc.AdminServiceStub(ch)
        self.mailbox = Mailbox()
        self.smtp_port = free_port()
        self.smtp = None
        self.notifier = None
        self.dir = tempfile.mkdtemp(prefix="poledger-notifier-")
        self.log = open(os.path.join(self.dir, "notifier.log"), "w")

    def tearDown(self):
        self.stop_notifier()
        if self.smtp is not None:
            self.smtp.stop()
        self.server.channel.close()
        self.server.stop()
        self.log.close()

    def start_smtp(self):
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1",
                               port=self.smtp_port)
        self.smtp.start()

    def start_notifier(self):
        self.notifier = subprocess.Popen(
            [os.environ["POLEDGER_NOTIFIER"],
             "--server=" + self.server.address,
             "--smtp-url=smtp://127.0.0.1:%d" % self.smtp_port,
             "--from=poledger@example.com",
             "--checkpoint=" + os.path.join(self.dir, "checkpoint"),
             "--retry-initial-ms=100", "--retry-max-ms=400"],
            stderr=self.log)

    def stop_notifier(self):
        if self.notifier is not None and self.notifier.poll() is None:
            self.notifier.send_signal(signal.SIGTERM)
            self.assertEqual(self.notifier.wait(timeout=20), 0)
        self.notifier = None

    def create(self, po):
        self.pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
            account_id=ACCOUNT, purchase_order=po), timeout=10)

    def record(self, invoice_id, amount):
        self.invoices.RecordInvoice(invoices_pb2.RecordInvoiceRequest(
            account_id=ACCOUNT, invoice=invoices_pb2.Invoice(
                invoice_id=invoice_id, bill_from=AWS,
                category=1, billing_period="2026-11",
                amount=money(amount))), timeout=10)

    def alert(self, po_id):
        """A purchase order whose single invoice takes it below 75%."""
        po = new_po(po_id, 1000)
        po.contacts.add(name="Buyer", email="buyer@example.com")
        self.create(po)
        self.record("inv-" + po_id, 300)

    def test_alert_and_reminder_arrive_with_recipients_and_content(self):
        self.start_smtp()
        self.start_notifier()
        self.alert("PO-1")
        silent = new_po("PO-quiet", 1000, contacts=False)
        self.create(silent)
        self.record("inv-quiet", 900)      # An alert without recipients.
        messages = self.mailbox.wait_for(1)
        self.assertEqual(len(messages), 1)
        rcpts, msg = messages[0]
        self.assertEqual(sorted(rcpts), ["buyer@example.com", "finance@example.com"])
        self.assertIn("PO-1", msg["Subject"])
        self.assertIn("below 75%", msg["Subject"])
        body = msg.get_payload()
        self.assertIn("Account: " + ACCOUNT, body)
        self.assertIn("Balance: 700.00 USD of 1000.00 USD", body)
        self.assertIn("What you can do", body)
        self.assertTrue(msg["Message-ID"].startswith("<poledger."))
        # The expiration reminder ("one month before" Dec 31 is Nov 30).
        self.admin.SetTime(log_pb2.SetTimeRequest(
            time=timestamp_pb2.Timestamp(seconds=1796083200)), timeout=10)  # 2026-12-01
        messages = self.mailbox.wait_for(2)
        self.assertEqual(len(messages), 2)
        reminder = messages[1][1]
        self.assertIn("expires on 2026-12-31", reminder["Subject"])
        self.assertIn("one month before", reminder.get_payload())
        # "On the expiration date" is not planned (the PO was created more
        # than a month ahead); expiry itself is announced.
        self.admin.SetTime(log_pb2.SetTimeRequest(
            time=timestamp_pb2.Timestamp(seconds=1798761600)), timeout=10)  # 2027-01-01
        messages = self.mailbox.wait_for(3)
        expired = [m for _, m in messages if "has expired" in m["Subject"]]
        self.assertEqual(len(expired), 1)
        self.assertIn("PO-1", expired[0]["Subject"])
        time.sleep(0.5)
        # PO-quiet has no contacts: its alert, reminder and expiry send nothing.
        self.assertEqual(len(self.mailbox.messages), 3)

    def test_an_erased_recipient_is_never_mailed(self):
        """README "Personal data": an erased address gets no mail, from
        notifications raised before its erasure or after."""
        self.alert("PO-1")                 # To buyer@ and finance@.
        self.admin.ErasePersonalData(log_pb2.ErasePersonalDataRequest(
            email="buyer@example.com"), timeout=10)
        only_buyer = new_po("PO-2", 1000, contacts=False)
        only_buyer.contacts.add(name="Buyer", email="buyer@example.com")
        self.create(only_buyer)
        self.record("inv-PO-2", 300)       # Raised to buyer@ alone.
        self.admin.ErasePersonalData(log_pb2.ErasePersonalDataRequest(
            email="buyer@example.com"), timeout=10)
        self.start_smtp()
        self.start_notifier()
        messages = self.mailbox.wait_for(1)
        time.sleep(1)
        self.assertEqual(len(self.mailbox.messages), 1)
        rcpts, msg = messages[0]
        self.assertEqual(rcpts, ["finance@example.com"])
        self.assertIn("PO-1", msg["Subject"])
        self.assertNotIn("buyer@example.com", msg.as_string())

    def test_restart_neither_loses_nor_repeats_mail(self):
        self.start_smtp()
        for i in range(6):
            self.alert("PO-%d" % i)
        self.start_notifier()
        self.mailbox.wait_for(2)
        self.stop_notifier()               # Mid-way.
        for i in range(6, 8):
            self.alert("PO-%d" % i)
        self.start_notifier()
        messages = self.mailbox.wait_for(8)
        time.sleep(0.5)                    # Let any duplicate show up.
        ids = [m["Message-ID"] for _, m in self.mailbox.messages]
        self.assertEqual(len(ids), 8)
        self.assertEqual(len(set(ids)), 8)

    def test_smtp_down_then_up(self):
        self.start_notifier()              # No SMTP server yet.
        self.alert("PO-1")
        time.sleep(1.0)                    # The notifier retries meanwhile.
        self.assertEqual(len(self.mailbox.messages), 0)
        self.start_smtp()
        messages = self.mailbox.wait_for(1)
        self.assertEqual(len(messages), 1)
        self.assertIn("PO-1", messages[0][1]["Subject"])


if __name__ == "__main__":
    unittest.main()
