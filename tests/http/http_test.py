"""The HTTP/JSON API against a real poledger-server on 127.0.0.1: every
poledger.v1 method answers over HTTP as it does over gRPC (results, errors
and their details), bad JSON changes nothing, streams arrive as server-sent
events, and over HTTPS the same identities (client certificates, or bearer
tokens the policy holds as hashes) get the same roles and refusals, and
become the events' actor.

Environment: POLEDGER_SERVER, POLEDGER_MAKE_CERTS, PYTHONPATH (the
generated stubs and tests/e2e).
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import grpc
from google.protobuf import json_format
from google.protobuf import symbol_database

from e2e_test import ACCOUNT, AWS, Server, money, new_po
from google.rpc import status_pb2
from poledger.v1 import invoices_pb2
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import types_pb2 as T

MODULES = (po_pb2, invoices_pb2, log_pb2)
# google.rpc.Code -> HTTP, as the gateway maps them.
HTTP_STATUS = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409,
               7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501, 13: 500,
               14: 503, 15: 500, 16: 401}


def every_method():
    """Every poledger.v1 method, as its gRPC path."""
    out = set()
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                out.add("/%s/%s" % (service.full_name, method.name))
    return out


def method_descriptor(path):
    service, name = path[1:].split("/")
    for module in MODULES:
        for s in module.DESCRIPTOR.services_by_name.values():
            if s.full_name == service:
                return s.methods_by_name[name]
    raise KeyError(path)


def message_class(descriptor):
    return symbol_database.Default().GetPrototype(descriptor)


class Http:
    """A client of the HTTP/JSON API: one connection per call."""

    def __init__(self, port, context=None, token=None):
        self.port, self.context, self.token = port, context, token

    def connect(self, timeout=10):
        if self.context is None:
            return http.client.HTTPConnection("127.0.0.1", self.port,
                                              timeout=timeout)
        return http.client.HTTPSConnection("127.0.0.1", self.port,
                                           timeout=timeout,
                                           context=self.context)

    def raw(self, method, path, body=b"", headers=None):
        conn = self.connect()
        try:
            all_headers = {"Content-Type": "application/json"}
            if self.token is not None:
                all_headers["Authorization"] = "Bearer " + self.token
            all_headers.update(headers or {})
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), dict(resp.getheaders())
        finally:
            conn.close()

    def call(self, path, request):
        """POSTs `request` (a dict or a message); (HTTP status, JSON)."""
        if not isinstance(request, dict):
            request = json_format.MessageToDict(request)
        status, body, _ = self.raw("POST", path, json.dumps(request).encode())
        return status, json.loads(body)


def grpc_call(channel, path, request):
    """Calls `path` with `request` (a dict or a message) over gRPC:
    (gRPC code value, the response or the google.rpc.Status, as dicts)."""
    method = method_descriptor(path)
    request_class = message_class(method.input_type)
    response_class = message_class(method.output_type)
    if isinstance(request, dict):
        request = json_format.ParseDict(request, request_class())
    stub = channel.unary_unary(
        path, request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString)
    try:
        return 0, json_format.MessageToDict(stub(request, timeout=10))
    except grpc.RpcError as err:
        status = status_pb2.Status(code=err.code().value[0],
                                   message=err.details())
        for key, value in err.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
        return status.code, json_format.MessageToDict(status)


def read_events(conn, count, timeout=10):
    """The next `count` server-sent events of an open response: a list of
    (event name, data as a dict)."""
    events, name, deadline = [], "message", time.time() + timeout
    while len(events) < count and time.time() < deadline:
        line = conn.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
            name = "message"
    return events


class PlainHttpTest(unittest.TestCase):
    """A development server (no TLS): the API and its errors."""

    def setUp(self):
        self.server = Server(extra=["--http-listen=127.0.0.1:0"])
        self.http = Http(self.server.http_port)
        self.covered = set()

    def tearDown(self):
        self.assertEqual(self.server.stop(), 0, "".join(self.server.output))

    def digest(self):
        return grpc_call(self.server.channel,
                         "/poledger.v1.EventLogService/GetLogDigest", {})[1]

    def both(self, path, request, retry=True, ignore=()):
        """Calls over HTTP, then the same over gRPC (a write again with its
        request id: the first result); asserts the same answer."""
        self.covered.add(path)
        status, body = self.http.call(path, request)
        code, grpc_body = grpc_call(self.server.channel, path, request)
        self.assertEqual(status, HTTP_STATUS[code], (path, body, grpc_body))
        for key in ignore:
            body.pop(key, None)
            grpc_body.pop(key, None)
        self.assertEqual(body, grpc_body, path)
        return body

    def test_every_method_answers_as_over_grpc(self):
        po = json_format.MessageToDict(new_po("po-1", amount=1000))
        a = {"accountId": ACCOUNT}
        created = self.both("/poledger.v1.PurchaseOrderService/CreatePurchaseOrder",
                            dict(a, purchaseOrder=po, requestId="r1"))
        self.assertEqual(created["purchaseOrderId"], "po-1")
        self.assertEqual(created["status"], "PURCHASE_ORDER_STATUS_ACTIVE")
        ref = dict(a, purchaseOrderId="po-1")
        self.both("/poledger.v1.PurchaseOrderService/GetPurchaseOrder", ref)
        self.both("/poledger.v1.PurchaseOrderService/ListPurchaseOrders", a)
        self.both("/poledger.v1.PurchaseOrderService/UpdatePurchaseOrder",
                  dict(a, purchaseOrder={"purchaseOrderId": "po-1",
                                         "description": "cloud 2026"},
                       updateMask="description", requestId="r2"))
        line2 = json_format.MessageToDict(new_po("x").line_items[0])
        line2["lineNumber"] = 2
        self.both("/poledger.v1.PurchaseOrderService/AddLineItem",
                  dict(ref, lineItem=line2, requestId="r3"))
        self.both("/poledger.v1.PurchaseOrderService/UpdateLineItem",
                  dict(ref, lineItem={"lineNumber": 2,
                                      "amount": {"currencyCode": "USD",
                                                 "units": "50"}},
                       updateMask="amount", requestId="r4"))
        self.both("/poledger.v1.PurchaseOrderService/RemoveLineItem",
                  dict(ref, lineNumber=2, requestId="r5"))
        invoice = {"invoiceId": "inv-1", "billFrom": AWS,
                   "category": "INVOICE_CATEGORY_MONTHLY_USAGE",
                   "billingPeriod": "2026-01",
                   "amount": {"currencyCode": "USD", "units": "800"}}
        preview = self.both("/poledger.v1.InvoiceService/RecordInvoice",
                            dict(a, invoice=invoice, validateOnly=True))
        recorded = self.both("/poledger.v1.InvoiceService/RecordInvoice",
                             dict(a, invoice=invoice, requestId="r6"))
        self.assertEqual(preview["association"], recorded["association"])
        self.assertEqual(recorded["association"]["purchaseOrderId"], "po-1")
        self.both("/poledger.v1.InvoiceService/GetInvoice",
                  dict(a, invoiceId="inv-1"))
        batch = {"requests": [
            dict(a, invoice=dict(invoice, invoiceId="inv-%d" % i,
                                 amount={"currencyCode": "USD", "units": "1"}))
            for i in (2, 3)]}
        # A retried batch has the first results, marked already recorded.
        results = self.both("/poledger.v1.InvoiceService/BatchRecordInvoices",
                            batch, ignore=("results",))
        self.assertEqual(results, {})
        status, body = self.http.call(
            "/poledger.v1.InvoiceService/BatchRecordInvoices", batch)
        self.assertEqual(status, 200)
        self.assertEqual([r["invoice"]["invoiceId"] for r in body["results"]],
                         ["inv-2", "inv-3"])
        self.assertTrue(all(r["alreadyRecorded"] for r in body["results"]))
        self.both("/poledger.v1.InvoiceService/RecordMarketplaceTransaction",
                  dict(a, transaction={"transactionId": "t-1",
                                       "purchaseOrderId": "po-1",
                                       "billFrom": AWS, "month": "2026-01",
                                       "amount": {"currencyCode": "USD",
                                                  "units": "5"}},
                       requestId="r7"))
        self.both("/poledger.v1.PurchaseOrderService/ListPurchaseOrderInvoices",
                  ref)
        notes = self.both("/poledger.v1.NotificationService/ListNotifications", a)
        self.assertEqual(notes["notifications"][0]["thresholdPercent"], 75)
        events = self.both("/poledger.v1.EventLogService/ReadEvents", a)
        head = int(events["headPosition"])
        self.both("/poledger.v1.EventLogService/GetPurchaseOrderAt",
                  dict(ref, position=str(head - 3)))
        self.both("/poledger.v1.EventLogService/GetLogDigest",
                  {"atPosition": str(head)})
        changes = self.both(
            "/poledger.v1.EventLogService/ListPurchaseOrderChanges", ref)
        self.assertEqual(
            [c["eventType"] for c in changes["changes"]],
            ["purchase_order_created", "purchase_order_updated",
             "line_item_added", "line_item_updated", "line_item_removed",
             "invoice_recorded", "invoice_recorded", "invoice_recorded",
             "line_item_added"])
        # The marketplace transaction added a line (a change), then logged
        # the transaction's id (not a change of the purchase order).
        self.assertEqual(int(changes["changes"][-1]["position"]), head - 1)
        allowed = self.both("/poledger.v1.PurchaseOrderService/TestPermissions",
                            dict(a, methods=["PurchaseOrderService.GetPurchaseOrder",
                                             "AdminService.SetTime"]))
        self.assertEqual(allowed["methods"],
                         ["PurchaseOrderService.GetPurchaseOrder",
                          "AdminService.SetTime"])
        self.both("/poledger.v1.AdminService/GetServerInfo", {},
                  ignore=("uptime",))
        self.both("/poledger.v1.AdminService/CreateSnapshot", {})
        backups = tempfile.mkdtemp(prefix="poledger-http-")
        try:
            for how in ("http", "grpc"):
                request = {"directory": os.path.join(backups, how)}
                path = "/poledger.v1.AdminService/CreateBackup"
                if how == "http":
                    status, body = self.http.call(path, request)
                else:
                    status, body = grpc_call(self.server.channel, path, request)
                    status = HTTP_STATUS[status]
                self.assertEqual(status, 200, body)
                self.assertTrue(os.path.isdir(request["directory"]))
        finally:
            shutil.rmtree(backups)
        self.covered.add("/poledger.v1.AdminService/CreateBackup")
        # The purchase order's contact, erased (README "Personal data").
        status, body = self.http.call(
            "/poledger.v1.AdminService/ErasePersonalData",
            dict(a, email="finance@example.com", requestReference="t-1"))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["erased"][0]["accountId"], ACCOUNT)
        self.assertGreater(int(body["erased"][0]["position"]), 0)
        self.covered.add("/poledger.v1.AdminService/ErasePersonalData")
        got = self.both("/poledger.v1.PurchaseOrderService/GetPurchaseOrder",
                        ref)
        self.assertEqual(got["contacts"][0]["email"], "[erased]")
        self.assertTrue(got["contacts"][0]["erased"])
        self.both("/poledger.v1.AdminService/SetTime",
                  {"time": "2026-03-01T00:00:00Z"})
        status, body = self.http.call("/poledger.v1.AdminService/AdvanceTime",
                                      {"duration": "3600s"})
        self.assertEqual((status, body["now"]), (200, "2026-03-01T01:00:00Z"))
        self.covered.add("/poledger.v1.AdminService/AdvanceTime")
        self.both("/poledger.v1.PurchaseOrderService/UpdatePurchaseOrderStatus",
                  dict(ref, status="PURCHASE_ORDER_STATUS_SUSPENDED",
                       requestId="r8"))
        self.both("/poledger.v1.PurchaseOrderService/DeletePurchaseOrder",
                  dict(ref, requestId="r9"))
        # Streams, as server-sent events.
        for path, request in (
                ("/poledger.v1.NotificationService/SubscribeNotifications", a),
                ("/poledger.v1.EventLogService/SubscribeEvents", {})):
            conn = self.http.connect()
            conn.request("POST", path, body=json.dumps(request),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Content-Type"), "text/event-stream")
            first = read_events(resp, 1)
            self.assertEqual(first[0][0], "message")
            self.assertTrue("notification" in first[0][1] or
                            "event" in first[0][1], first)
            conn.close()
            self.covered.add(path)
        self.assertEqual(self.covered, every_method())

    def test_errors_are_those_of_grpc_with_their_details(self):
        a = {"accountId": ACCOUNT}
        create = "/poledger.v1.PurchaseOrderService/CreatePurchaseOrder"
        po = json_format.MessageToDict(new_po("po-1"))
        bad = dict(po, effectiveMonth="2026-13")
        body = self.both(create, dict(a, purchaseOrder=bad))
        self.assertEqual(body["code"], 3)
        self.assertIn("effective_month", json.dumps(body["details"]))
        self.both(create, dict(a, purchaseOrder=po, requestId="r1"))
        body = self.both(create, dict(a, purchaseOrder=po))  # another request
        self.assertEqual(body["code"], 6)
        body = self.both("/poledger.v1.PurchaseOrderService/GetPurchaseOrder",
                         dict(a, purchaseOrderId="nope"))
        self.assertEqual(body["code"], 5)
        self.assertEqual(body["details"][0]["reason"],
                         "PURCHASE_ORDER_NOT_FOUND")
        body = self.both(
            "/poledger.v1.PurchaseOrderService/UpdatePurchaseOrderStatus",
            dict(a, purchaseOrderId="po-1",
                 status="PURCHASE_ORDER_STATUS_SUSPENDED",
                 expectedVersion="99"))
        self.assertIn(body["code"], (9, 10))
        body = self.both("/poledger.v1.InvoiceService/BatchRecordInvoices",
                         {"requests": [a] * 1001})
        self.assertEqual(body["code"], 3)

    def test_routing_headers_reach_the_server(self):
        path = "/poledger.v1.PurchaseOrderService/ListPurchaseOrders"
        body = json.dumps({"accountId": ACCOUNT}).encode()
        status, reply, _ = self.http.raw(
            "POST", path, body, headers={"X-Poledger-Account": ACCOUNT})
        self.assertEqual(status, 200, reply)
        # As over gRPC: a header that disagrees with the body is refused.
        status, reply, _ = self.http.raw(
            "POST", path, body, headers={"X-Poledger-Account": "999999999999"})
        reply = json.loads(reply)
        self.assertEqual((status, reply["code"]), (400, 3))
        self.assertIn("x-poledger-account", reply["message"])

    def test_bad_json_unknown_fields_and_wrong_types_are_400_and_write_nothing(self):
        before = self.digest()
        path = "/poledger.v1.PurchaseOrderService/CreatePurchaseOrder"
        po = json_format.MessageToDict(new_po("po-1"))
        cases = [
            (b'{"accountId": "123456789012", ', "CreatePurchaseOrderRequest"),
            (b'[1, 2]', "CreatePurchaseOrderRequest"),
            (json.dumps({"accountId": ACCOUNT, "purchaseOrder": po,
                         "colour": "red"}).encode(), "colour"),
            (json.dumps({"accountId": ACCOUNT,
                         "purchaseOrder": dict(po, lineItems=[
                             dict(po["lineItems"][0], quantity="many")])}
                        ).encode(), "quantity"),
            (json.dumps({"accountId": ACCOUNT, "purchaseOrder": dict(
                po, status="PURCHASE_ORDER_STATUS_GONE")}).encode(), "status"),
        ]
        for body, says in cases:
            status, reply, headers = self.http.raw("POST", path, body)
            self.assertEqual(status, 400, body)
            self.assertEqual(headers["Content-Type"], "application/json")
            reply = json.loads(reply)
            self.assertEqual(reply["code"], 3)
            self.assertIn(says, reply["message"], body)
        status, reply, _ = self.http.raw(
            "POST", path, json.dumps({"accountId": ACCOUNT,
                                      "purchaseOrder": po}).encode(),
            headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 415)
        self.assertIn("application/json", json.loads(reply)["message"])
        for method, where in (("POST", "/poledger.v1.PurchaseOrderService/Nope"),
                              ("POST", "/other.Service/Get"),
                              ("GET", path)):
            status, reply, _ = self.http.raw(method, where, b"{}")
            self.assertEqual(status, 404, where)
            self.assertEqual(json.loads(reply)["code"], 12)
        status, reply, _ = self.http.raw("POST", path, b" " * (5 << 20))
        self.assertEqual(status, 413)
        self.assertEqual(self.digest(), before)

    def test_a_notification_arrives_live_on_the_event_stream(self):
        a = {"accountId": ACCOUNT}
        self.http.call("/poledger.v1.PurchaseOrderService/CreatePurchaseOrder",
                       dict(a, purchaseOrder=json_format.MessageToDict(
                           new_po("po-1", amount=1000))))
        conn = self.http.connect(timeout=15)
        conn.request("POST",
                     "/poledger.v1.NotificationService/SubscribeNotifications",
                     body=json.dumps(a),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        first = read_events(resp, 1)
        self.assertEqual(first[0][0], "message")
        self.assertIn("caughtUp", first[0][1])
        status, _ = self.http.call(
            "/poledger.v1.InvoiceService/RecordInvoice",
            dict(a, invoice={"invoiceId": "inv-1", "billFrom": AWS,
                             "category": "INVOICE_CATEGORY_MONTHLY_USAGE",
                             "billingPeriod": "2026-01",
                             "amount": {"currencyCode": "USD",
                                        "units": "900"}}))
        self.assertEqual(status, 200)
        events = []
        while not any("notification" in e[1] for e in events):
            more = read_events(resp, 1)
            self.assertTrue(more, events)
            events += more
        note = [e[1]["notification"] for e in events if "notification" in e[1]]
        self.assertEqual(note[0]["invoiceId"], "inv-1")
        self.assertEqual(note[0]["thresholdPercent"], 75)
        conn.close()
        # A refused stream gets its status before any event.
        status, body = self.http.call(
            "/poledger.v1.NotificationService/SubscribeNotifications",
            {"accountId": "not an account"})
        self.assertEqual((status, body["code"]), (400, 3))


class HttpsTest(unittest.TestCase):
    """Over HTTPS: the gRPC listener's certificates, client certificates or
    bearer tokens, and the policy's roles."""

    PURCHASER_TOKEN = "purchaser-token-0123456789"
    VIEWER_TOKEN = "viewer-token-0123456789"

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="poledger-https-")
        cls.certs = os.path.join(cls.dir, "certs")
        subprocess.run(["bash", os.environ["POLEDGER_MAKE_CERTS"], cls.certs,
                        "purchaser", "auditor", "admin"], check=True,
                       stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def cert(self, name):
        return os.path.join(self.certs, name)

    def write_policy(self, tokens):
        lines = [
            'bindings { identity: "spiffe://poledger.test/purchaser" '
            'role: ROLE_PURCHASER accounts: "%s" }' % ACCOUNT,
            'bindings { identity: "spiffe://poledger.test/auditor" '
            'role: ROLE_AUDITOR accounts: "*" }',
            'bindings { identity: "spiffe://poledger.test/admin" '
            'role: ROLE_ADMIN accounts: "*" }',
            'bindings { identity: "token:purchaser" role: ROLE_PURCHASER '
            'accounts: "%s" }' % ACCOUNT,
            'bindings { identity: "token:viewer" role: ROLE_VIEWER '
            'accounts: "%s" }' % ACCOUNT,
        ]
        for identity, token in tokens:
            lines.append('tokens { identity: "%s" sha256: "%s" }' % (
                identity, hashlib.sha256(token.encode()).hexdigest()))
        with open(self.policy, "w") as f:
            f.write("\n".join(lines) + "\n")

    def context(self, client=None):
        ctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        if client is not None:
            ctx.load_cert_chain(self.cert(client + ".pem"),
                                self.cert(client + ".key"))
        return ctx

    def setUp(self):
        self.policy = os.path.join(self.dir, "policy.textproto")
        self.write_policy([("token:purchaser", self.PURCHASER_TOKEN)])
        def read(name):
            with open(self.cert(name), "rb") as f:
                return f.read()
        auditor = grpc.ssl_channel_credentials(
            read("ca.pem"), read("auditor.key"), read("auditor.pem"))
        # The server's own copies, which a test may replace.
        self.tls = tempfile.mkdtemp(prefix="poledger-https-tls-")
        for name in ("server.pem", "server.key"):
            shutil.copy(self.cert(name), self.tls)
        self.server = Server(
            extra=["--http-listen=127.0.0.1:0",
                   "--tls-cert=" + os.path.join(self.tls, "server.pem"),
                   "--tls-key=" + os.path.join(self.tls, "server.key"),
                   "--tls-client-ca=" + self.cert("ca.pem"),
                   "--authz-policy=" + self.policy],
            credentials=auditor)
        self.port = self.server.http_port

    def tearDown(self):
        shutil.rmtree(self.tls, ignore_errors=True)
        self.assertEqual(self.server.stop(), 0, "".join(self.server.output))

    def served_name(self):
        """The subject CN of the certificate a new connection gets."""
        with socket.create_connection(("127.0.0.1", self.port), 10) as raw:
            with self.context().wrap_socket(raw,
                                            server_hostname="127.0.0.1") as s:
                subject = dict(x[0] for x in s.getpeercert()["subject"])
                return subject["commonName"]

    def test_sighup_rotates_the_https_certificate(self):
        self.assertEqual(self.served_name(), "poledger-server")
        for name in ("server.pem", "server.key"):
            shutil.copy(self.cert(name.replace("server", "server2")),
                        os.path.join(self.tls, name))
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while (self.served_name() != "poledger-server-rotated" and
               time.time() < deadline):
            time.sleep(0.1)
        self.assertEqual(self.served_name(), "poledger-server-rotated")
        # A file that does not load keeps the current certificate.
        with open(os.path.join(self.tls, "server.pem"), "w") as f:
            f.write("not a certificate\n")
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while (not any("HTTPS files kept" in line
                       for line in self.server.output) and
               time.time() < deadline):
            time.sleep(0.1)
        self.assertTrue(any("HTTPS files kept" in line
                            for line in self.server.output))
        self.assertEqual(self.served_name(), "poledger-server-rotated")
        status, _ = Http(self.port, self.context(),
                         token=self.PURCHASER_TOKEN).call(
            "/poledger.v1.PurchaseOrderService/ListPurchaseOrders",
            {"accountId": ACCOUNT})
        self.assertEqual(status, 200)

    def last_actor(self):
        code, body = grpc_call(self.server.channel,
                               "/poledger.v1.EventLogService/ReadEvents", {})
        self.assertEqual(code, 0, body)
        return body["events"][-1]["actor"]

    def create(self, client, po_id):
        return client.call(
            "/poledger.v1.PurchaseOrderService/CreatePurchaseOrder",
            {"accountId": ACCOUNT,
             "purchaseOrder": json_format.MessageToDict(new_po(po_id))})

    def test_identities_roles_and_the_actor(self):
        anonymous = Http(self.port, self.context())
        status, body = self.create(anonymous, "po-0")
        self.assertEqual((status, body["code"]), (401, 16))
        wrong = Http(self.port, self.context(), token="not-a-token")
        status, body = self.create(wrong, "po-0")
        self.assertEqual((status, body["code"]), (401, 16))
        # Logged as a refusal, without the token.
        deadline = time.time() + 5
        said = "refused: the bearer token is not one the policy knows"
        while (not any(said in l for l in self.server.output) and
               time.time() < deadline):
            time.sleep(0.05)
        self.assertTrue(any(said in l and "warning" in l
                            for l in self.server.output))
        self.assertFalse(any("not-a-token" in l for l in self.server.output))
        self.assertIsNone(self.last_actor_or_none())

        by_token = Http(self.port, self.context(), token=self.PURCHASER_TOKEN)
        status, body = self.create(by_token, "po-1")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.last_actor(), "token:purchaser")

        by_cert = Http(self.port, self.context("purchaser"))
        status, body = self.create(by_cert, "po-2")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.last_actor(), "spiffe://poledger.test/purchaser")
        status, body = by_cert.call(
            "/poledger.v1.PurchaseOrderService/GetPurchaseOrder",
            {"accountId": "999999999999", "purchaseOrderId": "po-1"})
        self.assertEqual((status, body["code"]), (403, 7))
        self.assertEqual(body["details"][0]["reason"], "PERMISSION_DENIED")
        status, body = by_cert.call("/poledger.v1.AdminService/GetServerInfo", {})
        self.assertEqual(status, 403)

        # A token added to the policy works after SIGHUP, with its role: a
        # viewer reads and may not write.
        self.write_policy([("token:purchaser", self.PURCHASER_TOKEN),
                           ("token:viewer", self.VIEWER_TOKEN)])
        viewer = Http(self.port, self.context(), token=self.VIEWER_TOKEN)
        self.assertEqual(self.create(viewer, "po-3")[0], 401)
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            status, body = viewer.call(
                "/poledger.v1.PurchaseOrderService/GetPurchaseOrder",
                {"accountId": ACCOUNT, "purchaseOrderId": "po-1"})
            if status == 200:
                break
            time.sleep(0.1)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["purchaseOrderId"], "po-1")
        status, body = self.create(viewer, "po-3")
        self.assertEqual((status, body["code"]), (403, 7))
        asked = ["PurchaseOrderService.GetPurchaseOrder",
                 "PurchaseOrderService.CreatePurchaseOrder",
                 "InvoiceService.RecordInvoice",
                 "EventLogService.ListPurchaseOrderChanges"]
        for client, account, identity, methods in (
                (viewer, ACCOUNT, "token:viewer", [asked[0], asked[3]]),
                (by_token, ACCOUNT, "token:purchaser",
                 [asked[0], asked[1], asked[3]]),
                (by_cert, "999999999999", "spiffe://poledger.test/purchaser",
                 [])):
            status, body = client.call(
                "/poledger.v1.PurchaseOrderService/TestPermissions",
                {"accountId": account, "methods": asked})
            self.assertEqual(status, 200, body)
            self.assertEqual(body.get("identity"), identity)
            self.assertEqual(body.get("methods", []), methods)
        status, body = viewer.call(
            "/poledger.v1.PurchaseOrderService/TestPermissions",
            {"accountId": ACCOUNT, "methods": ["Nope.Nope"]})
        self.assertEqual((status, body["code"]), (400, 3))
        self.assertIn("methods[0]", json.dumps(body["details"]))
        head = grpc_call(self.server.channel,
                         "/poledger.v1.EventLogService/GetLogDigest", {})[1]
        self.assertEqual(self.last_actor(), "spiffe://poledger.test/purchaser")
        self.assertEqual(head, grpc_call(
            self.server.channel, "/poledger.v1.EventLogService/GetLogDigest",
            {})[1])

    def test_a_removed_token_ends_its_event_stream(self):
        """Revocation reaches server-sent events: SIGHUP with the token gone
        ends the open stream with PERMISSION_DENIED, and nothing raised
        after the reload reaches it; a certificate's stream goes on."""
        self.assertEqual(self.create(Http(self.port, self.context("purchaser")),
                                     "po-1")[0], 200)

        def subscribe(context, token=None):
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=15, context=context)
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = "Bearer " + token
            conn.request(
                "POST", "/poledger.v1.NotificationService/SubscribeNotifications",
                body=json.dumps({"accountId": ACCOUNT}), headers=headers)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertIn("caughtUp", read_events(resp, 1)[0][1])
            return conn, resp

        by_token = subscribe(self.context(), self.PURCHASER_TOKEN)
        by_cert = subscribe(self.context("purchaser"))
        self.write_policy([])
        self.server.proc.send_signal(signal.SIGHUP)
        # Heartbeats at most, then the refusal.
        for _ in range(20):
            events = read_events(by_token[1], 1)
            self.assertTrue(events, "the revoked stream did not end")
            name, data = events[0]
            if name == "error":
                break
            self.assertIn("heartbeat", data)
        self.assertEqual(name, "error")
        self.assertEqual(data["code"], 7)
        self.assertEqual(data["details"][0]["reason"], "PERMISSION_DENIED")
        by_token[0].close()
        # The certificate's binding stays: its stream goes on.
        events = read_events(by_cert[1], 1)
        self.assertTrue(events)
        self.assertEqual(events[0][0], "message")
        self.assertIn("heartbeat", events[0][1])
        by_cert[0].close()

    def last_actor_or_none(self):
        code, body = grpc_call(self.server.channel,
                               "/poledger.v1.EventLogService/ReadEvents", {})
        self.assertEqual(code, 0, body)
        return body["events"][-1]["actor"] if body.get("events") else None

    def test_the_gateways_headers_from_outside_vouch_for_no_one(self):
        forged = [("x-poledger-gateway-secret", "0" * 64),
                  ("x-poledger-gateway-identity",
                   "spiffe://poledger.test/admin")]
        stub = self.server.channel.unary_unary(
            "/poledger.v1.AdminService/GetServerInfo",
            request_serializer=log_pb2.GetServerInfoRequest.SerializeToString,
            response_deserializer=log_pb2.GetServerInfoResponse.FromString)
        with self.assertRaises(grpc.RpcError) as err:
            stub(log_pb2.GetServerInfoRequest(), metadata=forged, timeout=10)
        self.assertEqual(err.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("spiffe://poledger.test/auditor", err.exception.details())
        status, _, _ = Http(self.port, self.context()).raw(
            "POST", "/poledger.v1.AdminService/GetServerInfo", b"{}",
            headers=dict((k, v) for k, v in forged))
        self.assertEqual(status, 401)

    def test_plain_http_and_untrusted_certificates_are_refused(self):
        try:
            answer = Http(self.port).raw(
                "POST", "/poledger.v1.AdminService/GetServerInfo", b"{}")
        except (http.client.HTTPException, OSError):
            answer = None
        self.assertIsNone(answer, "plain HTTP answered on the HTTPS port")
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            Http(self.port, self.context("untrusted")).call(
                "/poledger.v1.AdminService/GetServerInfo", {})
        # The console's files need no identity: they hold no data.
        status, body, headers = Http(self.port, self.context()).raw(
            "GET", "/console/index.html")
        self.assertEqual(status, 200)
        self.assertIn("text/html", headers["Content-Type"])
        self.assertIn("default-src 'self'", headers["Content-Security-Policy"])


if __name__ == "__main__":
    unittest.main()
