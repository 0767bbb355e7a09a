"""Three shards behind HAProxy, all started by the test on 127.0.0.1.

The end-to-end flows of e2e_test.py run through the proxy unchanged (their
channel sets the routing headers, as every client poledger ships does);
each shard's log holds only its accounts; streams through the proxy get
catch-up, live items and heartbeats; a call sent straight to the wrong shard
is WRONG_SHARD and writes nothing; a header that disagrees with the body is
INVALID_ARGUMENT; a killed shard makes only its accounts UNAVAILABLE, and
after its restart nothing acknowledged is lost; poctl works through the
proxy, its import splitting a billing run by shard.

Environment: POLEDGER_SERVER, POLEDGER_POCTL, POLEDGER_HAPROXY_CONFIG (the
generator script), PYTHONPATH (generated stubs and tests/e2e).
"""

import collections
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import zlib

import grpc

import e2e_test
import notifier_test
from aiosmtpd.controller import Controller
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc
from poledger.v1 import types_pb2

SHARDS = 3
AWS = e2e_test.AWS


def shard_of(account, n=SHARDS):
    return zlib.crc32(account.encode()) % n


def accounts_of(shard, count, n=SHARDS):
    """The first `count` "acct-K" ids of `shard`."""
    out, k = [], 0
    while len(out) < count:
        a = "acct-%d" % k
        if shard_of(a, n) == shard:
            out.append(a)
        k += 1
    return out


def free_port():
    """A port free now, below the kernel's range for outgoing connections
    (32768 and up): a port from that range can be taken by any connection
    another test opens before the server that was given it binds."""
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


class _Details(collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials",
                     "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class Routing(grpc.UnaryUnaryClientInterceptor,
              grpc.UnaryStreamClientInterceptor):
    """Sets x-poledger-account from the request's account_id, as poledger's
    clients do; a call about no account goes to `shard` (x-poledger-shard),
    as an operator addresses one."""

    def __init__(self, shard):
        self.shard = shard

    def _details(self, details, request):
        metadata = list(details.metadata or [])
        account = getattr(request, "account_id", "")
        if account:
            metadata.append(("x-poledger-account", account))
        elif self.shard is not None:
            metadata.append(("x-poledger-shard", str(self.shard)))
        return _Details(details.method, details.timeout, metadata,
                        details.credentials, details.wait_for_ready,
                        details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details, request), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details, request), request)


class Shard:
    """poledger-server --shard=I/N on 127.0.0.1: a fixed port once chosen,
    so that a restart comes back where HAProxy expects it."""

    def __init__(self, index, root, extra=()):
        self.index = index
        self.extra = list(extra)
        self.dir = os.path.join(root, "shard-%d" % index)
        os.makedirs(self.dir)
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.proc = None
        self.output = []
        self.start()

    def start(self):
        self.output = []
        self.proc = subprocess.Popen(
            [os.environ["POLEDGER_SERVER"], "--listen=" + self.address,
             "--data-dir=" + os.path.join(self.dir, "data"),
             "--shard=%d/%d" % (self.index, SHARDS),
             "--clock=manual:2026-02-01T00:00:00Z", "--heartbeat-seconds=0.5"]
            + self.extra,
            stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.output.append(line)
            if "serving" in line and "listening on" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.kill()
        raise RuntimeError("shard %d did not start: %s" %
                           (self.index, "".join(self.output)))

    def _drain(self):
        for line in self.proc.stderr:
            self.output.append(line)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        return self.proc.returncode


class Cluster:
    """SHARDS shards and HAProxy in front, configured by the project's
    generator."""

    def __init__(self, tls=None):
        """With `tls` (a Certificates), mutual TLS everywhere: callers to
        the proxy, the proxy to the shards (its certificate trusted to
        forward its callers')."""
        self.root = tempfile.mkdtemp(prefix="poledger-cluster-")
        self.shards = []
        self.haproxy = None
        self.tls = tls
        server_args, proxy_args = [], []
        if tls is not None:
            server_args = tls.server_args(self.root)
            proxy_args = tls.proxy_args()
        try:
            self.shards = [Shard(i, self.root, server_args)
                           for i in range(SHARDS)]
            self.port = free_port()
            self.address = "127.0.0.1:%d" % self.port
            config = subprocess.run(
                ["bash", os.environ["POLEDGER_HAPROXY_CONFIG"],
                 "--listen=" + self.address, "--check-interval=200ms"] +
                proxy_args + [s.address for s in self.shards],
                check=True, capture_output=True, text=True).stdout
            path = os.path.join(self.root, "haproxy.cfg")
            with open(path, "w") as f:
                f.write(config)
            self.haproxy_log = open(os.path.join(self.root, "haproxy.log"), "w")
            self.haproxy = subprocess.Popen(
                [os.environ.get("POLEDGER_HAPROXY", "haproxy"), "-f", path, "-db"], stdout=self.haproxy_log,
                stderr=subprocess.STDOUT)
            self.wait_until_up(range(SHARDS))
        except BaseException:
            self.close()
            raise

    def _channel(self, address, who):
        if self.tls is None:
            return grpc.insecure_channel(address)
        return grpc.secure_channel(address, self.tls.credentials(who))

    def channel(self, shard=None, who="admin"):
        """A channel to the proxy that routes as poledger's clients do;
        calls about no account go to `shard`. With TLS, as `who` (a
        certificate's name; None presents none)."""
        return grpc.intercept_channel(self._channel(self.address, who),
                                      Routing(shard))

    def direct(self, index, who="admin"):
        return self._channel(self.shards[index].address, who)

    def head(self, index):
        with self.direct(index) as ch:
            return log_pb2_grpc.AdminServiceStub(ch).GetServerInfo(
                log_pb2.GetServerInfoRequest(), timeout=10).head_position

    def wait_until_up(self, indexes, timeout=30):
        """Until each shard answers through the proxy (health checks passed)."""
        deadline = time.time() + timeout
        # First the proxy's port: a channel that finds it closed backs off
        # for seconds before it tries again.
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        with self._channel(self.address, "admin") as ch:
            admin = log_pb2_grpc.AdminServiceStub(ch)
            for i in indexes:
                while True:
                    try:
                        info = admin.GetServerInfo(
                            log_pb2.GetServerInfoRequest(),
                            metadata=[("x-poledger-shard", str(i))], timeout=5)
                        assert info.shard_index == i, info
                        break
                    except grpc.RpcError:
                        if time.time() > deadline:
                            raise
                        time.sleep(0.1)

    def haproxy_output(self):
        with open(os.path.join(self.root, "haproxy.log")) as f:
            return f.read()

    def close(self):
        codes = []
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait()
        if self.haproxy is not None:
            self.haproxy_log.close()
        for s in self.shards:
            codes.append(s.stop())
        shutil.rmtree(self.root, ignore_errors=True)
        return codes


def spiffe(name):
    return "spiffe://poledger.test/" + name


class Certificates:
    """Certificates made by tests/testing/make_certs.sh (the openssl
    command), and the policy the TLS cluster runs with: the proxy's own
    identity has no rights at all."""

    NAMES = ("haproxy", "purchaser-a", "viewer-a", "admin")

    def __init__(self, accounts):
        self.dir = tempfile.mkdtemp(prefix="poledger-cluster-certs-")
        subprocess.run(["bash", os.environ["POLEDGER_MAKE_CERTS"], self.dir] +
                       list(self.NAMES), check=True, capture_output=True)
        # HAProxy takes a certificate and its key in one file.
        for name, out in (("server", "proxy-server.pem"),
                          ("haproxy", "proxy-client.pem")):
            with open(self.path(out), "w") as f:
                f.write(self.read(name + ".pem").decode())
                f.write(self.read(name + ".key").decode())
        self.policy = self.path("policy.textproto")
        with open(self.policy, "w") as f:
            for a in accounts:
                f.write('bindings { identity: "%s" role: ROLE_PURCHASER '
                        'accounts: "%s" }\n' % (spiffe("purchaser-a"), a))
                f.write('bindings { identity: "%s" role: ROLE_VIEWER '
                        'accounts: "%s" }\n' % (spiffe("viewer-a"), a))
            f.write('bindings { identity: "%s" role: ROLE_ADMIN '
                    'accounts: "*" }\n' % spiffe("admin"))
            f.write('bindings { identity: "%s" role: ROLE_AUDITOR '
                    'accounts: "*" }\n' % spiffe("admin"))

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def credentials(self, who):
        if who is None:
            return grpc.ssl_channel_credentials(self.read("ca.pem"))
        return grpc.ssl_channel_credentials(
            self.read("ca.pem"), self.read(who + ".key"),
            self.read(who + ".pem"))

    def server_args(self, root):
        return ["--tls-cert=" + self.path("server.pem"),
                "--tls-key=" + self.path("server.key"),
                "--tls-client-ca=" + self.path("ca.pem"),
                "--authz-policy=" + self.policy,
                "--trusted-proxy-identity=" + spiffe("haproxy")]

    def proxy_args(self):
        return ["--tls-cert=" + self.path("proxy-server.pem"),
                "--tls-client-ca=" + self.path("ca.pem"),
                "--backend-cert=" + self.path("proxy-client.pem"),
                "--backend-ca=" + self.path("ca.pem")]

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class ProxiedServer:
    """What e2e_test's flows need of a server: a channel. Here, the proxy's,
    with calls about no account (SetTime, health) sent to ACCOUNT's shard."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.channel = cluster.channel(shard_of(e2e_test.ACCOUNT))
        self.output = []

    def stop(self):
        codes = self.cluster.close()
        return 0 if all(c == 0 for c in codes) else codes


class EndToEndThroughTheProxy(e2e_test.EndToEndTest):
    """Every flow of e2e_test.EndToEndTest, unchanged, through HAProxy."""

    def setUp(self):
        self.server = ProxiedServer(Cluster())
        ch = self.server.channel
        self.pos = po_grpc.PurchaseOrderServiceStub(ch)
        self.invoices = invoices_pb2_grpc.InvoiceServiceStub(ch)
        self.notifications = log_pb2_grpc.NotificationServiceStub(ch)
        self.log = log_pb2_grpc.EventLogServiceStub(ch)
        self.admin = log_pb2_grpc.AdminServiceStub(ch)


def error_info(err):
    """(reason, metadata, fields) of an RpcError's details."""
    reason, metadata, fields = None, {}, []
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value).details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Unpack(bad):
                fields = [v.field for v in bad.field_violations]
    return reason, metadata, fields


def create_request(account, po_id, amount=1000):
    return po_pb2.CreatePurchaseOrderRequest(
        account_id=account, purchase_order=e2e_test.new_po(po_id, amount))


def invoice_request(account, invoice_id, amount):
    return invoices_pb2.RecordInvoiceRequest(
        account_id=account, invoice=invoices_pb2.Invoice(
            invoice_id=invoice_id, bill_from=AWS,
            category=types_pb2.INVOICE_CATEGORY_MONTHLY_USAGE,
            billing_period="2026-03", amount=e2e_test.money(amount)))


class ClusterTest(unittest.TestCase):

    def setUp(self):
        self.cluster = Cluster()
        self.channel = self.cluster.channel()
        self.pos = po_grpc.PurchaseOrderServiceStub(self.channel)
        self.invoices = invoices_pb2_grpc.InvoiceServiceStub(self.channel)

    def tearDown(self):
        self.channel.close()
        output = "".join("".join(s.output) for s in self.cluster.shards)
        self.assertEqual(self.cluster.close(), [0] * SHARDS, output)

    def test_each_shards_log_holds_only_its_accounts(self):
        accounts = ["acct-%d" % k for k in range(30)]
        for a in accounts:
            self.pos.CreatePurchaseOrder(create_request(a, "po"), timeout=10)
            self.invoices.RecordInvoice(invoice_request(a, "inv", 10), timeout=10)
        seen = set()
        for i in range(SHARDS):
            with self.cluster.direct(i) as ch:
                events = log_pb2_grpc.EventLogServiceStub(ch).ReadEvents(
                    log_pb2.ReadEventsRequest(page_size=1000), timeout=10).events
            owners = {shard_of(e.account_id) for e in events}
            self.assertEqual(owners, {i})
            mine = {e.account_id for e in events}
            self.assertEqual(mine, {a for a in accounts if shard_of(a) == i})
            self.assertEqual(len(events), 2 * len(mine))
            seen |= mine
        self.assertEqual(seen, set(accounts))

    def test_streams_through_the_proxy_catch_up_follow_and_beat(self):
        account = accounts_of(2, 1)[0]
        self.pos.CreatePurchaseOrder(create_request(account, "po", 1000),
                                     timeout=10)
        self.invoices.RecordInvoice(invoice_request(account, "inv-1", 100),
                                    timeout=10)
        events = log_pb2_grpc.EventLogServiceStub(self.channel).SubscribeEvents(
            log_pb2.SubscribeEventsRequest(account_id=account), timeout=30)
        notes = log_pb2_grpc.NotificationServiceStub(
            self.channel).SubscribeNotifications(
                log_pb2.SubscribeNotificationsRequest(account_id=account),
                timeout=30)
        caught_up = [m for m in self._until(events, "caught_up")]
        self.assertEqual([m.event.event_type for m in caught_up
                          if m.HasField("event")],
                         ["purchase_order_created", "invoice_recorded"])
        list(self._until(notes, "caught_up"))
        # Idle: heartbeats (every 0.5 s) come through the proxy.
        list(self._until(events, "heartbeat"))
        list(self._until(notes, "heartbeat"))
        # Live: the invoice that crosses 75% arrives on both.
        self.invoices.RecordInvoice(invoice_request(account, "inv-2", 200),
                                    timeout=10)
        live = [m for m in self._until(events, "event")]
        self.assertEqual(live[-1].event.event_type, "invoice_recorded")
        note = [m for m in self._until(notes, "notification")][-1]
        self.assertEqual(note.notification.invoice_id, "inv-2")
        self.assertEqual(note.notification.threshold_percent, 75)
        events.cancel()
        notes.cancel()

    @staticmethod
    def _until(stream, kind):
        """The messages of `stream` up to and including the first `kind`."""
        for message in stream:
            yield message
            if message.HasField(kind):
                return

    def test_the_wrong_shard_refuses_and_writes_nothing(self):
        account = accounts_of(1, 1)[0]
        before = [self.cluster.head(i) for i in range(SHARDS)]
        with self.cluster.direct(0) as ch:
            with self.assertRaises(grpc.RpcError) as ctx:
                po_grpc.PurchaseOrderServiceStub(ch).CreatePurchaseOrder(
                    create_request(account, "po"), timeout=10)
        self.assertEqual(ctx.exception.code(),
                         grpc.StatusCode.FAILED_PRECONDITION)
        reason, metadata, _ = error_info(ctx.exception)
        self.assertEqual(reason, "WRONG_SHARD")
        self.assertEqual(metadata, {"owning_shard": "1", "shard_count": "3"})
        self.assertEqual([self.cluster.head(i) for i in range(SHARDS)], before)

    def test_a_header_that_disagrees_with_the_body_is_invalid(self):
        a, b = accounts_of(0, 1)[0], accounts_of(1, 1)[0]
        before = [self.cluster.head(i) for i in range(SHARDS)]
        plain = grpc.insecure_channel(self.cluster.address)
        with self.assertRaises(grpc.RpcError) as ctx:
            po_grpc.PurchaseOrderServiceStub(plain).CreatePurchaseOrder(
                create_request(b, "po"), metadata=[("x-poledger-account", a)],
                timeout=10)
        plain.close()
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        reason, _, fields = error_info(ctx.exception)
        self.assertEqual((reason, fields), ("INVALID_FIELD", ["account_id"]))
        self.assertEqual([self.cluster.head(i) for i in range(SHARDS)], before)

    def test_a_killed_shard_takes_only_its_accounts_and_loses_nothing(self):
        by_shard = {i: accounts_of(i, 3) for i in range(SHARDS)}
        acknowledged = collections.defaultdict(list)
        for i, accounts in by_shard.items():
            for a in accounts:
                self.pos.CreatePurchaseOrder(create_request(a, "po", 10 ** 6),
                                             timeout=10)
        # Writers on every shard while shard 1 is killed.
        stop = threading.Event()
        lock = threading.Lock()
        outcomes = collections.Counter()

        def writer(account):
            n = 0
            while not stop.is_set():
                n += 1
                invoice_id = "inv-%d" % n
                try:
                    self.invoices.RecordInvoice(
                        invoice_request(account, invoice_id, 1), timeout=5)
                    with lock:
                        acknowledged[account].append(invoice_id)
                        outcomes[(shard_of(account), "ok")] += 1
                except grpc.RpcError as e:
                    with lock:
                        outcomes[(shard_of(account), e.code().name)] += 1
                    time.sleep(0.01)

        def count(shard, outcome):
            with lock:
                return outcomes[(shard, outcome)]

        def until(predicate, what, timeout=20):
            # Polls: how soon the callers of a dead shard hear UNAVAILABLE
            # depends on the proxy's health checks and connection retries
            # (about a second each), longer on a loaded machine.
            deadline = time.time() + timeout
            while not predicate():
                if time.time() > deadline:
                    with lock:
                        self.fail("%s: %s" % (what, dict(outcomes)))
                time.sleep(0.05)

        threads = [threading.Thread(target=writer, args=(a,))
                   for accounts in by_shard.values() for a in accounts]
        for t in threads:
            t.start()
        ok_down = collections.Counter()
        try:
            until(lambda: all(count(i, "ok") > 0 for i in range(SHARDS)),
                  "every shard takes writes")
            self.cluster.shards[1].kill()
            # While it is down: its accounts are UNAVAILABLE, the others work.
            until(lambda: count(1, "UNAVAILABLE") > 0,
                  "shard 1's writers hear UNAVAILABLE")
            for a in by_shard[1]:
                with self.assertRaises(grpc.RpcError) as ctx:
                    self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
                        account_id=a, purchase_order_id="po"), timeout=5)
                self.assertEqual(ctx.exception.code(),
                                 grpc.StatusCode.UNAVAILABLE)
            for i in (0, 2):
                for a in by_shard[i]:
                    self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
                        account_id=a, purchase_order_id="po"), timeout=5)
            ok_down = {i: count(i, "ok") for i in range(SHARDS)}
            until(lambda: all(count(i, "ok") > ok_down[i] for i in (0, 2)),
                  "shards 0 and 2 take writes while shard 1 is down")
        finally:
            if self.cluster.shards[1].proc.poll() is not None:
                self.cluster.shards[1].start()
            try:
                self.cluster.wait_until_up([1])
                until(lambda: count(1, "ok") > ok_down[1],
                      "shard 1 takes writes again after its restart")
            finally:
                stop.set()
                for t in threads:
                    t.join()
        # Every acknowledged invoice is there, once; nothing else was written.
        for accounts in by_shard.values():
            for a in accounts:
                for invoice_id in acknowledged[a]:
                    inv = self.invoices.GetInvoice(invoices_pb2.GetInvoiceRequest(
                        account_id=a, invoice_id=invoice_id), timeout=10)
                    self.assertEqual(inv.invoice_id, invoice_id)
                po = self.pos.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
                    account_id=a, purchase_order_id="po"), timeout=10)
                # Unacknowledged attempts (a timeout) may have been recorded
                # too; acknowledged ones must all be.
                spent = 10 ** 6 - po.line_items[0].balance.units
                self.assertGreaterEqual(spent, len(acknowledged[a]), a)

    def test_poctl_works_through_the_proxy(self):
        poctl = os.environ["POLEDGER_POCTL"]

        def run(*args, account=None):
            cmd = [poctl, "--server=" + self.cluster.address]
            if account:
                cmd.append("--account=" + account)
            return subprocess.run(cmd + list(args), capture_output=True,
                                  text=True, timeout=60)

        accounts = [accounts_of(i, 1)[0] for i in range(SHARDS)]
        for a in accounts:
            r = run("po", "create", "--id", "PO-1", "--bill-from", AWS,
                    "--effective", "2026-01", "--expiration", "2026-12",
                    "--contact", "Finance <fin@example.com>", account=a)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = run("po", "line", "add", "PO-1", "--line", "1", "--type", "all",
                    "--start", "2026-01", "--end", "2026-12", "--amount",
                    "1000", account=a)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = run("po", "get", "PO-1", account=a)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("PO-1", r.stdout)
        # A billing run of every shard's accounts in one file.
        csv = os.path.join(self.cluster.root, "run.csv")
        with open(csv, "w") as f:
            f.write("account_id,invoice_id,bill_from,category,billing_period,"
                    "amount,currency\n")
            for k in range(12):
                f.write('%s,INV-%d,"%s",monthly-usage,2026-03,10,USD\n'
                        % (accounts[k % SHARDS], k, AWS))
        r = run("invoice", "import", csv)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(^|\n)recorded +12\n")
        r = run("invoice", "import", csv)
        self.assertRegex(r.stdout, r"already recorded +12")
        for i, a in enumerate(accounts):
            with self.cluster.direct(i) as ch:
                events = log_pb2_grpc.EventLogServiceStub(ch).ReadEvents(
                    log_pb2.ReadEventsRequest(page_size=1000), timeout=10).events
            self.assertEqual(
                sum(e.event_type == "invoice_recorded" for e in events), 4)
        # Admin calls go to the shard --shard names.
        r = run("--shard=2", "-o", "json", "admin", "info")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r'"shard_index": 2')
        self.assertRegex(r.stdout, r'"role": "leader"')
        r = run("--shard=2", "admin", "info")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"role\s+leader in term 0\n")


    def test_the_auditor_verifies_every_shard(self):
        audit = os.environ["POLEDGER_AUDIT"]
        accounts = ["acct-%d" % k for k in range(9)]
        for a in accounts:
            self.pos.CreatePurchaseOrder(create_request(a, "po"), timeout=10)
        servers = [s.address for s in self.cluster.shards]
        dirs = [os.path.join(s.dir, "data") for s in self.cluster.shards]
        for source in ("--server=" + ",".join(servers),
                       "--data-dir=" + ",".join(dirs)):
            r = subprocess.run([audit, "verify", source], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            for i in range(SHARDS):
                self.assertIn("shard %d of 3:\nrecords: %d\n" % (
                    i, sum(shard_of(a) == i for a in accounts)), r.stdout)
            self.assertTrue(r.stdout.endswith("OK\n"), r.stdout)
        # Listed in another order, the shards hold accounts not theirs.
        r = subprocess.run(
            [audit, "verify", "--server=" + ",".join(reversed(servers))],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("WRONG SHARD: ", r.stdout)
        # An account's export reads the shard that holds it.
        r = subprocess.run([audit, "export", "--server=" + ",".join(servers),
                            "--account=acct-4"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 1)
        self.assertIn("acct-4", r.stdout)
        r = subprocess.run([audit, "export", "--server=" + ",".join(servers)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_the_notifier_follows_every_shard(self):
        mailbox = notifier_test.Mailbox()
        smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
        smtp.start()
        checkpoint = os.path.join(self.cluster.root, "notifier.checkpoint")
        log = open(os.path.join(self.cluster.root, "notifier.log"), "w")
        notifier = subprocess.Popen(
            [os.environ["POLEDGER_NOTIFIER"],
             "--server=" + ",".join(s.address for s in self.cluster.shards),
             "--smtp-url=smtp://127.0.0.1:%d" % smtp.port,
             "--from=poledger@example.com", "--checkpoint=" + checkpoint,
             "--retry-initial-ms=50"], stderr=log)
        try:
            # One alert on each shard: 1000 USD lines, 300 USD invoiced.
            accounts = [accounts_of(i, 1)[0] for i in range(SHARDS)]
            for a in accounts:
                self.pos.CreatePurchaseOrder(create_request(a, "po"), timeout=10)
                self.invoices.RecordInvoice(invoice_request(a, "inv", 300),
                                            timeout=10)
            messages = mailbox.wait_for(SHARDS)
            self.assertEqual(len(messages), SHARDS)
            bodies = "".join(m.get_payload() for _, m in messages)
            for a in accounts:
                self.assertIn("Account: %s" % a, bodies)
        finally:
            notifier.send_signal(signal.SIGTERM)
            code = notifier.wait(timeout=30)
            smtp.stop()
            log.close()
        self.assertEqual(code, 0)
        # Each shard's log has its own positions, and its own checkpoint.
        for i in range(SHARDS):
            with open("%s.%d" % (checkpoint, i)) as f:
                self.assertGreater(int(f.read()), 0)
        self.assertFalse(os.path.exists(checkpoint))


class TlsClusterTest(unittest.TestCase):
    """Mutual TLS through the proxy: the shard authorizes the caller whose
    certificate the proxy verified and forwarded, never the proxy, and a
    forwarded-certificate header from anyone else counts for nothing."""

    def setUp(self):
        self.accounts = [accounts_of(i, 1)[0] for i in range(SHARDS)]
        self.certs = Certificates(self.accounts)
        self.cluster = Cluster(self.certs)

    def tearDown(self):
        output = "".join("".join(s.output) for s in self.cluster.shards)
        self.assertEqual(self.cluster.close(), [0] * SHARDS, output)
        self.certs.close()

    def stubs(self, who):
        ch = self.cluster.channel(who=who)
        self.addCleanup(ch.close)
        return po_grpc.PurchaseOrderServiceStub(ch)

    def test_each_caller_is_authorized_as_itself_through_the_proxy(self):
        purchaser, viewer = self.stubs("purchaser-a"), self.stubs("viewer-a")
        for a in self.accounts:
            purchaser.CreatePurchaseOrder(create_request(a, "po"), timeout=10)
            viewer.GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
                account_id=a, purchase_order_id="po"), timeout=10)
        with self.assertRaises(grpc.RpcError) as ctx:
            viewer.CreatePurchaseOrder(create_request(self.accounts[0], "po-2"),
                                       timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        # No certificate: the proxy lets the call through and the shard
        # refuses it; the proxy's own identity is never used.
        with self.assertRaises(grpc.RpcError) as ctx:
            self.stubs(None).GetPurchaseOrder(po_pb2.GetPurchaseOrderRequest(
                account_id=self.accounts[0], purchase_order_id="po"), timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        # The log names the caller.
        for i, a in enumerate(self.accounts):
            with self.cluster.direct(i) as ch:
                events = log_pb2_grpc.EventLogServiceStub(ch).ReadEvents(
                    log_pb2.ReadEventsRequest(page_size=100), timeout=10).events
            self.assertEqual([e.actor for e in events], [spiffe("purchaser-a")])
        ch = self.cluster.channel(shard=1, who="admin")
        info = log_pb2_grpc.AdminServiceStub(ch).GetServerInfo(
            log_pb2.GetServerInfoRequest(), timeout=10)
        ch.close()
        self.assertEqual((info.caller_identity, info.shard_index),
                         (spiffe("admin"), 1))

    def test_a_forwarded_certificate_counts_only_from_the_proxy(self):
        import base64
        import ssl
        forged = base64.b64encode(ssl.PEM_cert_to_DER_cert(
            self.certs.read("purchaser-a.pem").decode())).decode()
        request = create_request(self.accounts[0], "po")
        # Through the proxy: replaced by the caller's own certificate.
        with self.assertRaises(grpc.RpcError) as ctx:
            self.stubs("viewer-a").CreatePurchaseOrder(
                request, metadata=[("x-poledger-client-cert", forged)],
                timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        # Straight to the shard: the header of a caller that is not the
        # proxy is ignored.
        shard = shard_of(self.accounts[0])
        with self.cluster.direct(shard, who="viewer-a") as ch:
            with self.assertRaises(grpc.RpcError) as ctx:
                po_grpc.PurchaseOrderServiceStub(ch).CreatePurchaseOrder(
                    request, metadata=[("x-poledger-client-cert", forged)],
                    timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(self.cluster.head(shard), 0)


if __name__ == "__main__":
    unittest.main()
