"""The web console in a real browser: Debian's Chromium, headless, driven
by python3-selenium through chromium-driver, against a real poledger-server
over HTTPS on 127.0.0.1 with a policy of bearer tokens.

Covers: the dashboard, creating a purchase order through the form (a field
error shown next to its field first), a test invoice with its match
preview, the balance bar and a notification arriving live from another
client, a status change, the history slider at an earlier position (by
keyboard), a viewer who sees no edit controls and whose write is refused,
another account's purchase order unreachable by URL, the log page, labels
on every control, and a phone-width layout. On failure a screenshot, the
page's HTML and the browser's console log are saved under
POLEDGER_SCREENSHOTS.

Environment: POLEDGER_SERVER, POLEDGER_MAKE_CERTS, POLEDGER_SCREENSHOTS,
PYTHONPATH (the generated stubs and tests/e2e), optionally POLEDGER_CHROMIUM
and POLEDGER_CHROMEDRIVER.
"""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import grpc
from google.protobuf import json_format
from selenium import webdriver
from selenium.common.exceptions import (StaleElementReferenceException,
                                        TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from e2e_test import ACCOUNT, AWS, Server, money
from http_test import grpc_call
from poledger.v1 import invoices_pb2
from poledger.v1 import invoices_pb2_grpc

OTHER = "222222222222"
TOKENS = {
    "finance": "finance-token-5f0c",   # purchaser and biller of ACCOUNT
    "viewer": "viewer-token-91ad",     # viewer of ACCOUNT
    "auditor": "auditor-token-77e2",   # the whole log
    "other": "other-token-c3b0",       # purchaser of OTHER
}


def policy_text():
    bindings = [
        ("token:finance", "ROLE_PURCHASER", ACCOUNT),
        ("token:finance", "ROLE_BILLER", ACCOUNT),
        ("token:viewer", "ROLE_VIEWER", ACCOUNT),
        ("token:auditor", "ROLE_AUDITOR", "*"),
        ("token:other", "ROLE_PURCHASER", OTHER),
        ("spiffe://poledger.test/biller", "ROLE_BILLER", ACCOUNT),
        ("spiffe://poledger.test/auditor", "ROLE_AUDITOR", "*"),
    ]
    lines = ['bindings { identity: "%s" role: %s accounts: "%s" }' % b
             for b in bindings]
    for name, token in TOKENS.items():
        lines.append('tokens { identity: "token:%s" sha256: "%s" }' % (
            name, hashlib.sha256(token.encode()).hexdigest()))
    return "\n".join(lines) + "\n"


class ConsoleTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="poledger-console-")
        certs = cls.certs = os.path.join(cls.dir, "certs")
        subprocess.run(["bash", os.environ["POLEDGER_MAKE_CERTS"], certs,
                        "biller", "auditor"], check=True,
                       stdout=subprocess.DEVNULL)
        policy = os.path.join(cls.dir, "policy.textproto")
        with open(policy, "w") as f:
            f.write(policy_text())

        def read(name):
            with open(os.path.join(certs, name), "rb") as f:
                return f.read()

        cls.creds = lambda who: grpc.ssl_channel_credentials(
            read("ca.pem"), read(who + ".key"), read(who + ".pem"))
        cls.server = Server(
            extra=["--http-listen=127.0.0.1:0",
                   "--tls-cert=" + os.path.join(certs, "server.pem"),
                   "--tls-key=" + os.path.join(certs, "server.key"),
                   "--tls-client-ca=" + os.path.join(certs, "ca.pem"),
                   "--authz-policy=" + policy],
            credentials=cls.creds("auditor"))
        cls.biller = grpc.secure_channel(cls.server.address, cls.creds("biller"))
        cls.base = "https://127.0.0.1:%d" % cls.server.http_port
        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("POLEDGER_CHROMIUM",
                                                 "/usr/bin/chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--user-data-dir=" + os.path.join(cls.dir, "profile")):
            options.add_argument(arg)
        # The test CA is not the browser's: accept the server's certificate.
        options.set_capability("acceptInsecureCerts", True)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(os.environ.get("POLEDGER_CHROMEDRIVER",
                                         "/usr/bin/chromedriver"))
        try:
            cls.driver = webdriver.Chrome(service=service, options=options)
        except Exception:
            cls.server.stop()
            shutil.rmtree(cls.dir, ignore_errors=True)
            raise
        cls.driver.set_script_timeout(20)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        cls.biller.close()
        code = cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        assert code == 0, "".join(cls.server.output)

    # ------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def evidence(self, name):
        """Saves a screenshot, the page and the browser's log if the body
        fails."""
        try:
            yield
        except BaseException:
            out = os.environ.get("POLEDGER_SCREENSHOTS",
                                 os.path.join(self.dir, "screenshots"))
            os.makedirs(out, exist_ok=True)
            self.driver.save_screenshot(os.path.join(out, name + ".png"))
            with open(os.path.join(out, name + ".html"), "w") as f:
                f.write(self.driver.page_source)
            with open(os.path.join(out, name + ".log"), "w") as f:
                for entry in self.driver.get_log("browser"):
                    f.write(json.dumps(entry) + "\n")
            raise

    def wait(self, condition, timeout=15, what=""):
        try:
            return WebDriverWait(self.driver, timeout).until(
                lambda d: condition())
        except TimeoutException:
            self.fail("timed out waiting for " + what)

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click(self, css):
        """Clicks the first match, again if the page re-rendered it
        meanwhile."""
        for _ in range(20):
            try:
                self.find(css).click()
                return
            except StaleElementReferenceException:
                time.sleep(0.1)
        self.fail("could not click " + css)

    def text_of(self, css):
        """The rendered text of the first match ("" if none), read in one
        step: the page re-renders parts as data arrives."""
        return self.driver.execute_script(
            "const e = document.querySelector(arguments[0]);"
            "return e ? e.innerText : '';", css)

    def attr_of(self, css, name):
        return self.driver.execute_script(
            "const e = document.querySelector(arguments[0]);"
            "return e ? e.getAttribute(arguments[1]) : null;", css, name)

    def sign_in(self, account, token):
        self.driver.get(self.base + "/")
        self.wait(lambda: self.finds("#session"), what="the console")
        field = self.find("#account")
        field.clear()
        field.send_keys(account)
        token_field = self.find("#token")
        token_field.clear()
        token_field.send_keys(token)
        # The keyboard submits the form.
        token_field.send_keys(Keys.ENTER)
        # The dashboard has loaded once it counts its purchase orders.
        self.wait(lambda: self.text_of("#counts") or
                  "Not available" in self.text_of("h1"),
                  what="the dashboard")

    def digest(self):
        code, body = grpc_call(self.server.channel,
                               "/poledger.v1.EventLogService/GetLogDigest", {})
        self.assertEqual(code, 0, body)
        return body

    def fill(self, form, values):
        for name, value in values.items():
            el = form.find_element(By.NAME, name)
            if el.tag_name == "select":
                Select(el).select_by_value(value)
            else:
                el.clear()
                el.send_keys(value)

    def unlabelled_controls(self):
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll("
            "'main input, main select, main textarea, header input'))"
            ".filter(e => e.type !== 'hidden' && e.labels.length === 0)"
            ".map(e => e.name || e.id);")

    def browser_fetch(self, method, body):
        """A call from the page's own context with its token: (status,
        JSON)."""
        return self.driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/poledger.v1.' + arguments[0], {method: 'POST',
              headers: {'Content-Type': 'application/json',
                        'Authorization': 'Bearer ' + sessionStorage.getItem('poledger.token')},
              body: JSON.stringify(arguments[1])})
              .then(r => r.json().then(j => done([r.status, j])))
              .catch(e => done([0, String(e)]));""", method, body)

    # ------------------------------------------------------------ the tests

    def test_1_a_purchaser_works_a_purchase_order_through_the_console(self):
        with self.evidence("purchaser"):
            self.sign_in(ACCOUNT, TOKENS["finance"])
            self.assertIn("0 of 100 active", self.text_of("#counts"))
            self.assertIn("token:finance", self.text_of("#whoami"))
            self.assertEqual(self.unlabelled_controls(), [])

            # Create: a bad month is shown next to its field, and nothing
            # is written.
            self.click("#new-po")
            form = self.wait(lambda: self.finds("#create-form"),
                             what="the create form")[0]
            before = self.digest()
            self.fill(form, {"id": "po-cloud", "description": "Cloud 2026",
                             "effective": "2026-13", "expiration": "2026-12",
                             "contactName": "Finance",
                             "contactEmail": "finance@example.com",
                             "lineAmount": "1000.00", "lineStart": "2026-01",
                             "lineEnd": "2026-12"})
            self.click("#create-submit")
            error = self.wait(
                lambda: self.finds("#create-form .field-error"),
                what="the field error")[0]
            effective = form.find_element(By.NAME, "effective")
            self.assertEqual(effective.get_attribute("aria-invalid"), "true")
            self.assertEqual(effective.get_attribute("aria-describedby"),
                             error.get_attribute("id"))
            self.assertIn("not a valid month", error.text)
            self.assertEqual(self.digest(), before)
            self.fill(form, {"effective": "2026-01"})
            self.click("#create-submit")
            self.wait(lambda: "po-cloud" in self.text_of("h1"),
                      what="the purchase order's page")
            self.assertIn("active", self.text_of("h1"))
            self.assertIn("1,000.00 USD left of 1,000.00 USD",
                          self.text_of("#po-balance"))

            # A test invoice: the preview writes nothing, then it records.
            inv = self.find("#invoice-form")
            self.fill(inv, {"id": "inv-console-1", "period": "2026-01",
                            "amount": "100"})
            self.assertFalse(self.find("#invoice-record").is_enabled())
            before = self.digest()
            self.click("#invoice-preview")
            preview = self.wait(
                lambda: self.text_of("#invoice-preview-result"),
                what="the preview")
            self.assertIn("Would match po-cloud line 1", preview)
            self.assertIn("900.00 USD", preview)
            self.assertEqual(self.digest(), before)
            self.click("#invoice-record")
            self.wait(lambda: "Recorded inv-console-1" in
                      self.text_of("#invoice-preview-result"),
                      what="the recorded invoice")
            self.wait(lambda: self.finds(
                "#po-invoices [data-invoice='inv-console-1']"),
                what="the invoice in the list")
            self.assertEqual(self.attr_of("#po-balance .bar", "data-low"),
                             "false")

            # The dashboard, then an invoice from another client: the
            # notification and the new balance arrive without a reload.
            self.click("#nav-orders")
            self.wait(lambda: self.finds("[data-po='po-cloud']"),
                      what="the dashboard row")
            self.assertIn("1 of 100 active", self.text_of("#counts"))
            self.assertEqual(self.attr_of("[data-po='po-cloud'] .bar",
                                          "data-low"), "false")
            self.assertIn("900.00 USD left",
                          self.text_of("[data-po='po-cloud']"))
            invoices_pb2_grpc.InvoiceServiceStub(self.biller).RecordInvoice(
                invoices_pb2.RecordInvoiceRequest(
                    account_id=ACCOUNT, invoice=invoices_pb2.Invoice(
                        invoice_id="inv-grpc-1", bill_from=AWS,
                        category=1, billing_period="2026-02",
                        amount=money(250))), timeout=10)
            # 650 of 1,000 left: below the default threshold, 75% of the
            # value.
            self.wait(lambda: "fell below 75%" in self.text_of("#toasts"),
                      what="the live notification")
            self.wait(lambda: self.attr_of("[data-po='po-cloud'] .bar",
                                           "data-low") == "true",
                      what="the bar to turn to the alert colour")
            self.assertIn("650.00 USD left",
                          self.text_of("[data-po='po-cloud']"))

            # Status, then history at the first change, by keyboard.
            self.click("[data-po='po-cloud'] a")
            form = self.wait(lambda: self.finds("#status-form"),
                             what="the status form")[0]
            self.fill(form, {"status": "PURCHASE_ORDER_STATUS_SUSPENDED"})
            self.click("#status-submit")
            self.wait(lambda: self.text_of("#po-status") == "SUSPENDED",
                      what="the new status")
            self.assertIn("suspended", self.text_of("h1"))

            # Edit: an error next to the field it names, then the change.
            form = self.find("#edit-form")
            before = self.digest()
            self.fill(form, {"contactEmail": "accounts-payable"})
            self.click("#edit-submit")
            error = self.wait(lambda: self.finds("#edit-form .field-error"),
                              what="the e-mail's error")[0]
            email = form.find_element(By.NAME, "contactEmail")
            self.assertEqual(email.get_attribute("aria-describedby"),
                             error.get_attribute("id"))
            self.assertEqual(self.digest(), before)
            self.fill(form, {"contactEmail": "ap@example.com",
                             "description": "Cloud 2026, all services"})
            self.click("#edit-submit")
            self.wait(lambda: "ap@example.com" in self.text_of("#po-summary"),
                      what="the new contact")
            self.assertIn("Cloud 2026, all services",
                          self.text_of("#po-summary"))
            self.driver.refresh()
            slider = self.wait(lambda: self.finds("#history-slider"),
                               what="the history slider")[0]
            self.wait(lambda: "SUSPENDED" in self.text_of(".history-status"),
                      what="the latest state")
            self.assertIn("purchase order updated",
                          self.text_of("#history-label"))
            self.assertIn("Change 5 of 5", self.text_of("#history-label"))
            slider.send_keys(Keys.HOME)
            self.wait(lambda: "Change 1 of 5" in self.text_of("#history-label"),
                      what="the first change")
            self.assertIn("purchase order created",
                          self.text_of("#history-label"))
            self.assertIn("token:finance", self.text_of("#history-label"))
            self.wait(lambda: self.text_of(".history-status") == "ACTIVE" and
                      self.text_of(".history-balance") == "1,000.00 USD",
                      what="the state at the first change")
            slider.send_keys(Keys.RIGHT)
            self.wait(lambda: self.text_of(".history-balance") ==
                      "900.00 USD", what="the state after the first invoice")
            notes = self.text_of("#po-notifications")
            self.assertIn("fell below 75%", notes)

    def test_2_a_viewer_sees_no_edit_controls_and_cannot_write(self):
        with self.evidence("viewer"):
            self.sign_in(ACCOUNT, TOKENS["viewer"])
            self.wait(lambda: self.finds("[data-po='po-cloud']"),
                      what="the dashboard row")
            self.assertEqual(self.finds("#new-po"), [])
            self.click("[data-po='po-cloud'] a")
            self.wait(lambda: "po-cloud" in self.text_of("h1"),
                      what="the purchase order's page")
            self.wait(lambda: self.finds("#history-slider"),
                      what="the history")
            for css in ("#status-form", "#edit-form", "#delete-form",
                        "#invoice-form", "#add-line-form",
                        "#po-lines form", "#po-actions section"):
                self.assertEqual(self.finds(css), [], css)
            before = self.digest()
            status, body = self.browser_fetch(
                "PurchaseOrderService/UpdatePurchaseOrderStatus",
                {"accountId": ACCOUNT, "purchaseOrderId": "po-cloud",
                 "status": "PURCHASE_ORDER_STATUS_ACTIVE"})
            self.assertEqual((status, body["code"]), (403, 7), body)
            self.assertEqual(self.digest(), before)

    def test_3_another_accounts_purchase_order_is_not_reachable_by_url(self):
        with self.evidence("other-account"):
            # The other account has a purchase order of its own.
            self.sign_in(OTHER, TOKENS["other"])
            status, body = self.browser_fetch(
                "PurchaseOrderService/CreatePurchaseOrder",
                {"accountId": OTHER, "purchaseOrder": {
                    "purchaseOrderId": "po-secret", "billFrom": [AWS],
                    "currencyCode": "USD", "effectiveMonth": "2026-01",
                    "expirationMonth": "2026-12",
                    "lineItems": [{"lineNumber": 1,
                                   "type": "LINE_ITEM_TYPE_ALL",
                                   "startMonth": "2026-01",
                                   "endMonth": "2026-12",
                                   "amount": {"currencyCode": "USD",
                                              "units": "10"}}]}})
            self.assertEqual(status, 200, body)
            self.sign_in(ACCOUNT, TOKENS["finance"])
            for path in ("/po/po-secret", ""):
                self.driver.get(self.base + "/console/index.html#/a/" +
                                OTHER + path)
                self.wait(lambda: "Not available" in self.text_of("h1"),
                          what="the refusal for " + path)
                self.assertIn("PERMISSION_DENIED", self.text_of("main"))
                self.assertNotIn("po-secret", self.text_of("main").replace(
                    "PurchaseOrderService", ""))

    def test_4_the_log_page_and_a_phone_width(self):
        with self.evidence("log"):
            self.sign_in(ACCOUNT, TOKENS["auditor"])
            self.driver.get(self.base + "/console/index.html#/log")
            self.wait(lambda: self.text_of("#log-verify"),
                      what="the log check")
            digest = self.digest()
            self.assertEqual(self.text_of("#log-head"),
                             digest["headPosition"])
            self.assertEqual(self.text_of("#log-digest"), digest["chainHash"])
            self.assertIn("verified from position 1", self.text_of("#log-verify"))
        with self.evidence("phone"):
            self.sign_in(ACCOUNT, TOKENS["finance"])
            self.driver.set_window_size(390, 844)
            try:
                self.wait(lambda: self.finds("[data-po='po-cloud']"),
                          what="the dashboard row")
                self.click("[data-po='po-cloud'] a")
                self.wait(lambda: self.finds("#history-slider"),
                          what="the purchase order's page")
                overflow = self.driver.execute_script(
                    "return document.documentElement.scrollWidth - "
                    "document.documentElement.clientWidth;")
                self.assertLessEqual(overflow, 0)
                self.assertEqual(self.unlabelled_controls(), [])
            finally:
                self.driver.set_window_size(1280, 900)


if __name__ == "__main__":
    unittest.main()
