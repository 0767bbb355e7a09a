"""Streams cannot starve calls on the HTTP gateway: 1,000 server-sent-event
streams open at once, each still gets its live events, and the console's
page and a JSON call still answer; one caller's streams are limited
(429, TOO_MANY_STREAMS), over HTTP and gRPC together.

Environment: POLEDGER_SERVER (the binary), PYTHONPATH (generated stubs).
"""

import http.client
import json
import resource
import time
import unittest

import grpc

from e2e_test import ACCOUNT, Server, error_info, new_po
from google.protobuf import json_format
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc

STREAMS = 1000


def open_stream(port, account=ACCOUNT, timeout=30):
    """An SSE stream of SubscribeEvents: (connection, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/poledger.v1.EventLogService/SubscribeEvents",
                 body=json.dumps({"accountId": account}),
                 headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()


def next_data(resp):
    """The next data line's JSON (skipping blank and event: lines)."""
    while True:
        line = resp.readline().decode()
        if not line:
            return None
        if line.startswith("data: "):
            return json.loads(line[6:])


class HttpStreamsTest(unittest.TestCase):
    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4 * STREAMS:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (min(hard, 8 * STREAMS), hard))

    def call(self, port, path, request, timeout):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", path, body=json.dumps(request),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def test_a_thousand_event_streams_leave_calls_answering(self):
        server = Server(extra=["--http-listen=127.0.0.1:0",
                               "--max-streams-per-identity=0"])
        streams = []
        try:
            port = server.http_port
            for _ in range(STREAMS):
                conn, resp = open_stream(port)
                self.assertEqual(resp.status, 200)
                self.assertIn("caughtUp", next_data(resp))
                streams.append((conn, resp))
            # The page and a JSON call answer as with no stream open.
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/console/index.html")
            page = conn.getresponse()
            self.assertEqual(page.status, 200)
            page.read()
            conn.close()
            page_seconds = time.monotonic() - started
            started = time.monotonic()
            status, info = self.call(
                port, "/poledger.v1.AdminService/GetServerInfo", {}, 5)
            call_seconds = time.monotonic() - started
            self.assertEqual(status, 200, info)
            print("with %d streams open: console page %.3f s, "
                  "GetServerInfo %.3f s" % (STREAMS, page_seconds,
                                            call_seconds))
            # Each stream gets the live event.
            status, po = self.call(
                port, "/poledger.v1.PurchaseOrderService/CreatePurchaseOrder",
                {"accountId": ACCOUNT, "requestId": "po-1",
                 "purchaseOrder": json_format.MessageToDict(new_po("po-1"))},
                10)
            self.assertEqual(status, 200, po)
            got = 0
            for _, resp in streams:
                while True:
                    data = next_data(resp)
                    self.assertIsNotNone(data)
                    if "event" in data:
                        self.assertEqual(data["event"]["eventType"],
                                         "purchase_order_created")
                        got += 1
                        break
            self.assertEqual(got, STREAMS)
        finally:
            for conn, _ in streams:
                conn.close()
            self.assertEqual(server.stop(), 0)

    def test_one_callers_streams_are_limited_over_http_and_grpc(self):
        server = Server(extra=["--http-listen=127.0.0.1:0",
                               "--max-streams-per-identity=3",
                               "--metrics-listen=127.0.0.1:0"])
        try:
            port = server.http_port
            held = []
            for _ in range(3):
                conn, resp = open_stream(port)
                self.assertEqual(resp.status, 200)
                self.assertIn("caughtUp", next_data(resp))
                held.append(conn)
            conn, resp = open_stream(port)
            self.assertEqual(resp.status, 429)
            body = json.loads(resp.read())
            self.assertEqual(body["code"], 8)
            self.assertEqual(body["details"][0]["reason"], "TOO_MANY_STREAMS")
            conn.close()
            # gRPC from this host counts apart from the HTTP client's.
            log = log_pb2_grpc.EventLogServiceStub(server.channel)
            grpc_streams = [log.SubscribeEvents(log_pb2.SubscribeEventsRequest(),
                                                timeout=30) for _ in range(3)]
            for s in grpc_streams:
                self.assertTrue(next(s).HasField("caught_up"))
            refused = log.SubscribeEvents(log_pb2.SubscribeEventsRequest(),
                                          timeout=30)
            with self.assertRaises(grpc.RpcError) as err:
                next(refused)
            self.assertEqual(err.exception.code(),
                             grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertEqual(error_info(err.exception)[0], "TOO_MANY_STREAMS")
            # A closed stream gives its slot back.
            held.pop().close()
            deadline = time.monotonic() + 10
            status = None
            while time.monotonic() < deadline:
                conn, resp = open_stream(port)
                status = resp.status
                if status == 200:
                    held.append(conn)
                    break
                conn.close()
                time.sleep(0.1)
            self.assertEqual(status, 200)
            for s in grpc_streams:
                s.cancel()
            for conn in held:
                conn.close()
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
