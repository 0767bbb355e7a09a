"""Read replicas: poledger-server --follow, started by the test on 127.0.0.1.

A replica started while writers load its leader reaches the leader's head
with an equal digest and the same records, and answers reads and streams;
writes to it are READ_ONLY_REPLICA naming the leader, and change nothing;
kill -9 of the replica, then of the leader, under writers, then both back:
equal logs, every acknowledged invoice on both; a replica pointed at a
leader whose log differs stops with DATA_LOSS naming the first differing
position, and its own log is unchanged.

Environment: POLEDGER_SERVER, PYTHONPATH (generated stubs and tests/e2e).
"""

import collections
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc
from google.protobuf import duration_pb2

from cluster_test import (create_request, error_info, free_port,
                          invoice_request, spiffe)
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc

CLOCK = "--clock=manual:2026-02-01T00:00:00Z"


class Node:
    """poledger-server on 127.0.0.1, on a port fixed once chosen so that a
    restart comes back where its peers expect it."""

    def __init__(self, root, name, extra=()):
        self.dir = os.path.join(root, name)
        self.extra = list(extra)
        self.address = "127.0.0.1:%d" % free_port()
        self.proc = None
        self.output = []

    def argv(self):
        return [os.environ["POLEDGER_SERVER"], "--listen=" + self.address,
                "--data-dir=" + os.path.join(self.dir, "data"), CLOCK,
                "--heartbeat-seconds=0.5"] + self.extra

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.output = []
        self.proc = subprocess.Popen(self.argv(), stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.output.append(line)
            if "serving" in line and "listening on" in line:
                self.drain = threading.Thread(target=self._drain, daemon=True)
                self.drain.start()
                return self
        self.kill()
        raise RuntimeError("%s did not start: %s" %
                           (self.dir, "".join(self.output)))

    def _drain(self):
        for line in self.proc.stderr:
            self.output.append(line)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()
        self.proc = None

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        code, self.proc = self.proc.returncode, None
        return code

    credentials = None  # Set for TLS: the caller's channel credentials.

    def channel(self):
        if self.credentials is not None:
            return grpc.secure_channel(self.address, self.credentials)
        return grpc.insecure_channel(self.address)

    def info(self):
        with self.channel() as ch:
            return log_pb2_grpc.AdminServiceStub(ch).GetServerInfo(
                log_pb2.GetServerInfoRequest(), timeout=10)

    def digest(self, at=0):
        with self.channel() as ch:
            d = log_pb2_grpc.EventLogServiceStub(ch).GetLogDigest(
                log_pb2.GetLogDigestRequest(at_position=at), timeout=10)
            return d.head_position, d.chain_hash

    def records(self):
        """Every record: (position, stream, version, type, hash, prev)."""
        out, token = [], ""
        with self.channel() as ch:
            stub = log_pb2_grpc.EventLogServiceStub(ch)
            while True:
                page = stub.ReadEvents(log_pb2.ReadEventsRequest(
                    page_size=1000, page_token=token), timeout=30)
                out += [(e.position, e.stream_id, e.stream_version,
                         e.event_type, e.hash, e.prev_hash)
                        for e in page.events]
                token = page.next_page_token
                if not token:
                    return out


class Writers:
    """Threads recording invoices on the leader's accounts, retrying on
    errors; what was acknowledged, by account."""

    def __init__(self, node, accounts):
        self.node = node
        self.accounts = accounts
        self.acknowledged = collections.defaultdict(list)
        self.errors = collections.Counter()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        with node.channel() as ch:
            stub = po_grpc.PurchaseOrderServiceStub(ch)
            for a in accounts:
                stub.CreatePurchaseOrder(create_request(a, "po", 10 ** 7),
                                         timeout=10)
        self.threads = [threading.Thread(target=self._run, args=(a,))
                        for a in accounts for _ in range(2)]
        self.counter = collections.Counter()
        for t in self.threads:
            t.start()

    def _run(self, account):
        channel = self.node.channel()
        stub = invoices_pb2_grpc.InvoiceServiceStub(channel)
        while not self.stop_event.is_set():
            with self.lock:
                self.counter[account] += 1
                invoice_id = "inv-%d" % self.counter[account]
            try:
                stub.RecordInvoice(invoice_request(account, invoice_id, 1),
                                   timeout=5)
                with self.lock:
                    self.acknowledged[account].append(invoice_id)
            except grpc.RpcError as e:
                with self.lock:
                    self.errors[e.code().name] += 1
                time.sleep(0.02)
        channel.close()

    def total(self):
        with self.lock:
            return sum(len(v) for v in self.acknowledged.values())

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join()


def until(predicate, what, timeout=60):
    deadline = time.time() + timeout
    while True:
        try:
            if predicate():
                return
        except grpc.RpcError:
            pass
        if time.time() > deadline:
            raise AssertionError("timed out: " + what)
        time.sleep(0.05)


class ReplicaTest(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="poledger-replica-")
        self.leader = Node(self.root, "leader").start()
        self.metrics_port = free_port()
        self.replica = Node(self.root, "replica",
                            ["--follow=" + self.leader.address,
                             "--metrics-listen=127.0.0.1:%d" %
                             self.metrics_port])
        self.writers = None

    def tearDown(self):
        if self.writers is not None:
            self.writers.stop()
        codes = [self.replica.stop(), self.leader.stop()]
        output = "".join(self.leader.output + self.replica.output)
        shutil.rmtree(self.root, ignore_errors=True)
        self.assertEqual([c for c in codes if c not in (None, 0)], [], output)

    def assert_same_logs(self):
        """The replica holds the leader's log: equal heads and digests, the
        same records, and every acknowledged invoice on both."""
        until(lambda: self.replica.digest() == self.leader.digest(),
              "the replica reaches the leader's head")
        head, chain = self.leader.digest()
        self.assertGreater(head, 0)
        self.assertEqual(self.replica.digest(), (head, chain))
        self.assertEqual(self.replica.records(), self.leader.records())
        if self.writers is None:
            return
        for node in (self.leader, self.replica):
            with node.channel() as ch:
                invoices = invoices_pb2_grpc.InvoiceServiceStub(ch)
                pos = po_grpc.PurchaseOrderServiceStub(ch)
                for a, ids in self.writers.acknowledged.items():
                    for invoice_id in ids:
                        invoices.GetInvoice(invoices_pb2.GetInvoiceRequest(
                            account_id=a, invoice_id=invoice_id), timeout=10)
                    po = pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
                        account_id=a, purchase_order_id="po"), timeout=10)
                    # Each invoice spends 1; a timed-out attempt may have
                    # been recorded too, an acknowledged one must be.
                    spent = 10 ** 7 - po.line_items[0].balance.units
                    self.assertGreaterEqual(spent, len(ids), a)

    def batch(self, account, first, count):
        """Records `count` invoices of `account` in one batch: one log
        record of as many events."""
        with self.leader.channel() as ch:
            out = invoices_pb2_grpc.InvoiceServiceStub(ch).BatchRecordInvoices(
                invoices_pb2.BatchRecordInvoicesRequest(requests=[
                    invoice_request(account, "batch-%d" % (first + k), 1)
                    for k in range(count)]), timeout=30)
        self.assertEqual(len(out.results), count)
        for r in out.results:
            self.assertFalse(r.HasField("error"), r.error)

    def test_a_replica_under_write_load_reaches_the_leaders_head(self):
        self.writers = Writers(self.leader, ["acct-%d" % k for k in range(4)])
        until(lambda: self.writers.total() > 200, "writes on the leader")
        # Records of one event and of a thousand, copied in pages of a
        # thousand events that end inside records.
        self.batch("acct-0", 0, 1000)
        self.batch("acct-1", 0, 700)
        # Started under load: it catches up, then follows live.
        self.replica.start()
        until(lambda: self.replica.info().replication.state == "following",
              "the replica follows")
        self.batch("acct-2", 0, 1000)
        time.sleep(1.0)
        self.writers.stop()
        self.assert_same_logs()
        info = self.replica.info()
        self.assertEqual(info.replication.leader, self.leader.address)
        self.assertEqual((info.role, info.term, info.leader),
                         ("replica", 0, self.leader.address))
        leader_info = self.leader.info()
        self.assertEqual((leader_info.role, leader_info.term,
                          leader_info.leader), ("leader", 0, ""))
        until(lambda: self.replica.info().replication.lag_events == 0 and
              self.replica.info().replication.lag.ToNanoseconds() == 0,
              "no lag once caught up")
        self.assertEqual(self.replica.info().replication.leader_head_position,
                         self.leader.info().head_position)
        self.assertFalse(self.leader.info().HasField("replication"))
        # And in the metrics, labelled with the leader.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                    self.metrics_port, timeout=10) as r:
            metrics = r.read().decode()
        label = '{leader="%s"}' % self.leader.address
        self.assertIn("poledger_replication_following%s 1" % label, metrics)
        self.assertIn("poledger_replication_lag_events%s 0" % label, metrics)
        self.assertIn("poledger_replication_lag_seconds%s 0" % label, metrics)
        self.assertIn('poledger_role{role="replica"} 1', metrics)
        self.assertIn('poledger_role{role="leader"} 0', metrics)
        self.assertIn("poledger_term 0", metrics)
        # The replica's streams: catch-up, then a live record copied from
        # the leader.
        with self.replica.channel() as ch:
            stream = log_pb2_grpc.EventLogServiceStub(ch).SubscribeEvents(
                log_pb2.SubscribeEventsRequest(account_id="acct-1"),
                timeout=30)
            for m in stream:
                if m.HasField("caught_up"):
                    break
            with self.leader.channel() as lch:
                invoices_pb2_grpc.InvoiceServiceStub(lch).RecordInvoice(
                    invoice_request("acct-1", "live", 1), timeout=10)
            for m in stream:
                if m.HasField("event"):
                    self.assertEqual(m.event.event_type, "invoice_recorded")
                    self.assertEqual(m.event.account_id, "acct-1")
                    break
            stream.cancel()

    def test_writes_to_a_replica_are_refused_naming_the_leader(self):
        with self.leader.channel() as ch:
            po_grpc.PurchaseOrderServiceStub(ch).CreatePurchaseOrder(
                create_request("acct-1", "po"), timeout=10)
        self.replica.start()
        self.assert_same_logs()
        before = (self.leader.digest(), self.replica.digest())
        with self.replica.channel() as ch:
            pos = po_grpc.PurchaseOrderServiceStub(ch)
            invoices = invoices_pb2_grpc.InvoiceServiceStub(ch)
            admin = log_pb2_grpc.AdminServiceStub(ch)
            dry_run = invoice_request("acct-1", "inv", 1)
            dry_run.validate_only = True
            calls = [
                lambda: pos.CreatePurchaseOrder(
                    create_request("acct-2", "po"), timeout=10),
                lambda: invoices.RecordInvoice(
                    invoice_request("acct-1", "inv", 1), timeout=10),
                lambda: invoices.RecordInvoice(dry_run, timeout=10),
                lambda: invoices.BatchRecordInvoices(
                    invoices_pb2.BatchRecordInvoicesRequest(
                        requests=[invoice_request("acct-1", "inv", 1)]),
                    timeout=10),
                lambda: admin.AdvanceTime(
                    log_pb2.AdvanceTimeRequest(
                        duration=duration_pb2.Duration(seconds=86400)),
                    timeout=10),
            ]
            for call in calls:
                with self.assertRaises(grpc.RpcError) as ctx:
                    call()
                self.assertEqual(ctx.exception.code(),
                                 grpc.StatusCode.FAILED_PRECONDITION)
                reason, metadata, _ = error_info(ctx.exception)
                self.assertEqual(reason, "READ_ONLY_REPLICA")
                self.assertEqual(metadata, {"leader": self.leader.address})
            # Reads answer.
            po = pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
                account_id="acct-1", purchase_order_id="po"), timeout=10)
            self.assertEqual(po.purchase_order_id, "po")
        self.assertEqual((self.leader.digest(), self.replica.digest()), before)

    def test_kill_9_of_the_replica_then_of_the_leader_loses_nothing(self):
        # Snapshots on the replica while it copies, and a restart from one.
        self.replica.extra.append("--snapshot-every-events=200")
        self.replica.start()
        self.writers = Writers(self.leader, ["acct-%d" % k for k in range(4)])

        def more_writes(n):
            target = self.writers.total() + n
            until(lambda: self.writers.total() >= target, "more writes")

        more_writes(150)
        self.replica.kill()
        more_writes(150)
        self.replica.start()
        more_writes(150)
        self.leader.kill()
        # The replica waits for its leader meanwhile, and still reads.
        until(lambda: self.replica.info().replication.state == "connecting",
              "the replica notices")
        self.assertTrue(self.replica.running())
        self.leader.start()
        more_writes(150)
        self.writers.stop()
        self.assert_same_logs()
        self.assertGreater(self.replica.info().head_position, 600)
        self.assertIn("snapshot saved at position", "".join(self.replica.output))

    def test_a_replica_killed_again_and_again_mid_copy_and_mid_snapshot(self):
        # Kill -9 at random moments while it copies and snapshots every 100
        # records: each restart resumes after its head, from its snapshot.
        self.replica.extra.append("--snapshot-every-events=100")
        self.writers = Writers(self.leader, ["acct-%d" % k for k in range(4)])
        rng = random.Random(int(os.environ.get("POLEDGER_REPLICA_SEED", "7")))
        kills = int(os.environ.get("POLEDGER_REPLICA_KILLS", "6"))
        for _ in range(kills):
            self.replica.start()
            time.sleep(rng.uniform(0.1, 0.6))
            self.replica.kill()
        self.replica.start()
        self.writers.stop()
        self.assert_same_logs()

    def test_a_replica_of_a_leader_whose_log_differs_is_refused(self):
        with self.leader.channel() as ch:
            stub = po_grpc.PurchaseOrderServiceStub(ch)
            for k in range(3):
                stub.CreatePurchaseOrder(create_request("acct-%d" % k, "po"),
                                         timeout=10)
        self.leader.stop()
        # Another leader with the same first 3 records, then its own.
        other = Node(self.root, "other")
        shutil.copytree(self.leader.dir, other.dir)
        other.start()
        self.leader.start()
        with other.channel() as ch:
            po_grpc.PurchaseOrderServiceStub(ch).CreatePurchaseOrder(
                create_request("acct-other", "po"), timeout=10)
        with self.leader.channel() as ch:
            stub = po_grpc.PurchaseOrderServiceStub(ch)
            for k in range(3, 6):
                stub.CreatePurchaseOrder(create_request("acct-%d" % k, "po"),
                                         timeout=10)
        self.replica.start()
        self.assert_same_logs()
        self.replica.stop()
        # Pointed at the other leader: it stops, naming position 4.
        self.replica.extra = ["--follow=" + other.address]
        self.replica.start()
        try:
            self.replica.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("the replica kept following a diverging leader")
        self.assertEqual(self.replica.proc.returncode, 1)
        self.replica.drain.join(timeout=30)
        output = "".join(self.replica.output)
        self.assertIn("DATA_LOSS", output)
        self.assertIn("differs from this replica's from position 4", output)
        self.replica.proc.stderr.close()
        self.replica.proc = None
        # Its log is as it was: back on its own leader, equal again.
        self.replica.extra = ["--follow=" + self.leader.address]
        self.replica.start()
        self.assert_same_logs()
        self.assertEqual(other.stop(), 0)


class TlsReplicaTest(unittest.TestCase):
    """A TLS leader and a TLS replica: the replica is a client of its leader
    with its own certificate, which needs the leader's log access."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="poledger-replica-tls-")
        certs = os.path.join(self.root, "certs")
        subprocess.run(["bash", os.environ["POLEDGER_MAKE_CERTS"], certs,
                        "replica", "purchaser", "admin"],
                       check=True, capture_output=True)
        self.certs = certs
        policy = os.path.join(certs, "policy.textproto")
        with open(policy, "w") as f:
            f.write('bindings { identity: "%s" role: ROLE_AUDITOR '
                    'accounts: "*" }\n' % spiffe("replica"))
            for role in ("ROLE_PURCHASER", "ROLE_BILLER"):
                f.write('bindings { identity: "%s" role: %s '
                        'accounts: "acct-1" }\n' % (spiffe("purchaser"), role))
            f.write('bindings { identity: "%s" role: ROLE_ADMIN '
                    'accounts: "*" }\n' % spiffe("admin"))
            f.write('bindings { identity: "%s" role: ROLE_AUDITOR '
                    'accounts: "*" }\n' % spiffe("admin"))
        server = ["--tls-cert=" + self.path("server.pem"),
                  "--tls-key=" + self.path("server.key"),
                  "--tls-client-ca=" + self.path("ca.pem"),
                  "--authz-policy=" + policy]
        self.leader = Node(self.root, "leader", server)
        self.leader.credentials = self.creds("admin")
        self.leader.start()
        self.server_args = server
        self.nodes = [self.leader]

    def path(self, name):
        return os.path.join(self.certs, name)

    def creds(self, who):
        def read(name):
            with open(self.path(name), "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(read("ca.pem"), read(who + ".key"),
                                            read(who + ".pem"))

    def replica(self, name, who):
        node = Node(self.root, name, self.server_args + [
            "--follow=" + self.leader.address,
            "--follow-tls-ca=" + self.path("ca.pem"),
            "--follow-tls-cert=" + self.path(who + ".pem"),
            "--follow-tls-key=" + self.path(who + ".key")])
        node.credentials = self.creds("admin")
        self.nodes.append(node)
        return node.start()

    def tearDown(self):
        codes = [n.stop() for n in self.nodes]
        output = "".join(o for n in self.nodes for o in n.output)
        shutil.rmtree(self.root, ignore_errors=True)
        self.assertEqual([c for c in codes if c not in (None, 0)], [], output)

    def test_a_replica_follows_over_mutual_tls_as_its_own_identity(self):
        purchaser = self.creds("purchaser")
        with grpc.secure_channel(self.leader.address, purchaser) as ch:
            po_grpc.PurchaseOrderServiceStub(ch).CreatePurchaseOrder(
                create_request("acct-1", "po"), timeout=10)
            invoices_pb2_grpc.InvoiceServiceStub(ch).RecordInvoice(
                invoice_request("acct-1", "inv-1", 5), timeout=10)
        replica = self.replica("replica", "replica")
        until(lambda: replica.digest() == self.leader.digest(),
              "the replica copies over TLS")
        self.assertEqual(replica.digest()[0], 2)
        with grpc.secure_channel(replica.address, purchaser) as ch:
            with self.assertRaises(grpc.RpcError) as ctx:
                invoices_pb2_grpc.InvoiceServiceStub(ch).RecordInvoice(
                    invoice_request("acct-1", "inv-2", 5), timeout=10)
            self.assertEqual(ctx.exception.code(),
                             grpc.StatusCode.FAILED_PRECONDITION)
            self.assertEqual(error_info(ctx.exception)[0], "READ_ONLY_REPLICA")
            inv = invoices_pb2_grpc.InvoiceServiceStub(ch).GetInvoice(
                invoices_pb2.GetInvoiceRequest(account_id="acct-1",
                                               invoice_id="inv-1"), timeout=10)
            self.assertEqual(inv.invoice_id, "inv-1")

    def test_a_replica_without_the_leaders_log_access_copies_nothing(self):
        with grpc.secure_channel(self.leader.address,
                                 self.creds("purchaser")) as ch:
            po_grpc.PurchaseOrderServiceStub(ch).CreatePurchaseOrder(
                create_request("acct-1", "po"), timeout=10)
        # The purchaser's certificate has no log access on the leader.
        replica = self.replica("replica", "purchaser")
        until(lambda: "PERMISSION_DENIED" in
              replica.info().replication.last_error, "the leader refuses it")
        info = replica.info()
        self.assertEqual(info.head_position, 0)
        self.assertEqual(info.replication.state, "connecting")
        self.assertTrue(replica.running())


if __name__ == "__main__":
    unittest.main()
