"""A full disk, as an operator meets it: poledger-server on a 64 MiB tmpfs
mounted by the test (root only; skipped elsewhere), filled by 4 writers
sending 500-invoice batches. While the disk is full: health NOT_SERVING,
writes UNAVAILABLE with reason STORAGE_UNAVAILABLE and RetryInfo, reads
answer, one error line, a log of bounded size, the metrics say so. Once
space is freed writes resume with no restart; every acknowledged invoice
is there afterwards and poledger-audit verify passes.

Prints the figures (time to NOT_SERVING, log lines and bytes, time to
resume) for the issue's note.

Environment: POLEDGER_SERVER, POLEDGER_AUDIT (the binaries), PYTHONPATH.
"""

import json
import os
import re
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

from e2e_test import AWS, Server, money, new_po
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from grpc_std import health_pb2
from grpc_std import health_pb2_grpc
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc
from poledger.v1 import types_pb2 as T

WRITERS = 4
BATCH = 500
ACCOUNTS = ["10000000000%d" % i for i in range(WRITERS)]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


def details_of(status):
    """(reason, retry delay in seconds or None) of a google.rpc.Status."""
    reason, delay = None, None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            reason = info.reason
        elif detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
            delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return reason, delay


def batch(account, ids, validate_only=False):
    """A BatchRecordInvoicesRequest of 1-unit invoices `ids` on `account`."""
    return invoices_pb2.BatchRecordInvoicesRequest(
        validate_only=validate_only, requests=[
            invoices_pb2.RecordInvoiceRequest(
                account_id=account, invoice=invoices_pb2.Invoice(
                    invoice_id=i, bill_from=AWS,
                    category=T.INVOICE_CATEGORY_MONTHLY_USAGE,
                    billing_period="2026-03", amount=money(1)))
            for i in ids])


def status_of(err):
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return status_pb2.Status(code=err.code().value[0])


def wait_for_health(health, wanted, deadline):
    """The monotonic time health first answered `wanted`, or None by
    `deadline`."""
    while time.monotonic() < deadline:
        if health.Check(health_pb2.HealthCheckRequest(),
                        timeout=10).status == wanted:
            return time.monotonic()
        time.sleep(0.005)
    return None


class Tmpfs:
    def __init__(self, size):
        self.path = tempfile.mkdtemp(prefix="poledger-full-")
        self.mounted = os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs",
             self.path], capture_output=True).returncode == 0

    def close(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], check=False)
        os.rmdir(self.path)


class FullDiskTest(unittest.TestCase):
    def setUp(self):
        self.fs = Tmpfs(64 << 20)
        if not self.fs.mounted:
            self.fs.close()
            self.skipTest("mounting a tmpfs needs root")
        self.addCleanup(self.fs.close)
        self.ballast = os.path.join(self.fs.path, "ballast")
        with open(self.ballast, "wb") as f:
            for _ in range(28):
                f.write(b"\0" * (1 << 20))

    def metric(self, url, name, labels=""):
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)),
                      text, re.M)
        return float(m.group(1)) if m else None

    def test_full_disk_refuses_writes_then_resumes_once_space_is_freed(self):
        data_dir = os.path.join(self.fs.path, "data")
        server = Server(clock="real", data_dir=data_dir,
                        extra=["--log-format=json",
                               "--metrics-listen=127.0.0.1:0"])
        try:
            self.run_scenario(server, data_dir)
        except Exception:
            print("server's last lines:\n" + "".join(server.output[-20:]))
            raise
        finally:
            server.stop()
        self.check_after(server, data_dir)

    def run_scenario(self, server, data_dir):
        metrics_url = None
        for line in list(server.output):
            m = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", line)
            if m:
                metrics_url = m.group(1)
        self.assertIsNotNone(metrics_url)
        health = health_pb2_grpc.HealthStub(server.channel)
        pos = po_grpc.PurchaseOrderServiceStub(server.channel)
        invoices = invoices_pb2_grpc.InvoiceServiceStub(server.channel)
        for account in ACCOUNTS:
            pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
                account_id=account, purchase_order=new_po("po-1", 10**12),
                request_id="po-" + account), timeout=10)

        acked = {a: [] for a in ACCOUNTS}
        refusals = []
        first_refusal = []
        stop = threading.Event()
        lock = threading.Lock()

        def writer(w):
            account = ACCOUNTS[w]
            n = 0
            while not stop.is_set():
                ids = ["inv-%d-%d" % (w, n + i) for i in range(BATCH)]
                try:
                    resp = invoices.BatchRecordInvoices(batch(account, ids),
                                                        timeout=30)
                except grpc.RpcError as e:
                    with lock:
                        if not first_refusal:
                            first_refusal.append(time.monotonic())
                        refusals.append(status_of(e))
                    time.sleep(0.001)
                    continue
                refused = False
                for invoice_id, result in zip(ids, resp.results):
                    if result.HasField("invoice"):
                        with lock:
                            acked[account].append(invoice_id)
                    else:
                        refused = True
                        with lock:
                            if not first_refusal:
                                first_refusal.append(time.monotonic())
                            refusals.append(result.error)
                if not refused:
                    n += BATCH
                # A refused batch is sent again as it was: its ids stay.

        # A stream open throughout: it goes on while writes cannot.
        stream = log_pb2_grpc.NotificationServiceStub(
            server.channel).SubscribeNotifications(
                log_pb2.SubscribeNotificationsRequest(account_id=ACCOUNTS[0]),
                timeout=300)
        stream_times = []

        def follow():
            try:
                for _ in stream:
                    stream_times.append(time.monotonic())
            except grpc.RpcError:
                pass

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        threads = [threading.Thread(target=writer, args=(w,))
                   for w in range(WRITERS)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 120
            while not first_refusal and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertTrue(first_refusal, "the disk never filled")
            not_serving_at = wait_for_health(
                health, health_pb2.HealthCheckResponse.NOT_SERVING, deadline)
            self.assertIsNotNone(not_serving_at, "health stayed SERVING")
            # The writers keep hammering the full disk for a while.
            time.sleep(8)
            self.assertEqual(
                health.Check(health_pb2.HealthCheckRequest(),
                             timeout=10).status,
                health_pb2.HealthCheckResponse.NOT_SERVING)
            self.assertEqual(self.metric(metrics_url,
                                         "poledger_eventstore_write_failed"), 1)
            self.assertEqual(self.metric(
                metrics_url, "poledger_eventstore_write_failures_total",
                '{cause="no_space"}'), 1)
            # Reads go on.
            with lock:
                some = acked[ACCOUNTS[0]][len(acked[ACCOUNTS[0]]) // 2]
            got = invoices.GetInvoice(invoices_pb2.GetInvoiceRequest(
                account_id=ACCOUNTS[0], invoice_id=some), timeout=10)
            self.assertEqual(got.invoice_id, some)
            log_pb2_grpc.AdminServiceStub(server.channel).GetServerInfo(
                log_pb2.GetServerInfoRequest(), timeout=10)

            with lock:
                seen = list(refusals)
            self.assertGreater(len(seen), 1000)
            for status in seen[:50] + seen[-50:]:
                self.assertEqual(status.code, UNAVAILABLE, status)
                reason, delay = details_of(status)
                self.assertEqual(reason, "STORAGE_UNAVAILABLE", status)
                self.assertIsNotNone(delay, status)
                self.assertIn("No space left on device", status.message)

            self.assertTrue(any(not_serving_at < t for t in stream_times),
                            "the stream stopped with the writes")
            freed_at = time.monotonic()
            os.unlink(self.ballast)
            resumed_at = wait_for_health(
                health, health_pb2.HealthCheckResponse.SERVING, freed_at + 60)
            self.assertIsNotNone(resumed_at, "writes did not resume")
            with lock:
                before = sum(len(v) for v in acked.values())
            # One more batch each at most: the freed space must stay free
            # enough for the restart below.
            while time.monotonic() < resumed_at + 30:
                with lock:
                    if sum(len(v) for v in acked.values()) > before:
                        break
                time.sleep(0.001)
        finally:
            stop.set()
            for t in threads:
                t.join()
            stream.cancel()
        after = sum(len(v) for v in acked.values())
        self.assertGreater(after, before, "no write acknowledged after resume")
        self.assertEqual(self.metric(metrics_url,
                                     "poledger_eventstore_write_failed"), 0)
        self.assertEqual(self.metric(
            metrics_url, "poledger_eventstore_write_resumes_total"), 1)
        self.acked = acked
        self.figures = {
            "seconds_to_not_serving": round(not_serving_at - first_refusal[0], 3),
            "refused_calls_and_items": len(refusals),
            "seconds_to_resume_after_free": round(resumed_at - freed_at, 3),
            "acknowledged_invoices": after,
        }

    def check_after(self, server, data_dir):
        lines = [l for l in server.output if l.strip()]
        records = [json.loads(l) for l in lines]
        events = [r["event"] for r in records]
        self.assertEqual(events.count("storage_failed"), 1)
        failed = records[events.index("storage_failed")]
        self.assertEqual(failed["level"], "error")
        self.assertIn("No space left on device", failed["msg"])
        self.assertEqual(events.count("storage_resumed"), 1)
        self.assertIn("log_suppressed", events)
        log_bytes = sum(len(l) for l in lines)
        self.assertLess(log_bytes, 2 << 20)
        self.figures["log_lines"] = len(lines)
        self.figures["log_bytes"] = log_bytes
        self.figures["write_refused_lines"] = events.count("write_refused")

        # The log is whole, and every acknowledged invoice is in it with
        # its content: a preview of the same batch finds each recorded.
        audit = subprocess.run(
            [os.environ["POLEDGER_AUDIT"], "verify", "--data-dir=" + data_dir],
            capture_output=True, text=True, timeout=300)
        self.assertEqual(audit.returncode, 0, audit.stdout + audit.stderr)
        restarted = Server(clock="real", data_dir=data_dir)
        try:
            invoices = invoices_pb2_grpc.InvoiceServiceStub(restarted.channel)
            lost = 0
            for account, ids in self.acked.items():
                for start in range(0, len(ids), 1000):
                    chunk = ids[start:start + 1000]
                    resp = invoices.BatchRecordInvoices(
                        batch(account, chunk, validate_only=True), timeout=60)
                    lost += sum(1 for r in resp.results
                                if not r.already_recorded)
            self.assertEqual(lost, 0)
        finally:
            restarted.stop()
        self.figures["lost"] = lost
        print("full disk figures:", json.dumps(self.figures))


if __name__ == "__main__":
    unittest.main()
