"""The structured log: --log-format=json gives one JSON object per line for
each lifecycle event, refused write, slow call, snapshot and stream opened
and closed, with the fields an operator filters on, and never a request's
body.

Environment: POLEDGER_SERVER (the binary), PYTHONPATH (generated stubs).
"""

import json
import time
import unittest

import grpc

from e2e_test import ACCOUNT, Server, new_po
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc
from poledger.v1 import log_pb2
from poledger.v1 import log_pb2_grpc
from poledger.v1 import purchase_orders_pb2 as po_pb2
from poledger.v1 import purchase_orders_pb2_grpc as po_grpc


class LogsTest(unittest.TestCase):
    def test_json_lines_for_what_happened(self):
        server = Server(extra=["--log-format=json", "--slow-call-ms=0"])
        try:
            pos = po_grpc.PurchaseOrderServiceStub(server.channel)
            po = new_po("po-1")
            po.description = "secret-description-not-for-logs"
            pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
                account_id=ACCOUNT, purchase_order=po, request_id="req-1"),
                timeout=10)
            with self.assertRaises(grpc.RpcError) as again:
                pos.CreatePurchaseOrder(po_pb2.CreatePurchaseOrderRequest(
                    account_id=ACCOUNT, purchase_order=po, request_id="req-2"),
                    timeout=10)
            self.assertEqual(again.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
            # Refused before the ledger: a malformed invoice.
            with self.assertRaises(grpc.RpcError) as bad:
                invoices_pb2_grpc.InvoiceServiceStub(server.channel).RecordInvoice(
                    invoices_pb2.RecordInvoiceRequest(
                        account_id=ACCOUNT, request_id="req-3",
                        invoice=invoices_pb2.Invoice(invoice_id="inv-1")),
                    timeout=10)
            self.assertEqual(bad.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            stream = log_pb2_grpc.NotificationServiceStub(
                server.channel).SubscribeNotifications(
                    log_pb2.SubscribeNotificationsRequest(account_id=ACCOUNT),
                    timeout=10)
            self.assertTrue(next(stream).HasField("caught_up"))
            stream.cancel()
            log_pb2_grpc.AdminServiceStub(server.channel).CreateSnapshot(
                log_pb2.CreateSnapshotRequest(), timeout=10)
            time.sleep(0.5)  # The stream's close is logged when it is done.
        finally:
            server.stop()
        lines = [l for l in server.output if l.strip()]
        records = [json.loads(l) for l in lines]  # Every line is JSON.
        for r in records:
            self.assertIn("time", r)
            self.assertIn(r["level"], ("info", "warning", "error"))
        by_event = {}
        for r in records:
            by_event.setdefault(r["event"], []).append(r)
        for event in ("server_starting", "log_open", "server_serving",
                      "stream_opened", "stream_closed", "snapshot_saved",
                      "slow_call", "server_stopping", "server_stopped"):
            self.assertIn(event, by_event, event)
        refused, invalid = by_event["write_refused"]
        self.assertEqual(invalid["code"], "INVALID_ARGUMENT")
        self.assertEqual(invalid["method"], "InvoiceService.RecordInvoice")
        self.assertEqual(invalid["request_id"], "req-3")
        self.assertTrue(invalid["field"].startswith("invoice."), invalid)
        self.assertEqual(refused["code"], "ALREADY_EXISTS")
        self.assertEqual(refused["reason"], "PURCHASE_ORDER_ALREADY_EXISTS")
        self.assertEqual(refused["method"],
                         "PurchaseOrderService.CreatePurchaseOrder")
        self.assertEqual(refused["account"], ACCOUNT)
        self.assertEqual(refused["request_id"], "req-2")
        self.assertEqual(by_event["stream_opened"][0]["method"],
                         "NotificationService.SubscribeNotifications")
        slow_methods = {r["method"] for r in by_event["slow_call"]}
        self.assertIn("poledger.v1.PurchaseOrderService/CreatePurchaseOrder",
                      slow_methods)
        self.assertGreaterEqual(by_event["snapshot_saved"][0]["position"], 1)
        # Never a request body.
        self.assertNotIn("secret-description", "".join(lines))


if __name__ == "__main__":
    unittest.main()
