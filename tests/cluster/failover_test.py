"""Automatic failover on etcd: one shard as three nodes (--etcd-endpoints,
--sync-followers=1, the default lease), etcd (one member) and HAProxy,
all started by the test on 127.0.0.1.

- kill -9 of the leader at random moments under writers sending through
  HAProxy, with a read replica following through HAProxy too (POLEDGER_FAILOVER_KILLS times, 3 by default, snapshots every
  300 events so that some kills land while one is written;
  POLEDGER_FAILOVER_WRITERS writers, 16 by default; POLEDGER_FAILOVER_SEED):
  every acknowledged invoice answers GetInvoice, no invoice is recorded
  twice, every node's log is the same through the committed position, and
  poledger-audit verify passes on each, the read replica holds the same
  log; the time from each kill to the
  first acknowledged write after it is printed.
- SIGSTOP of the leader for longer than its lease, with writes it stored
  and could not commit: a follower takes over, the old leader acknowledges
  nothing once it wakes, rejoins as a follower, and the records it set
  aside are exactly the writes no client saw acknowledged.
- SIGSTOP of one synchronous follower (K = 1): writes go on through the
  other; of both: a write fails UNAVAILABLE (NOT_REPLICATED) by its
  deadline, the leader keeps its lease, and after SIGCONT it is committed.
- etcd killed: the leader stops acknowledging within its lease, reads go
  on; etcd back: one leader again, nothing lost.
- The leader's disk full (its data on a tmpfs the test mounts; root only):
  it gives its lease up, a follower takes over, it rejoins once freed.
- The leader cut off from etcd and from its followers while clients still
  reach it (it reaches etcd, and they reach it, through TCP relays the test
  cuts): it acknowledges nothing after the cut, steps down within its
  lease, a follower takes over, and it rejoins when the network heals.

Environment: POLEDGER_SERVER, POLEDGER_AUDIT, POLEDGER_HAPROXY,
POLEDGER_HAPROXY_CONFIG, POLEDGER_ETCD, PYTHONPATH (generated stubs and
tests/e2e).
"""

import base64
import collections
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

from cluster_test import error_info, free_port, invoice_request
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc
from replica_test import Node, create_request, until

LEASE_SECONDS = 5  # The server's default.


class Etcd:
    """One etcd member on 127.0.0.1, its data kept across restarts."""

    def __init__(self, root):
        self.dir = os.path.join(root, "etcd")
        self.client = "http://127.0.0.1:%d" % free_port()
        self.peer = "http://127.0.0.1:%d" % free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [os.environ.get("POLEDGER_ETCD", "etcd"), "--name=test",
             "--data-dir=" + self.dir,
             "--listen-client-urls=" + self.client,
             "--advertise-client-urls=" + self.client,
             "--listen-peer-urls=" + self.peer,
             "--initial-advertise-peer-urls=" + self.peer,
             "--initial-cluster=test=" + self.peer, "--logger=zap",
             "--log-outputs=" + self.dir + ".log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(self.answers, "etcd answers", timeout=30)
        return self

    def answers(self):
        body = json.dumps({"key": base64.b64encode(b"x").decode()}).encode()
        try:
            with urllib.request.urlopen(self.client + "/v3/kv/range", body,
                                        timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class ShardNode(Node):
    """A node whose output is kept across restarts."""

    def start(self):
        earlier = self.output
        super().start()
        self.output = earlier + self.output
        return self


class Relay:
    """A TCP relay on 127.0.0.1 to `target` that the test can cut: every
    connection through it ends, and new ones are closed at once, until it is
    healed. What a network partition does to the connections it crosses."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.cut_off = False
        self.open = []
        self.lock = threading.Lock()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.cut_off:
                    client.close()
                    continue
                try:
                    server = socket.create_connection(self.target, timeout=2)
                except OSError:
                    client.close()
                    continue
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b),
                                 daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.cut_off = True
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.open = []

    def heal(self):
        with self.lock:
            self.cut_off = False

    def close(self):
        self.closing = True
        self.cut()
        self.listener.close()


class Writers:
    """Threads recording invoices through the proxy, each a new invoice id
    after any error; what was acknowledged and when."""

    def __init__(self, address, accounts, per_account):
        self.address = address
        self.acknowledged = []  # (time, account, invoice id)
        self.failed = []  # (account, invoice id): outcome not known
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.counter = collections.Counter()
        self.threads = [threading.Thread(target=self._run, args=(a,))
                        for a in accounts for _ in range(per_account)]
        for t in self.threads:
            t.start()

    def _run(self, account):
        channel = grpc.insecure_channel(self.address)
        stub = invoices_pb2_grpc.InvoiceServiceStub(channel)
        while not self.stop_event.is_set():
            with self.lock:
                self.counter[account] += 1
                invoice_id = "inv-%d" % self.counter[account]
            try:
                stub.RecordInvoice(invoice_request(account, invoice_id, 1),
                                   timeout=5)
                with self.lock:
                    self.acknowledged.append((time.time(), account,
                                              invoice_id))
            except grpc.RpcError:
                with self.lock:
                    self.failed.append((account, invoice_id))
                time.sleep(0.05)
        channel.close()

    def total(self):
        with self.lock:
            return len(self.acknowledged)

    def first_after(self, t):
        with self.lock:
            later = [a for a, _, _ in self.acknowledged if a > t]
        return min(later) if later else None

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join()


class FailoverTest(unittest.TestCase):

    # Mounts a tmpfs of this many bytes for n0 (the first leader: with equal
    # heads the smaller name campaigns); 0: none.
    n0_tmpfs_bytes = 0

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="poledger-failover-")
        self.mounted = None
        if self.n0_tmpfs_bytes:
            if os.geteuid() != 0:
                self.skipTest("mounting a tmpfs needs root")
            self.mounted = os.path.join(self.root, "n0")
            os.makedirs(self.mounted)
            subprocess.run(["mount", "-t", "tmpfs", "-o",
                            "size=%d" % self.n0_tmpfs_bytes, "tmpfs",
                            self.mounted], check=True)
        self.etcd = Etcd(self.root).start()
        self.nodes = []
        for i in range(3):
            node = ShardNode(self.root, "n%d" % i)
            node.extra = self.node_flags(i, node)
            node.metrics_port = free_port()
            node.extra.append("--metrics-listen=127.0.0.1:%d" %
                              node.metrics_port)
            self.nodes.append(node.start())
        self.proxy_address = "127.0.0.1:%d" % free_port()
        config = subprocess.run(
            ["bash", os.environ["POLEDGER_HAPROXY_CONFIG"],
             "--listen=" + self.proxy_address,
             ",".join(n.address for n in self.nodes)],
            check=True, capture_output=True, text=True).stdout
        path = os.path.join(self.root, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(config)
        self.haproxy_log = open(os.path.join(self.root, "haproxy.log"), "w")
        self.haproxy = subprocess.Popen(
            [os.environ.get("POLEDGER_HAPROXY", "haproxy"), "-f", path,
             "-db"], stdout=self.haproxy_log, stderr=subprocess.STDOUT)
        self.writers = None
        self.extra_nodes = []
        self.leader()  # Elected within seconds.
        self.proxy = grpc.insecure_channel(self.proxy_address)
        # HAProxy counts a server up until its first check: wait until the
        # followers are out.
        admin = log_pb2_grpc.AdminServiceStub(self.proxy)
        until(lambda: all(admin.GetServerInfo(log_pb2.GetServerInfoRequest(),
                                              timeout=5).role == "leader"
                          for _ in range(6)),
              "the proxy reaches only the leader", timeout=30)
        po_grpc.PurchaseOrderServiceStub(self.proxy).CreatePurchaseOrder(
            create_request("acct-0", "po", 10 ** 9), timeout=10)

    def node_flags(self, i, node):
        return ["--etcd-endpoints=" + self.etcd.client,
                "--etcd-prefix=/poledger-test/shard-0",
                "--advertise-address=" + node.address,
                "--node-name=n%d" % i, "--sync-followers=1",
                "--sync-timeout=3s", "--snapshot-every-events=300"]

    def tearDown(self):
        if self.writers is not None:
            self.writers.stop()
        self.proxy.close()
        for n in self.nodes:
            if n.running():
                n.proc.send_signal(signal.SIGCONT)
        codes = [n.stop() for n in self.extra_nodes + self.nodes]
        self.haproxy.terminate()
        self.haproxy.wait()
        self.haproxy_log.close()
        self.etcd.kill()
        output = "".join(sum((n.output for n in self.nodes +
                              self.extra_nodes), []))
        if self.mounted:
            subprocess.run(["umount", "-l", self.mounted], check=False)
        if os.environ.get("POLEDGER_FAILOVER_KEEP"):
            for n in self.nodes + self.extra_nodes:
                with open(n.dir + ".log", "w") as f:
                    f.write("".join(n.output))
            print("kept " + self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        self.assertEqual([c for c in codes if c not in (None, 0)], [],
                         output[-20000:])

    def leader(self, among=None, timeout=30):
        """The one node that says it leads (waits for one)."""
        found = []

        def one():
            found[:] = [n for n in (among or self.nodes)
                        if n.running() and n.info().role == "leader"]
            return len(found) == 1
        until(one, "one leader", timeout=timeout)
        return found[0]

    def followers_of(self, leader):
        until(lambda: all(n.info().leader == leader.address
                          for n in self.nodes if n is not leader),
              "every other node follows " + leader.address)

    def assert_one_log(self):
        """Every node stores the same log through the leader's commit, and
        poledger-audit verify passes on each."""
        leader = self.leader()
        self.followers_of(leader)
        committed = leader.info().committed_position
        until(lambda: all(n.info().committed_position >= committed
                          for n in self.nodes), "every node commits as far")
        digests = {n.digest(committed) for n in self.nodes}
        self.assertEqual(len(digests), 1, digests)
        for n in self.nodes:
            audit = subprocess.run(
                [os.environ["POLEDGER_AUDIT"], "verify",
                 "--data-dir=" + os.path.join(n.dir, "data")],
                capture_output=True, text=True)
            self.assertEqual(audit.returncode, 0, audit.stdout + audit.stderr)
            self.assertIn("OK", audit.stdout)
        return leader

    def start_writers(self, accounts, per_account):
        """Writers through the proxy on accounts acct-1..N, each with a
        purchase order."""
        names = ["acct-%d" % i for i in range(1, accounts + 1)]
        pos = po_grpc.PurchaseOrderServiceStub(self.proxy)
        for a in names:
            pos.CreatePurchaseOrder(create_request(a, "po", 10 ** 9),
                                    timeout=10)
        self.writers = Writers(self.proxy_address, names, per_account)

    def rejoined_with_every_acknowledged_write(self, old, new):
        """`old` follows `new`; once the writers stop, every node holds one
        log and every write they saw acknowledged."""
        until(lambda: old.running() and old.info().leader == new.address,
              "the old leader rejoins", timeout=60)
        self.writers.stop()
        acknowledged = [(a, i) for _, a, i in self.writers.acknowledged]
        self.writers = None
        self.assert_one_log()
        stub = invoices_pb2_grpc.InvoiceServiceStub(self.proxy)
        for a, invoice_id in acknowledged:
            stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                account_id=a, invoice_id=invoice_id), timeout=10)

    def invoices_in_log(self, node):
        """(account, invoice id) of every invoice_recorded record."""
        out, token = [], ""
        with node.channel() as ch:
            stub = log_pb2_grpc.EventLogServiceStub(ch)
            while True:
                page = stub.ReadEvents(log_pb2.ReadEventsRequest(
                    page_size=1000, page_token=token,
                    event_types=["invoice_recorded"]), timeout=30)
                for e in page.events:
                    if e.event_type == "invoice_recorded":
                        out.append((e.account_id,
                                    e.payload.invoice_recorded.invoice
                                    .invoice_id))
                token = page.next_page_token
                if not token:
                    return out

    def test_kill_9_of_the_leader_loses_no_acknowledged_invoice(self):
        kills = int(os.environ.get("POLEDGER_FAILOVER_KILLS", "3"))
        writers = int(os.environ.get("POLEDGER_FAILOVER_WRITERS", "16"))
        rng = random.Random(int(os.environ.get("POLEDGER_FAILOVER_SEED",
                                               str(time.time_ns()))))
        accounts = 4
        # A read replica that follows whoever leads, through the proxy.
        replica = ShardNode(self.root, "replica",
                            ["--follow=" + self.proxy_address])
        self.extra_nodes.append(replica.start())
        self.start_writers(accounts, max(1, writers // accounts))
        failover = []
        for k in range(kills):
            before = self.writers.total()
            until(lambda: self.writers.total() > before + 30,
                  "writes are acknowledged", timeout=60)
            time.sleep(rng.uniform(0, 1.5))
            victim = self.leader()
            killed_at = time.time()
            victim.kill()
            until(lambda: self.writers.first_after(killed_at + 0.05),
                  "a write is acknowledged after kill %d" % (k + 1),
                  timeout=60)
            failover.append(self.writers.first_after(killed_at + 0.05) -
                            killed_at)
            print("\nkill %d of %s at %s: first acknowledged write %.2fs "
                  "later" % (k + 1, victim.address,
                             time.strftime("%H:%M:%S", time.gmtime(
                                 killed_at)) + ("%.3f" % (killed_at % 1))[1:],
                             failover[-1]))
            victim.start()
        self.writers.stop()
        acknowledged = [(a, i) for _, a, i in self.writers.acknowledged]
        self.writers = None
        failover.sort()
        print("\nfailover (kill to first acknowledged write) over %d kills: "
              "min %.2fs, median %.2fs, max %.2fs; %d invoices "
              "acknowledged" % (kills, failover[0],
                                failover[len(failover) // 2], failover[-1],
                                len(acknowledged)))
        leader = self.assert_one_log()
        committed = leader.info().committed_position
        until(lambda: replica.info().committed_position >= committed,
              "the read replica follows the new leaders")
        self.assertEqual(replica.digest(committed), leader.digest(committed))
        stub = invoices_pb2_grpc.InvoiceServiceStub(self.proxy)
        for a, invoice_id in acknowledged:
            got = stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                account_id=a, invoice_id=invoice_id), timeout=10)
            self.assertEqual(got.invoice_id, invoice_id)
        recorded = self.invoices_in_log(leader)
        twice = [k for k, c in collections.Counter(recorded).items() if c > 1]
        self.assertEqual(twice, [])
        self.assertLessEqual(set(acknowledged), set(recorded))
        terms = subprocess.run(
            [os.environ["POLEDGER_AUDIT"], "terms",
             "--data-dir=" + os.path.join(leader.dir, "data")],
            capture_output=True, text=True, check=True).stdout.splitlines()
        self.assertGreaterEqual(len(terms), kills + 1, terms)
        # The leader's metrics: its role, the term, its takeover.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                    leader.metrics_port, timeout=10) as r:
            metrics = r.read().decode()
        self.assertIn('poledger_role{role="leader"} 1', metrics)
        self.assertIn("poledger_term %d" % leader.info().term, metrics)
        self.assertIn("poledger_takeovers_total 1", metrics)

    def test_a_paused_leader_acknowledges_nothing_and_sets_its_tail_aside(
            self):
        old = self.leader()
        self.followers_of(old)
        others = [n for n in self.nodes if n is not old]
        # The followers go down: what the leader stores now, they never get.
        for n in others:
            n.kill()
        unacknowledged = []
        with old.channel() as ch:
            stub = invoices_pb2_grpc.InvoiceServiceStub(ch)
            for i in range(5):
                account, invoice_id = "acct-lost-%d" % i, "lost-%d" % i
                with self.assertRaises(grpc.RpcError) as e:
                    stub.RecordInvoice(invoice_request(account, invoice_id,
                                                       1), timeout=1)
                self.assertEqual(e.exception.code(),
                                 grpc.StatusCode.UNAVAILABLE,
                                 e.exception.details())
                unacknowledged.append((account, invoice_id))
        # The leader pauses for longer than its lease; the followers come
        # back and one of them takes over.
        old.proc.send_signal(signal.SIGSTOP)
        for n in others:
            n.start()
        new = self.leader(among=others, timeout=LEASE_SECONDS * 4)
        stub = invoices_pb2_grpc.InvoiceServiceStub(self.proxy)
        until(lambda: stub.RecordInvoice(invoice_request(
            "acct-0", "after-failover", 1), timeout=5) is not None,
            "the new leader takes writes through the proxy")
        old.proc.send_signal(signal.SIGCONT)
        # Awake, it acknowledges nothing: it no longer holds the lease.
        with old.channel() as ch:
            with self.assertRaises(grpc.RpcError):
                invoices_pb2_grpc.InvoiceServiceStub(ch).RecordInvoice(
                    invoice_request("acct-0", "to-the-old-leader", 1),
                    timeout=2)
        until(lambda: old.info().leader == new.address,
              "the old leader rejoins as a follower", timeout=30)
        self.assert_one_log()
        files = glob.glob(os.path.join(old.dir, "data", "set-aside", "*.log"))
        self.assertEqual(len(files), 1, files)
        shown = subprocess.run(
            [os.environ["POLEDGER_AUDIT"], "set-aside", files[0]],
            capture_output=True, text=True, check=True).stdout.splitlines()
        events = [json.loads(line) for line in shown]
        aside = {(e["account_id"],
                  e["payload"]["invoice_recorded"]["invoice"]["invoice_id"])
                 for e in events if e["event_type"] == "invoice_recorded"}
        # Every write the old leader stored and could not commit, and
        # nothing any client saw acknowledged.
        self.assertLessEqual(set(unacknowledged), aside)
        self.assertLessEqual(aside, set(unacknowledged) |
                             {("acct-0", "to-the-old-leader")})
        for account, invoice_id in aside:
            with self.assertRaises(grpc.RpcError) as e:
                stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                    account_id=account, invoice_id=invoice_id), timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
            account_id="acct-0", invoice_id="after-failover"), timeout=10)

    def test_paused_followers_hold_writes_back_and_release_them(self):
        leader = self.leader()
        self.followers_of(leader)
        followers = [n for n in self.nodes if n is not leader]
        stub = invoices_pb2_grpc.InvoiceServiceStub(self.proxy)
        # One follower paused (K = 1): the other acknowledges.
        followers[0].proc.send_signal(signal.SIGSTOP)
        stub.RecordInvoice(invoice_request("acct-0", "one-paused", 1),
                           timeout=5)
        # Both paused: a write fails UNAVAILABLE by its deadline, and the
        # leader keeps its lease (nothing fails over).
        followers[1].proc.send_signal(signal.SIGSTOP)
        with self.assertRaises(grpc.RpcError) as e:
            stub.RecordInvoice(invoice_request("acct-0", "both-paused", 1),
                               timeout=2)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE,
                         e.exception.details())
        self.assertEqual(error_info(e.exception)[0], "NOT_REPLICATED")
        for f in followers:
            f.proc.send_signal(signal.SIGCONT)
        # Back: the write is committed (it stayed in the leader's log), and
        # writes go on under the same leader.
        stub.RecordInvoice(invoice_request("acct-0", "resumed", 1), timeout=10)
        self.assertIs(self.leader(), leader)
        for invoice_id in ("one-paused", "both-paused", "resumed"):
            stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                account_id="acct-0", invoice_id=invoice_id), timeout=10)
        self.assert_one_log()

    def test_without_etcd_nothing_is_acknowledged_and_reads_go_on(self):
        leader = self.leader()
        stub = invoices_pb2_grpc.InvoiceServiceStub(self.proxy)
        stub.RecordInvoice(invoice_request("acct-0", "before", 1), timeout=10)
        self.etcd.kill()
        time.sleep(LEASE_SECONDS + 1)
        for n in self.nodes:
            until(lambda: n.running() and n.info().role == "replica",
                  "no node leads without etcd", timeout=30)
            with n.channel() as ch:
                with self.assertRaises(grpc.RpcError):
                    invoices_pb2_grpc.InvoiceServiceStub(ch).RecordInvoice(
                        invoice_request("acct-0", "without-etcd", 1),
                        timeout=2)
                invoices_pb2_grpc.InvoiceServiceStub(ch).GetInvoice(
                    invoices_pb2.GetInvoiceRequest(
                        account_id="acct-0", invoice_id="before"), timeout=10)
        self.etcd.start()
        self.leader(timeout=LEASE_SECONDS * 6)
        until(lambda: stub.RecordInvoice(invoice_request(
            "acct-0", "etcd-back", 1), timeout=5) is not None,
            "writes go on once etcd is back")
        self.assert_one_log()
        for invoice_id in ("before", "etcd-back"):
            stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                account_id="acct-0", invoice_id=invoice_id), timeout=10)
        self.assertIsNotNone(leader)


class FullDiskFailoverTest(FailoverTest):
    """The leader's disk fills up: it gives its lease up at once and a
    follower takes over, instead of the shard stalling until space is
    freed."""

    n0_tmpfs_bytes = 64 << 20

    # Only this test of the base class's runs here.
    test_kill_9_of_the_leader_loses_no_acknowledged_invoice = None
    test_a_paused_leader_acknowledges_nothing_and_sets_its_tail_aside = None
    test_without_etcd_nothing_is_acknowledged_and_reads_go_on = None
    test_paused_followers_hold_writes_back_and_release_them = None

    def test_a_leader_whose_disk_is_full_hands_over(self):
        old = self.leader()
        self.assertEqual(old, self.nodes[0])
        self.followers_of(old)
        self.start_writers(2, 2)
        until(lambda: self.writers.total() > 50, "writes are acknowledged")
        # Fill what is left, but a little.
        junk = os.path.join(self.mounted, "junk")
        free = os.statvfs(self.mounted)
        # Unbuffered, and the close inside the try: the servers write
        # meanwhile, so the file may find less room than statvfs said
        # (a buffered file raised ENOSPC again when closed).
        try:
            with open(junk, "wb", buffering=0) as f:
                f.write(b"\0" * max(0, free.f_bavail * free.f_frsize -
                                     (64 << 10)))
        except OSError:
            pass
        filled_at = time.time()
        others = self.nodes[1:]
        new = self.leader(among=others, timeout=30)
        until(lambda: self.writers.first_after(filled_at + 0.5),
              "writes go on through the new leader", timeout=30)
        handed_over = self.writers.first_after(filled_at + 0.5) - filled_at
        print("\nfull disk to the first write acknowledged by %s: %.2fs"
              % (new.address, handed_over))
        self.assertTrue(any("gave the leadership up: the event log refuses "
                            "writes" in line for line in old.output),
                        "".join(old.output[-30:]))
        # Space back: the old leader rejoins as a follower (started again
        # if its restart found the disk full).
        os.remove(junk)
        if not old.running():
            old.start()
        self.rejoined_with_every_acknowledged_write(old, new)


class PartitionTest(FailoverTest):
    """The leader cut off from etcd and from its followers while clients
    still reach it (n0 reaches etcd, and its followers reach it, through
    relays the test cuts): it acknowledges nothing after its lease, a
    follower takes over, and once the network heals it rejoins."""

    test_kill_9_of_the_leader_loses_no_acknowledged_invoice = None
    test_a_paused_leader_acknowledges_nothing_and_sets_its_tail_aside = None
    test_without_etcd_nothing_is_acknowledged_and_reads_go_on = None
    test_paused_followers_hold_writes_back_and_release_them = None

    def node_flags(self, i, node):
        if i != 0:
            return super().node_flags(i, node)
        etcd_port = int(self.etcd.client.rsplit(":", 1)[1])
        self.to_etcd = Relay(etcd_port)
        self.to_n0 = Relay(int(node.address.rsplit(":", 1)[1]))
        flags = super().node_flags(i, node)
        return [f.replace(self.etcd.client,
                          "http://127.0.0.1:%d" % self.to_etcd.port)
                 .replace("--advertise-address=" + node.address,
                          "--advertise-address=127.0.0.1:%d" %
                          self.to_n0.port) for f in flags]

    def tearDown(self):
        super().tearDown()
        self.to_etcd.close()
        self.to_n0.close()

    def test_a_leader_cut_off_acknowledges_nothing_after_its_lease(self):
        old = self.leader()
        self.assertEqual(old, self.nodes[0])
        relayed = "127.0.0.1:%d" % self.to_n0.port
        until(lambda: all(n.info().leader == relayed for n in self.nodes[1:]),
              "the followers follow n0 through the relay")
        self.start_writers(2, 2)
        until(lambda: self.writers.total() > 50, "writes are acknowledged")
        cut_at = time.time()
        self.to_etcd.cut()
        self.to_n0.cut()
        # Straight to the old leader, which clients still reach: nothing
        # sent after the cut is acknowledged.
        refused = 0
        with old.channel() as ch:
            stub = invoices_pb2_grpc.InvoiceServiceStub(ch)
            while time.time() < cut_at + LEASE_SECONDS + 1:
                try:
                    stub.RecordInvoice(invoice_request(
                        "acct-1", "cut-%d" % refused, 1), timeout=1)
                    self.fail("the cut-off leader acknowledged a write")
                except grpc.RpcError:
                    refused += 1
        self.assertGreater(refused, 0)
        new = self.leader(among=self.nodes[1:], timeout=30)
        until(lambda: self.writers.first_after(cut_at + LEASE_SECONDS),
              "writes go on through the new leader", timeout=30)
        self.to_etcd.heal()
        self.to_n0.heal()
        self.rejoined_with_every_acknowledged_write(old, new)
        stub = invoices_pb2_grpc.InvoiceServiceStub(self.proxy)
        for i in range(refused):
            with self.assertRaises(grpc.RpcError) as e:
                stub.GetInvoice(invoices_pb2.GetInvoiceRequest(
                    account_id="acct-1", invoice_id="cut-%d" % i), timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    unittest.main()
