"""Personal data (README "Personal data"): contacts sealed with their
subjects' keys, and a subject erased everywhere, against the built
poledger-server on 127.0.0.1: its answers over gRPC and HTTP, its streams
catching up and live, the whole log, snapshots, a read replica, a new
backup and the raw bytes of every data directory. Then the key-encryption
key's refusals.

Environment: POLEDGER_SERVER, POLEDGER_AUDIT, POLEDGER_DATA_KEY (the key
the servers start with), PYTHONPATH (stubs, tests/e2e).
"""

import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import field_mask_pb2

from e2e_test import ACCOUNT, AWS, Server, error_info, money, new_po
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc

OTHER = "210987654321"
ERIN = "erin.erasable@example.org"
ERIN_NAME = "Erin Erasable"
KEEP = "keep.me@example.com"
# What must appear nowhere once Erin is erased (and, sealed, never on disk).
SECRETS = [ERIN.encode(), ERIN_NAME.encode(), b"+44 20 7946 0999"]


def until(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting until " + what)


def files_holding(directory, needles):
    """The files under `directory` whose raw bytes hold any of `needles`."""
    found = []
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(path)
    return found


class Stream:
    """A server stream read on a thread into a queue."""

    def __init__(self, call):
        self.call = call
        self.items = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for item in self.call:
                self.items.put(item)
        except grpc.RpcError:
            pass

    def take(self, predicate, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                item = self.items.get(timeout=0.2)
            except queue.Empty:
                continue
            if predicate(item):
                return item
        raise AssertionError("no such item on the stream")


class ErasureTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="poledger-erasure-")
        self.data = os.path.join(self.dir, "data")
        self.server = Server(extra=["--http-listen=127.0.0.1:0"],
                             data_dir=self.data)
        self.stubs(self.server)
        self.replica = None

    def stubs(self, server):
        ch = server.channel
        self.pos = po_grpc.PurchaseOrderServiceStub(ch)
        self.invoices = invoices_pb2_grpc.InvoiceServiceStub(ch)
        self.notifications = log_pb2_grpc.NotificationServiceStub(ch)
        self.log = log_pb2_grpc.EventLogServiceStub(ch)
        self.admin = log_pb2_grpc.AdminServiceStub(ch)

    def tearDown(self):
        self.server.channel.close()
        code = self.server.stop()
        if self.replica is not None:
            self.replica.channel.close()
            self.replica.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.assertEqual(code, 0, "".join(self.server.output))

    def restart(self, kill):
        """Stops the server (kill -9 or SIGTERM) and starts it again on the
        same data directory."""
        self.server.channel.close()
        if kill:
            self.server.proc.kill()
        else:
            self.server.proc.send_signal(signal.SIGTERM)
        self.server.proc.wait(timeout=30)
        self.server.stop()
        self.server = Server(extra=["--http-listen=127.0.0.1:0"],
                             data_dir=self.data)
        self.stubs(self.server)

    def create(self, account, po_id, contacts):
        po = new_po(po_id, 1000, contacts=False)
        po.balance_thresholds.extend([50, 10])
        for name, email, phone in contacts:
            po.contacts.add(name=name, email=email, phone=phone)
        return self.pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
            account_id=account, purchase_order=po), timeout=10)

    def get(self, account, po_id, pos=None):
        return (pos or self.pos).GetPurchaseOrder(
            po_pb2.GetPurchaseOrderRequest(account_id=account,
                                           purchase_order_id=po_id),
            timeout=10)

    def record(self, account, invoice_id, amount):
        return self.invoices.RecordInvoice(invoices_pb2.RecordInvoiceRequest(
            account_id=account, invoice=invoices_pb2.Invoice(
                invoice_id=invoice_id, bill_from=AWS,
                category=1, billing_period="2026-03",
                amount=money(amount))), timeout=10)

    def http_get_po(self, account, po_id):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port,
                                          timeout=10)
        try:
            conn.request("POST",
                         "/poledger.v1.PurchaseOrderService/GetPurchaseOrder",
                         body=json.dumps({"accountId": account,
                                          "purchaseOrderId": po_id}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def everything_answered(self):
        """Every answer of the API about both accounts, as bytes: purchase
        orders over gRPC and HTTP, notifications, the whole log."""
        out = []
        for account in (ACCOUNT, OTHER):
            pos = self.pos.ListPurchaseOrders(po_pb2.ListPurchaseOrdersRequest(
                account_id=account, page_size=100), timeout=10)
            out.append(pos.SerializeToString())
            for po in pos.purchase_orders:
                status, body = self.http_get_po(account, po.purchase_order_id)
                self.assertEqual(status, 200, body)
                out.append(body)
                out.append(self.log.GetPurchaseOrderAt(
                    log_pb2.GetPurchaseOrderAtRequest(
                        account_id=account,
                        purchase_order_id=po.purchase_order_id, position=10**9),
                    timeout=10).SerializeToString())
            out.append(self.notifications.ListNotifications(
                log_pb2.ListNotificationsRequest(account_id=account,
                                                 page_size=100),
                timeout=10).SerializeToString())
        out.append(self.log.ReadEvents(log_pb2.ReadEventsRequest(
            page_size=1000), timeout=10).SerializeToString())
        return b"".join(out)

    def test_an_erased_contact_appears_nowhere_and_the_digest_holds(self):
        erin = (ERIN_NAME, ERIN, "+44 20 7946 0999")
        keep = ("Keep", KEEP, "")
        # Erin is on two purchase orders of ACCOUNT and one of OTHER.
        self.create(ACCOUNT, "po-1", [erin, keep])
        self.create(ACCOUNT, "po-2", [keep, erin])
        self.create(OTHER, "po-3", [erin])
        # Balance alerts: notifications with Erin among the recipients.
        self.record(ACCOUNT, "inv-1", 800)
        self.record(OTHER, "inv-2", 800)
        # A read replica copies the log, keys included.
        self.replica = Server(extra=["--follow=" + self.server.address])
        rpos = po_grpc.PurchaseOrderServiceStub(self.replica.channel)

        # Before the erasure the API shows her (opened from the sealed
        # form), the whole log holds her sealed, and no byte on disk holds
        # her.
        got = self.get(ACCOUNT, "po-1")
        self.assertEqual([(c.name, c.email) for c in got.contacts],
                         [(ERIN_NAME, ERIN), ("Keep", KEEP)])
        self.assertFalse(got.contacts[0].erased)
        self.assertEqual(len(got.contacts[0].subject_ref), 32)
        self.assertEqual(got.contacts[0].sealed, b"")
        self.assertIn(ERIN.encode(), self.everything_answered())
        whole_log = self.log.ReadEvents(log_pb2.ReadEventsRequest(
            page_size=1000), timeout=10)
        created = [e for e in whole_log.events
                   if e.event_type == "purchase_order_created"]
        self.assertEqual(len(created), 3)
        sealed = created[0].payload.purchase_order_created.header.contacts[0]
        self.assertEqual((sealed.email, sealed.subject_ref),
                         ("", got.contacts[0].subject_ref))
        self.assertGreater(len(sealed.sealed), 28)
        self.assertNotIn(ERIN.encode(), whole_log.SerializeToString())
        self.assertEqual(files_holding(self.data, SECRETS), [])
        until(lambda: self._contacts(rpos) == [ERIN, KEEP],
              "the replica opens the contacts")

        # A backup made before the erasure.
        early = os.path.join(self.dir, "backup-before")
        self.admin.CreateBackup(log_pb2.CreateBackupRequest(directory=early),
                                timeout=60)

        # Streams opened before the erasure.
        live_notes = Stream(self.notifications.SubscribeNotifications(
            log_pb2.SubscribeNotificationsRequest(account_id=ACCOUNT)))
        live_notes.take(lambda r: r.HasField("caught_up"))
        digest_before = self.log.GetLogDigest(log_pb2.GetLogDigestRequest(),
                                              timeout=10)

        # Erased everywhere, by her address in another case.
        erased = self.admin.ErasePersonalData(
            log_pb2.ErasePersonalDataRequest(
                email=ERIN.upper(), request_reference="DSR-2026-0042"),
            timeout=20)
        self.assertEqual(sorted(e.account_id for e in erased.erased),
                         sorted([ACCOUNT, OTHER]))
        self.assertTrue(all(e.position > 0 for e in erased.erased), erased)
        # Again: nothing left to erase; the same accounts, position 0.
        again = self.admin.ErasePersonalData(
            log_pb2.ErasePersonalDataRequest(email=ERIN), timeout=20)
        self.assertEqual([e.position for e in again.erased], [0, 0])
        with self.assertRaises(grpc.RpcError) as e:
            self.admin.ErasePersonalData(log_pb2.ErasePersonalDataRequest(
                email="nobody@example.org"), timeout=20)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(error_info(e.exception)[0], "SUBJECT_NOT_FOUND")
        with self.assertRaises(grpc.RpcError) as e:
            self.admin.ErasePersonalData(log_pb2.ErasePersonalDataRequest(
                account_id=ACCOUNT), timeout=20)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error_info(e.exception)[1], ["email"])

        # A notification raised after the erasure, live on the open stream.
        self.record(ACCOUNT, "inv-3", 150)
        note = live_notes.take(lambda r: r.HasField("notification") and
                               r.notification.invoice_id == "inv-3")
        self.assertEqual(
            sorted((c.erased, c.email) for c in note.notification.recipients),
            [(False, KEEP), (True, "[erased]")])
        live_notes.call.cancel()

        # The purchase order still shows two contacts, one erased, and its
        # balance is what it was.
        got = self.get(ACCOUNT, "po-1")
        self.assertEqual([(c.erased, c.name, c.email) for c in got.contacts],
                         [(True, "[erased]", "[erased]"),
                          (False, "Keep", KEEP)])
        self.assertEqual(self.get(ACCOUNT, "po-2").line_items[0].balance.units,
                         50)
        # An update may send the contacts back as read: the erased one is
        # kept, by its reference; one it does not hold is refused.
        as_read = po_pb2.PurchaseOrder(purchase_order_id="po-1",
                                       description="renamed")
        as_read.contacts.extend(got.contacts)
        updated = self.pos.UpdatePurchaseOrder(
            po_pb2.UpdatePurchaseOrderRequest(
                account_id=ACCOUNT, purchase_order=as_read,
                update_mask=field_mask_pb2.FieldMask(
                    paths=["description", "contacts"])),
            timeout=10)
        self.assertEqual([(c.erased, c.email) for c in updated.contacts],
                         [(True, "[erased]"), (False, KEEP)])
        as_read.contacts[0].subject_ref = b"\x01" * 32
        with self.assertRaises(grpc.RpcError) as e:
            self.pos.UpdatePurchaseOrder(po_pb2.UpdatePurchaseOrderRequest(
                account_id=ACCOUNT, purchase_order=as_read,
                update_mask=field_mask_pb2.FieldMask(paths=["contacts"])),
                timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error_info(e.exception)[1],
                         ["purchase_order.contacts[0].erased"])
        status, body = self.http_get_po(ACCOUNT, "po-2")
        self.assertEqual(status, 200)
        self.assertEqual([c.get("erased", False) for c in
                          json.loads(body)["contacts"]], [False, True])
        # Nowhere in any answer, nor in a stream catching up.
        answered = self.everything_answered()
        for secret in SECRETS:
            self.assertNotIn(secret, answered)
        caught_up = Stream(self.notifications.SubscribeNotifications(
            log_pb2.SubscribeNotificationsRequest(account_id=ACCOUNT)))
        first = caught_up.take(lambda r: r.HasField("notification"))
        # po-2's (Keep, then Erin), raised by inv-1 before the erasure.
        self.assertEqual((first.notification.purchase_order_id,
                          [c.erased for c in first.notification.recipients]),
                         ("po-2", [False, True]))
        caught_up.call.cancel()
        # Its state at the first position keeps the count of contacts.
        at = self.log.GetPurchaseOrderAt(log_pb2.GetPurchaseOrderAtRequest(
            account_id=ACCOUNT, purchase_order_id="po-1", position=1),
            timeout=10)
        self.assertEqual([c.erased for c in at.purchase_order.contacts],
                         [True, False])

        # The digest of the log as it was before the erasure is unchanged.
        digest_at = self.log.GetLogDigest(log_pb2.GetLogDigestRequest(
            at_position=digest_before.head_position), timeout=10)
        self.assertEqual(digest_at.chain_hash, digest_before.chain_hash)

        # The replica receives the erasure and shows it.
        until(lambda: self._contacts(rpos)[0] == "[erased]",
              "the replica erases")

        # A snapshot, and a new backup.
        self.admin.CreateSnapshot(log_pb2.CreateSnapshotRequest(), timeout=20)
        backup = os.path.join(self.dir, "backup")
        self.admin.CreateBackup(log_pb2.CreateBackupRequest(directory=backup),
                                timeout=60)

        # kill -9 and restart: still erased.
        self.restart(kill=True)
        got = self.get(ACCOUNT, "po-2")
        self.assertEqual([c.erased for c in got.contacts], [False, True])
        # Added again, she is new data under a new key; the old stays erased.
        self.create(ACCOUNT, "po-4", [(ERIN_NAME, ERIN, "")])
        self.assertEqual(self.get(ACCOUNT, "po-4").contacts[0].email, ERIN)
        self.assertTrue(self.get(ACCOUNT, "po-1").contacts[0].erased)
        self.admin.ErasePersonalData(log_pb2.ErasePersonalDataRequest(
            account_id=ACCOUNT, email=ERIN), timeout=20)
        self.assertTrue(self.get(ACCOUNT, "po-4").contacts[0].erased)
        # A clean stop flushes the memtables: every byte on disk, the
        # leader's, the replica's and the backup's; then the leader's again
        # after a full compaction (RocksDB's ldb, from rocksdb-tools).
        self.restart(kill=False)
        for d in (self.data, self.replica.data_dir, backup):
            self.assertEqual(files_holding(d, SECRETS), [], d)
        self.server.channel.close()
        self.server.proc.send_signal(signal.SIGTERM)
        self.server.proc.wait(timeout=30)
        compacted = subprocess.run(["ldb", "--db=" + self.data, "compact"],
                                   capture_output=True, text=True, timeout=120)
        self.assertEqual(compacted.returncode, 0,
                         compacted.stdout + compacted.stderr)
        self.assertEqual(files_holding(self.data, SECRETS), [])
        self.restart(kill=False)
        self.assertTrue(self.get(ACCOUNT, "po-4").contacts[0].erased)
        # The backup made before the erasure still reads her (README: keep
        # backups no longer than the retention); restored, she is erased
        # again.
        restored = Server(data_dir=early)
        try:
            rpos = po_grpc.PurchaseOrderServiceStub(restored.channel)
            self.assertEqual(self._contacts(rpos), [ERIN, KEEP])
            log_pb2_grpc.AdminServiceStub(restored.channel).ErasePersonalData(
                log_pb2.ErasePersonalDataRequest(email=ERIN), timeout=20)
            self.assertEqual(self._contacts(rpos), ["[erased]", KEEP])
        finally:
            restored.channel.close()
            restored.stop()
        # The auditor verifies the whole log, erasures included.
        r = subprocess.run([os.environ["POLEDGER_AUDIT"], "verify",
                            "--data-dir=" + backup], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def _contacts(self, pos):
        try:
            return [c.email for c in self.get(ACCOUNT, "po-1", pos).contacts]
        except grpc.RpcError:
            return []


class DataKeyTest(unittest.TestCase):
    """The key-encryption key: required once personal data exists, refused
    when it is not the one, never in the data directory."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="poledger-key-")
        self.data = os.path.join(self.dir, "data")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def refused(self, env_key, extra=()):
        """Starts a server that must refuse to start; its stderr."""
        env = dict(os.environ)
        env.pop("POLEDGER_DATA_KEY", None)
        if env_key is not None:
            env["POLEDGER_DATA_KEY"] = env_key
        r = subprocess.run(
            [os.environ["POLEDGER_SERVER"], "--listen=127.0.0.1:0",
             "--data-dir=" + self.data] + list(extra),
            capture_output=True, text=True, timeout=60, env=env)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        return r.stderr

    def digest(self):
        """The head and digest of the log on disk, as the auditor reads it."""
        r = subprocess.run([os.environ["POLEDGER_AUDIT"], "verify",
                            "--data-dir=" + self.data], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_without_a_key_contacts_are_refused_and_nothing_is_written(self):
        env = dict(os.environ)
        key = env.pop("POLEDGER_DATA_KEY")
        try:
            os.environ.pop("POLEDGER_DATA_KEY")
            server = Server(data_dir=self.data)
        finally:
            os.environ["POLEDGER_DATA_KEY"] = key
        try:
            pos = po_grpc.PurchaseOrderServiceStub(server.channel)
            with self.assertRaises(grpc.RpcError) as e:
                pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
                    account_id=ACCOUNT, purchase_order=new_po("po")),
                    timeout=10)
            self.assertEqual(e.exception.code(),
                             grpc.StatusCode.FAILED_PRECONDITION)
            self.assertEqual(error_info(e.exception)[0], "NO_DATA_KEY")
            # Without contacts it works; erasing does not.
            pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
                account_id=ACCOUNT, purchase_order=new_po("po",
                                                          contacts=False)),
                timeout=10)
            digest = log_pb2_grpc.EventLogServiceStub(
                server.channel).GetLogDigest(log_pb2.GetLogDigestRequest(),
                                             timeout=10)
            self.assertEqual(digest.head_position, 1)
            with self.assertRaises(grpc.RpcError) as e:
                log_pb2_grpc.AdminServiceStub(server.channel).ErasePersonalData(
                    log_pb2.ErasePersonalDataRequest(email=KEEP), timeout=10)
            self.assertEqual(error_info(e.exception)[0], "NO_DATA_KEY")
        finally:
            server.channel.close()
            server.stop()

    def test_a_directory_with_personal_data_needs_its_own_key(self):
        server = Server(data_dir=self.data)
        try:
            po_grpc.PurchaseOrderServiceStub(server.channel).CreatePurchaseOrder(
                po_pb2.CreatePurchaseOrderRequest(
                    account_id=ACCOUNT, purchase_order=new_po("po")),
                timeout=10)
        finally:
            server.channel.close()
            server.stop()
        before = self.digest()
        self.assertIn("head: 1\n", before)
        err = self.refused(None)
        self.assertIn("holds sealed personal data", err)
        self.assertIn("--data-key-file", err)
        err = self.refused("ab" * 32)
        self.assertIn("does not open this data directory", err)
        err = self.refused("not a key")
        self.assertIn("64 hex digits", err)
        inside = os.path.join(self.data, "data.key")
        with open(inside, "w") as f:
            f.write(os.environ["POLEDGER_DATA_KEY"])
        err = self.refused(None, ["--data-key-file=" + inside])
        self.assertIn("inside the data directory", err)
        os.remove(inside)
        # Nothing was written by the refused starts: the log is as it was.
        self.assertEqual(self.digest(), before)
        # With the key in a file elsewhere, it starts and reads her.
        outside = self.key_file("data.key", os.environ["POLEDGER_DATA_KEY"])
        self.assertEqual(self.first_contact(outside, "po"),
                         "finance@example.com")

    def test_rotating_the_key_rewraps_every_key(self):
        server = Server(data_dir=self.data)
        try:
            pos = po_grpc.PurchaseOrderServiceStub(server.channel)
            for i in range(3):
                po = new_po("po-%d" % i, contacts=False)
                po.contacts.add(name="P%d" % i, email="p%d@example.com" % i)
                pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
                    account_id=ACCOUNT, purchase_order=po), timeout=10)
        finally:
            server.channel.close()
            server.stop()
        old = self.key_file("old.key", os.environ["POLEDGER_DATA_KEY"])
        new = self.key_file("new.key", "5e" * 32)
        wrong = self.key_file("wrong.key", "77" * 32)
        before = self.digest()

        def rotate(old_file, new_file):
            env = dict(os.environ)
            env.pop("POLEDGER_DATA_KEY")
            return subprocess.run(
                [os.environ["POLEDGER_SERVER"], "--data-dir=" + self.data,
                 "--data-key-file=" + old_file,
                 "--rotate-data-key-to=" + new_file],
                capture_output=True, text=True, timeout=60, env=env)

        r = rotate(wrong, new)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("does not open", r.stderr)
        r = rotate(old, old)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        # One secret for the account and a key per contact.
        r = rotate(old, new)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("rewrapped 4 personal data keys", r.stdout)
        self.assertEqual(self.digest(), before)
        # The old key no longer opens them; the new one does.
        self.assertIn("does not open this data directory",
                      self.refused(os.environ["POLEDGER_DATA_KEY"]))
        self.assertEqual(self.first_contact(new, "po-2"), "p2@example.com")

    def first_contact(self, key_file, po_id):
        """The first contact's address of `po_id`, read by a server given
        only `key_file` (not POLEDGER_DATA_KEY)."""
        env_key = os.environ.pop("POLEDGER_DATA_KEY")
        try:
            server = Server(data_dir=self.data,
                            extra=["--data-key-file=" + key_file])
        finally:
            os.environ["POLEDGER_DATA_KEY"] = env_key
        try:
            return po_grpc.PurchaseOrderServiceStub(
                server.channel).GetPurchaseOrder(
                    po_pb2.GetPurchaseOrderRequest(account_id=ACCOUNT,
                                                   purchase_order_id=po_id),
                    timeout=10).contacts[0].email
        finally:
            server.channel.close()
            server.stop()

    def key_file(self, name, hex_key):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(hex_key + "\n")
        os.chmod(path, 0o600)
        return path


class MigrationTest(unittest.TestCase):
    """A log written before sealing (the committed fixture, with plain
    contacts) is read as it is; copied by --migrate-log-from, its contacts
    are sealed, both logs verify, and each record's digest is mapped."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="poledger-migrate-")
        self.old = os.path.join(self.dir, "old")
        shutil.copytree(os.environ["POLEDGER_FIXTURE_LOG"], self.old)
        self.new = os.path.join(self.dir, "new")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def contacts(self, data_dir):
        """Every purchase order's contacts' addresses, by account and id."""
        server = Server(data_dir=data_dir)
        try:
            log = log_pb2_grpc.EventLogServiceStub(server.channel)
            events = log.ReadEvents(log_pb2.ReadEventsRequest(page_size=1000),
                                    timeout=10).events
            pos = po_grpc.PurchaseOrderServiceStub(server.channel)
            out = {}
            for account in sorted({e.account_id for e in events
                                   if e.account_id}):
                listed = pos.ListPurchaseOrders(po_pb2.ListPurchaseOrdersRequest(
                    account_id=account, page_size=100), timeout=10)
                for po in listed.purchase_orders:
                    out[(account, po.purchase_order_id)] = [
                        c.email for c in po.contacts]
            return out, server
        except Exception:
            server.channel.close()
            server.stop()
            raise

    def test_the_copy_seals_the_contacts_and_maps_every_digest(self):
        self.assertNotEqual(files_holding(self.old, [b"finance@example.com"]),
                            [])
        before, server = self.contacts(self.old)
        try:
            self.assertIn(["finance@example.com"], before.values())
            # Plain contacts have no key: nothing to erase.
            with self.assertRaises(grpc.RpcError) as e:
                log_pb2_grpc.AdminServiceStub(server.channel).ErasePersonalData(
                    log_pb2.ErasePersonalDataRequest(
                        email="finance@example.com"), timeout=10)
            self.assertEqual(error_info(e.exception)[0], "SUBJECT_NOT_FOUND")
        finally:
            server.channel.close()
            server.stop()
        old_digest = subprocess.run(
            [os.environ["POLEDGER_AUDIT"], "verify", "--data-dir=" + self.old],
            capture_output=True, text=True, timeout=60).stdout
        r = subprocess.run(
            [os.environ["POLEDGER_SERVER"], "--data-dir=" + self.new,
             "--migrate-log-from=" + self.old],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = [l.split() for l in r.stdout.splitlines()]
        head = int(lines[-1][0])
        self.assertIn("head: %d\n" % head, old_digest)
        self.assertIn("digest: %s" % lines[-1][1], old_digest)
        self.assertIn("old digest %s" % lines[-1][1], r.stderr)
        self.assertIn("new digest %s" % lines[-1][2], r.stderr)
        self.assertTrue(all(old != new for _, old, new in lines))
        self.assertRegex(r.stderr, r"sealing [1-9]\d* contacts")
        # Again into the same directory: refused.
        again = subprocess.run(
            [os.environ["POLEDGER_SERVER"], "--data-dir=" + self.new,
             "--migrate-log-from=" + self.old],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(again.returncode, 1)
        # The copy verifies to the new digest, holds no plain address, and
        # answers as the old log did; now the contact can be erased.
        verified = subprocess.run(
            [os.environ["POLEDGER_AUDIT"], "verify", "--data-dir=" + self.new],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(verified.returncode, 0, verified.stdout)
        self.assertIn("digest: %s" % lines[-1][2], verified.stdout)
        self.assertEqual(files_holding(self.new, [b"finance@example.com"]), [])
        after, server = self.contacts(self.new)
        try:
            self.assertEqual(after, before)
            erased = log_pb2_grpc.AdminServiceStub(
                server.channel).ErasePersonalData(
                    log_pb2.ErasePersonalDataRequest(
                        email="finance@example.com"), timeout=10)
            self.assertGreater(len(erased.erased), 0)
        finally:
            server.channel.close()
            server.stop()


if __name__ == "__main__":
    unittest.main()
