"""The examples under clients/examples/, run against a real server.

Environment: POLEDGER_SERVER (the binary), PYTHONPATH (generated stubs),
POLEDGER_EXAMPLES (clients/examples).
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

from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc


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


if __name__ == "__main__":
    unittest.main()
