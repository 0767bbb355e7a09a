"""Synchronous followers: a leader with --sync-followers=1 and two
followers (--follow --sync-follower), started by the test on 127.0.0.1.

With one follower paused (SIGSTOP), writes go on through the other; with
both paused, a write fails UNAVAILABLE NOT_REPLICATED before its deadline,
naming both, and nobody sees it (not the leader's reads, not its log's
head) until the followers are back, when it is committed and shown once.
kill -9 of the leader at random moments under writers (POLEDGER_SYNC_KILLS
times, 3 by default; POLEDGER_SYNC_SEED): every invoice it acknowledged is
in a follower's log. Leader and followers end with equal logs.

Environment: POLEDGER_SERVER, POLEDGER_AUDIT, PYTHONPATH (generated stubs
and tests/e2e).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

import grpc

from cluster_test import error_info, free_port, invoice_request
from grpc_std import health_pb2
from grpc_std import health_pb2_grpc
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from replica_test import Node, Writers, until

SYNC_TIMEOUT_SECONDS = 2


class SyncFollowersTest(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="poledger-sync-")
        self.metrics_port = free_port()
        self.leader = Node(self.root, "leader", [
            "--sync-followers=1",
            "--sync-timeout=%ds" % SYNC_TIMEOUT_SECONDS,
            "--snapshot-every-events=500",
            "--metrics-listen=127.0.0.1:%d" % self.metrics_port]).start()
        self.followers = [
            Node(self.root, name, ["--follow=" + self.leader.address,
                                   "--sync-follower", "--node-name=" + name])
            for name in ("a", "b")]
        for f in self.followers:
            f.start()
        until(lambda: len(self.leader.info().followers) == 2,
              "both followers connect")
        self.writers = None
        self.paused = []

    def tearDown(self):
        for f in self.paused:
            if f.running():
                f.proc.send_signal(signal.SIGCONT)
        if self.writers is not None:
            self.writers.stop()
        codes = [n.stop() for n in self.followers + [self.leader]]
        output = "".join(sum((n.output for n in
                              [self.leader] + self.followers), []))
        shutil.rmtree(self.root, ignore_errors=True)
        self.assertEqual([c for c in codes if c not in (None, 0)], [], output)

    def pause(self, node):
        node.proc.send_signal(signal.SIGSTOP)
        self.paused.append(node)

    def resume(self, node):
        node.proc.send_signal(signal.SIGCONT)
        self.paused.remove(node)

    def assert_every_acknowledged_invoice_everywhere(self, acknowledged):
        """One log on every node, and each (account, invoice id) of
        `acknowledged` answers GetInvoice on each."""
        until(lambda: len({n.digest() for n in
                           [self.leader] + self.followers}) == 1,
              "the followers reach the leader's committed head")
        for node in [self.leader] + self.followers:
            with node.channel() as ch:
                stub = invoices_pb2_grpc.InvoiceServiceStub(ch)
                for a, invoice_id in acknowledged:
                    stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                        account_id=a, invoice_id=invoice_id), timeout=10)

    def acknowledged(self):
        return {(a, i) for a, ids in self.writers.acknowledged.items()
                for i in ids}

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                    self.metrics_port, timeout=10) as r:
            return r.read().decode()

    def test_the_leader_reports_its_synchronous_followers(self):
        info = self.leader.info()
        self.assertEqual(info.sync_followers, 1)
        self.assertEqual(sorted((f.node, f.synchronous)
                                for f in info.followers),
                         [("a", True), ("b", True)])
        metrics = self.metrics()
        self.assertIn('poledger_sync_followers{state="needed"} 1', metrics)
        self.assertIn('poledger_sync_followers{state="connected"} 2', metrics)
        self.assertIn("poledger_committed_position 0", metrics)
        self.assertIn("poledger_uncommitted_records 0", metrics)
        follower = self.followers[0].info()
        self.assertEqual((follower.role, follower.leader),
                         ("replica", self.leader.address))
        # A proxy's health check for writes passes on the leader only; the
        # plain one on every node.
        serving = health_pb2.HealthCheckResponse.SERVING
        for node, leads in [(self.leader, True)] + [(f, False)
                                                     for f in self.followers]:
            with node.channel() as ch:
                health = health_pb2_grpc.HealthStub(ch)
                self.assertEqual(health.Check(health_pb2.HealthCheckRequest(
                    service=""), timeout=10).status, serving)
                leader = health.Check(health_pb2.HealthCheckRequest(
                    service="poledger.v1.Leader"), timeout=10).status
                self.assertEqual(leader == serving, leads, node.address)

    def test_one_paused_follower_does_not_stop_writes_both_do(self):
        self.writers = Writers(self.leader, ["acct-1", "acct-2"])
        until(lambda: self.writers.total() > 20, "writes are acknowledged")
        # One follower paused: the other acknowledges.
        self.pause(self.followers[0])
        before = self.writers.total()
        until(lambda: self.writers.total() > before + 50,
              "writes go on through the other follower", timeout=30)
        # Both paused: nothing more is acknowledged.
        self.pause(self.followers[1])
        time.sleep(0.5)
        self.writers.stop()
        committed = self.leader.info().committed_position
        with self.leader.channel() as ch:
            stub = invoices_pb2_grpc.InvoiceServiceStub(ch)
            started = time.time()
            with self.assertRaises(grpc.RpcError) as ctx:
                stub.RecordInvoice(invoice_request("acct-1", "held", 1),
                                   timeout=10)
            took = time.time() - started
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE,
                             ctx.exception.details())
            self.assertEqual(error_info(ctx.exception)[0], "NOT_REPLICATED")
            self.assertIn("a stores through", ctx.exception.details())
            self.assertIn("b stores through", ctx.exception.details())
            # At --sync-timeout, well before the call's own deadline.
            self.assertLess(took, SYNC_TIMEOUT_SECONDS + 3)
            # Stored on the leader, shown to nobody.
            with self.assertRaises(grpc.RpcError) as missing:
                stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                    account_id="acct-1", invoice_id="held"), timeout=10)
            self.assertEqual(missing.exception.code(),
                             grpc.StatusCode.NOT_FOUND)
            info = self.leader.info()
            self.assertEqual(info.committed_position, committed)
            self.assertEqual(info.head_position, committed)
            self.assertGreater(info.uncommitted_records, 0)
            # A deadline shorter than --sync-timeout is answered before it.
            started = time.time()
            with self.assertRaises(grpc.RpcError) as ctx:
                stub.RecordInvoice(invoice_request("acct-2", "held-2", 1),
                                   timeout=1)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertLess(time.time() - started, 1)
            # The followers back: committed, and shown once.
            for f in list(self.paused):
                self.resume(f)
            until(lambda: stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                account_id="acct-1", invoice_id="held"), timeout=10),
                "the held write is committed")
            again = stub.RecordInvoice(invoice_request("acct-1", "held", 1),
                                       timeout=10)
            self.assertEqual(again.invoice_id, "held")
        # Every write waited for a follower.
        waits = [line for line in self.metrics().splitlines()
                 if line.startswith("poledger_commit_waits_total ")]
        self.assertGreater(float(waits[0].split()[1]), self.writers.total())
        self.assert_every_acknowledged_invoice_everywhere(self.acknowledged())

    def test_kill_9_of_the_leader_loses_no_acknowledged_invoice(self):
        """kill -9 of the leader at a random moment under writers (snapshots
        every 500 events, so some kills land in one), again and again:
        every invoice acknowledged is durable on a follower, read from
        their data directories offline; then all back, one log again."""
        rng = random.Random(os.environ.get("POLEDGER_SYNC_SEED", "26"))
        acknowledged = set()
        for cycle in range(int(os.environ.get("POLEDGER_SYNC_KILLS", "3"))):
            self.writers = Writers(self.leader, ["c%d-acct-%d" % (cycle, k)
                                                 for k in range(4)])
            until(lambda: self.writers.total() > 50, "writes are acknowledged")
            time.sleep(rng.uniform(0, 1))
            self.leader.kill()
            self.writers.stop()
            acknowledged |= self.acknowledged()
            held = set()
            for f in self.followers:
                self.assertEqual(f.stop(), 0)
                held |= self.invoices_in(f)
            self.assertEqual(acknowledged - held, set(), "cycle %d" % cycle)
            self.leader.start()
            for f in self.followers:
                f.start()
        # All back: one log again, every acknowledged invoice on each node.
        self.assert_every_acknowledged_invoice_everywhere(acknowledged)
        self.writers = None
        print("\n%d kills of the leader, %d invoices acknowledged, none lost"
              % (cycle + 1, len(acknowledged)))

    def invoices_in(self, node):
        """(account, invoice id) of every invoice in a stopped node's log."""
        out = subprocess.run(
            [os.environ["POLEDGER_AUDIT"], "export",
             "--data-dir=" + os.path.join(node.dir, "data"),
             "--type", "invoice_recorded"],
            capture_output=True, text=True, timeout=60, check=True)
        held = set()
        for line in out.stdout.splitlines():
            event = json.loads(line)
            invoice = event["payload"]["invoice_recorded"]["invoice"]
            held.add((event["account_id"], invoice["invoice_id"]))
        return held

if __name__ == "__main__":
    unittest.main()
