"use strict";
// The poledger console: a purchase-order dashboard, a page per purchase
// order (lines, invoices with their explanations, notifications, history)
// and a log page, over the HTTP/JSON API (POST /poledger.v1.SERVICE/METHOD
// with JSON). No framework and no build step. Every value from the server
// reaches the page as text (textContent), never as markup.

// The domain's limits (README, Limits), and the balance alert a purchase
// order without thresholds of its own has: a line's balance below 75% of
// its value.
const ACTIVE_LIMIT = 100;
const LINE_LIMIT = 100;
const DEFAULT_THRESHOLDS = [75];
const STATUSES = ["ACTIVE", "SUSPENDED", "EXPIRED", "SUSPENDED_EXPIRED"];
const LINE_TYPES = ["ALL", "AWS_MONTHLY_USAGE", "AWS_SUBSCRIPTION_PURCHASE",
  "AWS_MARKETPLACE_TRANSACTION", "AWS_MARKETPLACE_BLANKET_USAGE",
  "AWS_PROFESSIONAL_SERVICES_AND_TRAINING"];
const CATEGORIES = ["MONTHLY_USAGE", "SUBSCRIPTION_PURCHASE", "MARKETPLACE",
  "PROFESSIONAL_SERVICES"];

const session = {
  account: "",
  token: sessionStorage.getItem("poledger.token") || "",
  identity: "",
  allowed: new Set(),
  permissionsFor: null,
  live: null,        // AbortController of the notification stream
  liveAccount: "",
  view: null,        // the current page: {refresh()}
};

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(httpStatus, body) {
    super(body.message || ("HTTP " + httpStatus));
    this.httpStatus = httpStatus;
    this.code = body.code || 2;
    this.details = body.details || [];
  }
  // BadRequest's field violations: [{field, description}].
  get violations() {
    const out = [];
    for (const d of this.details) {
      if ((d["@type"] || "").endsWith("google.rpc.BadRequest")) {
        out.push(...(d.fieldViolations || []));
      }
    }
    return out;
  }
  get reason() {
    const info = this.details.find(
      d => (d["@type"] || "").endsWith("google.rpc.ErrorInfo"));
    return info ? info.reason : "";
  }
}

// The routing header names the account a call is about, so that a proxy
// in front of shards can send it to the account's shard.
function headers(account) {
  const out = {"Content-Type": "application/json"};
  if (session.token) out.Authorization = "Bearer " + session.token;
  if (account) out["X-Poledger-Account"] = account;
  return out;
}

async function api(method, request) {
  const resp = await fetch("/poledger.v1." + method, {
    method: "POST", headers: headers((request || {}).accountId),
    body: JSON.stringify(request || {}),
  });
  const text = await resp.text();
  let body;
  try {
    body = text ? JSON.parse(text) : {};
  } catch (e) {
    body = {code: 2, message: text};
  }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

// Every page of a List method: the items of field `field`.
async function listAll(method, request, field) {
  const out = [];
  let token = "";
  do {
    const page = await api(method, Object.assign({}, request,
      {pageSize: 1000, pageToken: token}));
    out.push(...(page[field] || []));
    token = page.nextPageToken || "";
  } while (token);
  return out;
}

function can(method) {
  return session.allowed.has(method);
}

// ---------------------------------------------------------------- the DOM

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) {
      el.addEventListener(k.slice(2), v);
    } else if (k === "class") {
      el.className = v;
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// Replaces el's children, skipping the null, undefined and false that
// conditional parts leave.
function put(el, ...children) {
  el.replaceChildren(...children.flat().filter(
    c => c !== null && c !== undefined && c !== false));
}

function main() {
  return document.getElementById("main");
}

function showBanner(text) {
  const banner = document.getElementById("banner");
  banner.textContent = text;
  banner.hidden = !text;
}

function toast(text) {
  const box = document.getElementById("toasts");
  const t = h("div", {class: "toast"}, text);
  box.append(t);
  setTimeout(() => t.remove(), 8000);
}

function errorText(err) {
  if (err instanceof ApiError) {
    return err.message + (err.reason ? " (" + err.reason + ")" : "");
  }
  return String(err && err.message ? err.message : err);
}

// Shows an API error in `form`: each field violation next to the input
// whose data-field it names (or that contains it), the rest in the form's
// error line.
function showFormError(form, err) {
  clearFormErrors(form);
  const general = form.querySelector(".form-error");
  let placed = false;
  if (err instanceof ApiError) {
    for (const v of err.violations) {
      const input = fieldInput(form, v.field);
      if (!input) continue;
      placeFieldError(input, v.description || err.message);
      placed = true;
    }
  }
  if (!placed) {
    general.textContent = errorText(err);
    general.hidden = false;
  }
}

function fieldInput(form, field) {
  let best = null;
  for (const input of form.querySelectorAll("[data-field]")) {
    const f = input.dataset.field;
    if (field === f || field.startsWith(f + ".") || field.startsWith(f + "[")) {
      if (!best || f.length > best.dataset.field.length) best = input;
    }
  }
  return best;
}

function placeFieldError(input, text) {
  const id = input.id + "-error";
  const note = h("span", {class: "field-error", id: id}, text);
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", id);
  input.insertAdjacentElement("afterend", note);
}

function clearFormErrors(form) {
  for (const note of form.querySelectorAll(".field-error")) note.remove();
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
  }
  const general = form.querySelector(".form-error");
  general.textContent = "";
  general.hidden = true;
}

let uniqueId = 0;
// A labelled input: label text, then the control (its id made here).
function field(labelText, control) {
  control.id = control.id || "f" + (++uniqueId);
  return h("label", {for: control.id}, labelText, control);
}

function options(values, selected, prefix) {
  return values.map(v => h("option", {value: prefix + v, selected: prefix + v === selected},
    v.replaceAll("_", " ").toLowerCase()));
}

// ---------------------------------------------------------------- money

function nanosOf(m) {
  if (!m) return 0n;
  return BigInt(m.units || "0") * 1000000000n + BigInt(m.nanos || 0);
}

function moneyText(m) {
  if (!m || (!m.units && !m.nanos && !m.currencyCode)) return "0.00";
  let n = nanosOf(m);
  const negative = n < 0n;
  if (negative) n = -n;
  const whole = (n / 1000000000n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  let frac = (n % 1000000000n).toString().padStart(9, "0").replace(/0+$/, "");
  frac = frac.padEnd(2, "0");
  return (negative ? "-" : "") + whole + "." + frac +
    (m.currencyCode ? " " + m.currencyCode : "");
}

// "1200.50" as Money; null if it is not an amount.
function parseMoney(text, currency) {
  const m = /^\s*(-?)(\d{1,13})(?:\.(\d{1,9}))?\s*$/.exec(text);
  if (!m) return null;
  const units = BigInt(m[2]);
  const nanos = parseInt((m[3] || "").padEnd(9, "0"), 10);
  const sign = m[1] ? -1 : 1;
  return {currencyCode: currency, units: String(BigInt(sign) * units),
          nanos: sign * nanos};
}

// The amount in input `name` of `form` as Money; null, with the error shown
// next to the input, if it is not one.
function readAmount(form, name, currency) {
  const input = form.elements[name];
  const amount = parseMoney(input.value.trim(), currency);
  if (!amount) placeFieldError(input, "an amount such as 1200.50");
  return amount;
}

// Percent of `value` left (for drawing only; the money is exact).
function leftPercent(value, balance) {
  const v = nanosOf(value);
  if (v <= 0n) return 100;
  return Number((nanosOf(balance) * 10000n) / v) / 100;
}

// Whether the balance is below the highest alert threshold, exactly as the
// server decides it: balance * 100 < value * threshold.
function belowThreshold(value, balance, thresholds) {
  const list = thresholds && thresholds.length ? thresholds : DEFAULT_THRESHOLDS;
  const highest = BigInt(Math.max(...list));
  return nanosOf(balance) * 100n < nanosOf(value) * highest;
}

function balanceBar(value, balance, what, thresholds) {
  const left = Math.max(0, Math.min(100, leftPercent(value, balance)));
  const low = belowThreshold(value, balance, thresholds);
  const fill = h("div", {class: "bar-fill"});
  fill.style.width = left.toFixed(1) + "%";
  return h("div", {class: "bar" + (low ? " low" : ""), "data-low": low ? "true" : "false"},
    h("div", {class: "bar-track", role: "meter", "aria-valuemin": 0,
              "aria-valuemax": 100, "aria-valuenow": Math.round(left),
              "aria-label": what + ": " + Math.round(left) + "% left" +
                (low ? ", below its alert threshold" : "")}, fill),
    h("div", {class: "bar-text"},
      moneyText(balance) + " left of " + moneyText(value) + " (" +
      Math.round(left) + "%)"));
}

function forecastText(f) {
  if (!f || !f.outlook) return "—";
  const rate = f.burnRate ? moneyText(f.burnRate) + "/month" : "";
  switch (f.outlook) {
    case "OUTLOOK_NO_SPEND": return "no spend yet";
    case "OUTLOOK_RUNS_OUT": return "runs out " + f.runsOutMonth + " at " + rate;
    case "OUTLOOK_LASTS_THE_TERM": return "lasts the term at " + rate;
    default: return "—";
  }
}

function addressText(a) {
  return [...(a.lines || []), a.postalCode, a.city, a.region, a.countryCode]
    .filter(Boolean).join(", ");
}

function statusName(s) {
  return (s || "").replace("PURCHASE_ORDER_STATUS_", "");
}

function statusBadge(s) {
  const name = statusName(s);
  return h("span", {class: "status status-" + name}, name.replaceAll("_", " ").toLowerCase());
}

function timeText(t) {
  if (!t) return "—";
  return t.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function requestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "console-" + Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- session

async function openAccount(account) {
  if (session.permissionsFor === account) return;
  session.account = account;
  document.getElementById("account").value = account;
  const answer = await api("PurchaseOrderService/TestPermissions", {accountId: account});
  session.identity = answer.identity || "";
  session.allowed = new Set(answer.methods || []);
  session.permissionsFor = account;
  document.getElementById("nav-orders").setAttribute("href", accountHash(account));
  document.getElementById("whoami").textContent =
    (session.identity ? "Signed in as " + session.identity : "Development server: no identities") +
    (can("PurchaseOrderService.GetPurchaseOrder") ? "" : " · no access to this account");
  startLive(account);
}

// The account's notifications, live: each one is announced and the page
// reloads its data. Resumes after the last one seen if the stream breaks.
function startLive(account) {
  if (session.liveAccount === account) return;
  if (session.live) session.live.abort();
  session.live = null;
  session.liveAccount = account;
  if (!can("NotificationService.SubscribeNotifications")) return;
  const controller = new AbortController();
  session.live = controller;
  let after = 0;
  let caughtUp = false;
  const run = async () => {
    while (!controller.signal.aborted) {
      try {
        const resp = await fetch("/poledger.v1.NotificationService/SubscribeNotifications", {
          method: "POST", headers: headers(account), signal: controller.signal,
          body: JSON.stringify({accountId: account, afterPosition: String(after)}),
        });
        // Refused: retrying would not help. Anything else (a restart) is
        // retried below.
        if (resp.status === 401 || resp.status === 403 || resp.status === 400) return;
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, {stream: true});
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split("\n").filter(l => l.startsWith("data: "))
              .map(l => l.slice(6)).join("");
            if (!data || block.startsWith("event: error")) continue;
            const message = JSON.parse(data);
            if (message.caughtUp) {
              caughtUp = true;
            } else if (message.notification) {
              const n = message.notification;
              after = Math.max(after, Number(n.position || 0));
              if (caughtUp) onNotification(n);
            }
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      await new Promise(r => setTimeout(r, 2000));
    }
  };
  run();
}

function notificationText(n) {
  const kind = (n.kind || "").replace("NOTIFICATION_KIND_", "").replaceAll("_", " ").toLowerCase();
  let text = kind + ": " + (n.purchaseOrderId || "");
  if (n.thresholdPercent) {
    text += " line " + n.lineNumber + " fell below " + n.thresholdPercent +
      "% of its value (" + moneyText(n.balance) + " left)";
  }
  if (!n.thresholdPercent && n.expirationDate) text += " expires " + n.expirationDate;
  return text;
}

function onNotification(n) {
  toast(notificationText(n));
  if (session.view && session.view.refresh) session.view.refresh();
}

// ---------------------------------------------------------------- pages

function accountHash(account, rest) {
  return "#/a/" + encodeURIComponent(account) + (rest || "");
}

async function route() {
  showBanner("");
  session.view = null;
  const hash = location.hash || "#/";
  const m = /^#\/a\/([^/]+)(\/.*)?$/.exec(hash);
  for (const a of document.querySelectorAll("nav a")) a.removeAttribute("aria-current");
  try {
    if (hash === "#/log") {
      document.getElementById("nav-log").setAttribute("aria-current", "page");
      await renderLog();
    } else if (m) {
      document.getElementById("nav-orders").setAttribute("aria-current", "page");
      const account = decodeURIComponent(m[1]);
      await openAccount(account);
      const rest = m[2] || "";
      const po = /^\/po\/(.+)$/.exec(rest);
      if (po) {
        await renderPurchaseOrder(account, decodeURIComponent(po[1]));
      } else if (rest === "/new") {
        renderCreate(account);
      } else {
        await renderDashboard(account);
      }
    } else {
      renderWelcome();
    }
  } catch (err) {
    put(main(), h("h1", {}, "Not available"),
      h("p", {class: "bad"}, errorText(err)));
  }
  main().focus();
}

function renderWelcome() {
  document.title = "poledger";
  put(main(),
    h("h1", {}, "poledger console"),
    h("p", {}, "Enter an account id above (and a bearer token if your server " +
      "asks for one) to see its purchase orders."));
}

async function renderDashboard(account) {
  document.title = "Purchase orders · " + account + " · poledger";
  const status = h("select", {name: "status"},
    h("option", {value: ""}, "all"), options(STATUSES, "", "PURCHASE_ORDER_STATUS_"));
  const text = h("input", {type: "search", name: "q", placeholder: "id, description, seller"});
  const counts = h("p", {class: "counts", id: "counts"});
  const table = h("div", {class: "table-wrap", id: "po-table"});
  put(main(),
    h("h1", {}, "Purchase orders of ", account),
    h("div", {class: "toolbar"},
      field("Status", status), field("Search", text),
      can("PurchaseOrderService.CreatePurchaseOrder")
        ? h("a", {href: accountHash(account, "/new"), id: "new-po"}, "New purchase order")
        : null),
    counts, table);
  let all = [];
  const draw = () => {
    const q = text.value.trim().toLowerCase();
    const shown = all.filter(po =>
      (!status.value || po.status === status.value) &&
      (!q || [po.purchaseOrderId, po.description || "", ...(po.billFrom || [])]
        .some(s => s.toLowerCase().includes(q))));
    const active = all.filter(po => po.status === "PURCHASE_ORDER_STATUS_ACTIVE").length;
    put(counts, h("strong", {}, active + " of " + ACTIVE_LIMIT + " active"),
      " · " + all.length + (all.length === 1 ? " purchase order" : " purchase orders") +
      " · showing " + shown.length);
    if (shown.length === 0) {
      put(table, h("p", {class: "muted"}, all.length ? "No purchase order matches." :
        "No purchase orders yet."));
      return;
    }
    put(table, h("table", {},
      h("caption", {class: "muted"}, "Purchase orders"),
      h("thead", {}, h("tr", {},
        h("th", {scope: "col"}, "Purchase order"), h("th", {scope: "col"}, "Status"),
        h("th", {scope: "col", class: "num optional"}, "Value"), h("th", {scope: "col"}, "Balance"),
        h("th", {scope: "col", class: "optional"}, "Months"),
        h("th", {scope: "col", class: "optional"}, "Forecast"))),
      h("tbody", {}, shown.map(po => h("tr", {"data-po": po.purchaseOrderId},
        h("td", {}, h("a", {href: accountHash(account, "/po/" + encodeURIComponent(po.purchaseOrderId))},
          po.purchaseOrderId), po.description ? h("div", {class: "muted"}, po.description) : null),
        h("td", {}, statusBadge(po.status)),
        h("td", {class: "num optional"}, moneyText(po.value)),
        h("td", {class: "bar-cell"}, balanceBar(po.value, po.balance, "Balance of " + po.purchaseOrderId, po.balanceThresholds)),
        h("td", {class: "optional"}, (po.effectiveMonth || "") + " – " + (po.expirationMonth || "")),
        h("td", {class: "optional"}, forecastText(po.forecast)))))));
  };
  status.addEventListener("change", draw);
  text.addEventListener("input", draw);
  const load = async () => {
    all = await listAll("PurchaseOrderService/ListPurchaseOrders",
      {accountId: account, view: "PURCHASE_ORDER_VIEW_BASIC"}, "purchaseOrders");
    all.sort((a, b) => a.purchaseOrderId.localeCompare(b.purchaseOrderId));
    draw();
  };
  await load();
  session.view = {refresh: () => load().catch(e => showBanner(errorText(e)))};
}

function formError() {
  return h("p", {class: "form-error bad", role: "alert", hidden: true});
}

function renderCreate(account) {
  document.title = "New purchase order · poledger";
  const form = h("form", {class: "grid", id: "create-form", novalidate: true},
    field("Purchase order id", h("input", {name: "id", "data-field": "purchase_order.purchase_order_id", required: true})),
    field("Description", h("input", {name: "description", "data-field": "purchase_order.description"})),
    field("Seller (bill from)", h("input", {name: "billFrom", "data-field": "purchase_order.bill_from", value: "Amazon Web Services, Inc."})),
    field("Currency", h("input", {name: "currency", "data-field": "purchase_order.currency_code", value: "USD", size: 4})),
    field("Effective month", h("input", {name: "effective", "data-field": "purchase_order.effective_month", placeholder: "YYYY-MM"})),
    field("Expiration month", h("input", {name: "expiration", "data-field": "purchase_order.expiration_month", placeholder: "YYYY-MM"})),
    field("Contact name", h("input", {name: "contactName", "data-field": "purchase_order.contacts"})),
    field("Contact e-mail", h("input", {name: "contactEmail", type: "email", "data-field": "purchase_order.contacts[0].email"})),
    field("Line type", h("select", {name: "lineType", "data-field": "purchase_order.line_items[0].type"},
      options(LINE_TYPES, "LINE_ITEM_TYPE_ALL", "LINE_ITEM_TYPE_"))),
    field("Line amount", h("input", {name: "lineAmount", "data-field": "purchase_order.line_items[0].amount", placeholder: "1000.00"})),
    field("Line start month", h("input", {name: "lineStart", "data-field": "purchase_order.line_items[0].start_month", placeholder: "YYYY-MM"})),
    field("Line end month", h("input", {name: "lineEnd", "data-field": "purchase_order.line_items[0].end_month", placeholder: "YYYY-MM"})),
    h("label", {class: "check"}, h("input", {type: "checkbox", name: "tracking", checked: true}), " Track the line's balance"),
    formError(),
    h("div", {class: "actions"},
      h("button", {type: "submit", id: "create-submit"}, "Create purchase order"),
      h("a", {href: accountHash(account)}, "Cancel")));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    clearFormErrors(form);
    const v = name => form.elements[name].value.trim();
    const currency = v("currency");
    const amount = readAmount(form, "lineAmount", currency);
    if (!amount) return;
    const po = {
      purchaseOrderId: v("id"), description: v("description"),
      billFrom: v("billFrom") ? [v("billFrom")] : [], currencyCode: currency,
      effectiveMonth: v("effective"), expirationMonth: v("expiration"),
      contacts: v("contactEmail") || v("contactName")
        ? [{name: v("contactName"), email: v("contactEmail")}] : [],
      lineItems: [{lineNumber: 1, type: form.elements.lineType.value,
        startMonth: v("lineStart") || v("effective"), endMonth: v("lineEnd") || v("expiration"),
        balanceTracking: form.elements.tracking.checked, amount: amount, quantity: "1"}],
    };
    try {
      const created = await api("PurchaseOrderService/CreatePurchaseOrder",
        {accountId: account, purchaseOrder: po, requestId: requestId()});
      location.hash = accountHash(account, "/po/" + encodeURIComponent(created.purchaseOrderId));
    } catch (err) {
      showFormError(form, err);
    }
  });
  put(main(), h("h1", {}, "New purchase order"), h("section", {}, form));
}

async function renderPurchaseOrder(account, id) {
  document.title = id + " · poledger";
  const summary = h("div", {id: "po-summary"});
  const lines = h("div", {id: "po-lines"});
  const invoices = h("div", {id: "po-invoices"});
  const notes = h("div", {id: "po-notifications"});
  const history = h("div", {id: "po-history", class: "history"});
  const actions = h("div", {id: "po-actions"});
  let po = await api("PurchaseOrderService/GetPurchaseOrder", {accountId: account, purchaseOrderId: id});
  const ref = {accountId: account, purchaseOrderId: id};
  const heading = h("h1", {});
  put(main(),
    h("p", {}, h("a", {href: accountHash(account)}, "← Purchase orders of " + account)),
    heading,
    h("section", {"aria-labelledby": "h-summary"}, h("h2", {id: "h-summary"}, "Summary"), summary),
    actions,
    h("section", {"aria-labelledby": "h-lines"}, h("h2", {id: "h-lines"}, "Line items"), lines),
    can("InvoiceService.RecordInvoice") ? invoiceForm(account, po, () => reload()) : null,
    h("section", {"aria-labelledby": "h-invoices"}, h("h2", {id: "h-invoices"}, "Invoices matched"), invoices),
    h("section", {"aria-labelledby": "h-notifications"}, h("h2", {id: "h-notifications"}, "Notifications"), notes),
    h("section", {"aria-labelledby": "h-history"}, h("h2", {id: "h-history"}, "History"), history));

  const drawSummary = () => {
    put(heading, id, " ", statusBadge(po.status));
    put(summary, h("dl", {class: "fields"},
      h("dt", {}, "Description"), h("dd", {}, po.description || "—"),
      h("dt", {}, "Status"), h("dd", {id: "po-status"}, statusName(po.status)),
      h("dt", {}, "Seller"), h("dd", {}, (po.billFrom || []).join(", ") || "—"),
      h("dt", {}, "Months"), h("dd", {}, po.effectiveMonth + " – " + po.expirationMonth),
      h("dt", {}, "Value"), h("dd", {}, moneyText(po.value)),
      h("dt", {}, "Balance"), h("dd", {id: "po-balance"}, balanceBar(po.value, po.balance, "Balance", po.balanceThresholds)),
      h("dt", {}, "Forecast"), h("dd", {}, forecastText(po.forecast)),
      h("dt", {}, "Contacts"), h("dd", {}, (po.contacts || []).map(c =>
        h("div", {}, [c.name, c.email, c.phone].filter(Boolean).join(" · "))).concat(
        (po.contacts || []).length ? [] : ["—"])),
      h("dt", {}, "Alerts"), h("dd", {}, "when a line's balance falls below " +
        ((po.balanceThresholds || []).length ? po.balanceThresholds : DEFAULT_THRESHOLDS)
          .map(t => t + "%").join(", ") + " of its value"),
      (po.tags || []).length ? [h("dt", {}, "Tags"), h("dd", {id: "po-tags"},
        po.tags.map(t => t.key + (t.value ? "=" + t.value : "")).join(", "))] : null,
      (po.taxRegistrationNumbers || []).length ? [h("dt", {}, "Tax registrations"),
        h("dd", {}, po.taxRegistrationNumbers.join(", "))] : null,
      po.billTo ? [h("dt", {}, "Bill to"), h("dd", {}, addressText(po.billTo))] : null,
      po.shipTo ? [h("dt", {}, "Ship to"), h("dd", {}, addressText(po.shipTo))] : null,
      h("dt", {}, "Lines"), h("dd", {}, (po.lineItemCount || (po.lineItems || []).length) + " of " + LINE_LIMIT),
      h("dt", {}, "Version"), h("dd", {}, po.version || "—"),
      h("dt", {}, "Updated"), h("dd", {}, timeText(po.updateTime))));
    drawLines();
  };

  const drawLines = () => {
    const canEdit = can("PurchaseOrderService.UpdateLineItem");
    const canRemove = can("PurchaseOrderService.RemoveLineItem");
    put(lines, h("div", {class: "table-wrap"}, h("table", {},
      h("thead", {}, h("tr", {},
        h("th", {scope: "col"}, "#"), h("th", {scope: "col"}, "Type"),
        h("th", {scope: "col", class: "optional"}, "Months"),
        h("th", {scope: "col", class: "num"}, "Value"), h("th", {scope: "col"}, "Balance"),
        h("th", {scope: "col", class: "optional"}, "Forecast"),
        canEdit || canRemove ? h("th", {scope: "col"}, "Change") : null)),
      h("tbody", {}, (po.lineItems || []).map(line => h("tr", {"data-line": line.lineNumber},
        h("td", {}, line.lineNumber), h("td", {}, (line.type || "").replace("LINE_ITEM_TYPE_", "").replaceAll("_", " ").toLowerCase(),
          line.description ? h("div", {class: "muted"}, line.description) : null),
        h("td", {class: "optional"}, line.startMonth + " – " + line.endMonth),
        h("td", {class: "num"}, moneyText(line.totalValue || line.amount)),
        h("td", {}, line.balanceTracking ? balanceBar(line.totalValue || line.amount, line.balance, "Line " + line.lineNumber, po.balanceThresholds) : h("span", {class: "muted"}, "not tracked")),
        h("td", {class: "optional"}, forecastText(line.forecast)),
        canEdit || canRemove ? h("td", {}, lineControls(line, canEdit, canRemove)) : null))))));
    if (can("PurchaseOrderService.AddLineItem")) lines.append(addLineForm());
  };

  const lineControls = (line, canEdit, canRemove) => {
    const form = h("form", {class: "inline", "aria-label": "Change line " + line.lineNumber},
      canEdit ? field("Amount", h("input", {name: "amount", size: 10, "data-field": "line_item.amount",
        value: moneyText(line.amount).split(" ")[0].replaceAll(",", "")})) : null,
      canEdit ? h("button", {type: "submit", class: "secondary"}, "Save") : null,
      canRemove ? h("button", {type: "button", class: "danger", onclick: async () => {
        if (!confirm("Remove line " + line.lineNumber + "?")) return;
        try {
          po = await api("PurchaseOrderService/RemoveLineItem", Object.assign({}, ref,
            {lineNumber: line.lineNumber, expectedVersion: po.version, requestId: requestId()}));
          drawSummary();
        } catch (err) { showFormError(form, err); }
      }}, "Remove") : null,
      formError());
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      clearFormErrors(form);
      const amount = readAmount(form, "amount", po.currencyCode);
      if (!amount) return;
      try {
        po = await api("PurchaseOrderService/UpdateLineItem", Object.assign({}, ref, {
          lineItem: {lineNumber: line.lineNumber, amount: amount}, updateMask: "amount",
          expectedVersion: po.version, requestId: requestId()}));
        drawSummary();
      } catch (err) { showFormError(form, err); }
    });
    return form;
  };

  const addLineForm = () => {
    const next = Math.max(0, ...(po.lineItems || []).map(l => l.lineNumber)) + 1;
    const form = h("form", {class: "grid", id: "add-line-form", "aria-label": "Add a line"},
      field("Line number", h("input", {name: "number", value: next, size: 4, "data-field": "line_item.line_number"})),
      field("Type", h("select", {name: "type", "data-field": "line_item.type"}, options(LINE_TYPES, "LINE_ITEM_TYPE_ALL", "LINE_ITEM_TYPE_"))),
      field("Start month", h("input", {name: "start", value: po.effectiveMonth, "data-field": "line_item.start_month"})),
      field("End month", h("input", {name: "end", value: po.expirationMonth, "data-field": "line_item.end_month"})),
      field("Amount", h("input", {name: "amount", placeholder: "500.00", "data-field": "line_item.amount"})),
      formError(),
      h("div", {class: "actions"}, h("button", {type: "submit"}, "Add line")));
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      clearFormErrors(form);
      const amount = readAmount(form, "amount", po.currencyCode);
      if (!amount) return;
      try {
        po = await api("PurchaseOrderService/AddLineItem", Object.assign({}, ref, {
          lineItem: {lineNumber: parseInt(form.elements.number.value, 10) || 0,
            type: form.elements.type.value, startMonth: form.elements.start.value.trim(),
            endMonth: form.elements.end.value.trim(), balanceTracking: true, amount: amount, quantity: "1"},
          expectedVersion: po.version, requestId: requestId()}));
        drawSummary();
      } catch (err) { showFormError(form, err); }
    });
    return h("div", {}, h("h3", {}, "Add a line"), form);
  };

  const drawActions = () => {
    const parts = [];
    if (can("PurchaseOrderService.UpdatePurchaseOrderStatus")) {
      const form = h("form", {class: "grid", id: "status-form"},
        field("New status", h("select", {name: "status", id: "new-status", "data-field": "status"},
          options(STATUSES, po.status, "PURCHASE_ORDER_STATUS_"))),
        formError(),
        h("div", {class: "actions"}, h("button", {type: "submit", id: "status-submit"}, "Change status")));
      form.addEventListener("submit", async ev => {
        ev.preventDefault();
        clearFormErrors(form);
        try {
          po = await api("PurchaseOrderService/UpdatePurchaseOrderStatus", Object.assign({}, ref, {
            status: form.elements.status.value, expectedVersion: po.version, requestId: requestId()}));
          drawSummary();
          toast("Status changed to " + statusName(po.status).toLowerCase());
        } catch (err) { showFormError(form, err); }
      });
      parts.push(form);
    }
    if (can("PurchaseOrderService.UpdatePurchaseOrder")) {
      const first = (po.contacts || [])[0] || {};
      const form = h("form", {class: "grid", id: "edit-form", novalidate: true},
        field("Description", h("input", {name: "description", value: po.description || "", "data-field": "purchase_order.description"})),
        field("Expiration month", h("input", {name: "expiration", value: po.expirationMonth, "data-field": "purchase_order.expiration_month"})),
        field("Contact name", h("input", {name: "contactName", value: first.name || "", "data-field": "purchase_order.contacts"})),
        field("Contact e-mail", h("input", {name: "contactEmail", type: "email", value: first.email || "", "data-field": "purchase_order.contacts[0].email"})),
        formError(),
        h("div", {class: "actions"}, h("button", {type: "submit", id: "edit-submit"}, "Save changes")));
      form.addEventListener("submit", async ev => {
        ev.preventDefault();
        clearFormErrors(form);
        const mask = [];
        const change = {purchaseOrderId: id};
        if (form.elements.description.value !== (po.description || "")) {
          change.description = form.elements.description.value;
          mask.push("description");
        }
        if (form.elements.expiration.value.trim() !== po.expirationMonth) {
          change.expirationMonth = form.elements.expiration.value.trim();
          mask.push("expiration_month");
        }
        const name = form.elements.contactName.value.trim();
        const email = form.elements.contactEmail.value.trim();
        if (name !== (first.name || "") || email !== (first.email || "")) {
          // The first contact is edited here; the others are kept.
          const rest = (po.contacts || []).slice(1);
          change.contacts = (name || email ? [Object.assign({}, first, {name, email})] : []).concat(rest);
          mask.push("contacts");
        }
        if (!mask.length) return;
        try {
          // The purchase order's id travels inside purchaseOrder here.
          po = await api("PurchaseOrderService/UpdatePurchaseOrder", {accountId: account,
            purchaseOrder: change, updateMask: mask.join(","), expectedVersion: po.version,
            requestId: requestId()});
          drawSummary();
          toast("Saved");
        } catch (err) { showFormError(form, err); }
      });
      parts.push(form);
    }
    if (can("PurchaseOrderService.DeletePurchaseOrder")) {
      const form = h("form", {id: "delete-form"}, formError(),
        h("button", {type: "submit", class: "danger"}, "Delete purchase order"));
      form.addEventListener("submit", async ev => {
        ev.preventDefault();
        if (!confirm("Delete purchase order " + id + "?")) return;
        try {
          await api("PurchaseOrderService/DeletePurchaseOrder", Object.assign({}, ref, {
            expectedVersion: po.version, requestId: requestId()}));
          location.hash = accountHash(account);
        } catch (err) { showFormError(form, err); }
      });
      parts.push(form);
    }
    if (parts.length) {
      put(actions, h("section", {"aria-labelledby": "h-actions"},
        h("h2", {id: "h-actions"}, "Change"), parts));
    }
  };

  const loadInvoices = async () => {
    const list = await listAll("PurchaseOrderService/ListPurchaseOrderInvoices", ref, "invoices");
    if (!list.length) {
      put(invoices, h("p", {class: "muted"}, "No invoices yet."));
      return;
    }
    put(invoices, h("div", {class: "table-wrap"}, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "Invoice"), h("th", {scope: "col"}, "Period"),
        h("th", {scope: "col", class: "num"}, "Amount"), h("th", {scope: "col"}, "Line"),
        h("th", {scope: "col"}, "Why this line"))),
      h("tbody", {}, list.map(inv => h("tr", {"data-invoice": inv.invoiceId},
        h("td", {}, inv.invoiceId, inv.kind === "INVOICE_KIND_CREDIT_MEMO" ? h("div", {class: "muted"}, "credit memo") : null),
        h("td", {}, inv.billingPeriod), h("td", {class: "num"}, moneyText(inv.amount)),
        h("td", {}, inv.association ? inv.association.lineNumber : "—"),
        h("td", {}, explanation(account, inv))))))));
  };

  const loadNotes = async () => {
    const list = await listAll("NotificationService/ListNotifications", ref, "notifications");
    put(notes, list.length
      ? h("ul", {}, list.map(n => h("li", {"data-notification": n.notificationId || ""},
        timeText(n.time), " · ", notificationText(n))))
      : h("p", {class: "muted"}, "No notifications."));
  };

  const loadHistory = async () => {
    const answer = await api("EventLogService/ListPurchaseOrderChanges", ref);
    const changes = answer.changes || [];
    const snapshot = h("div", {id: "history-state", "aria-live": "polite"});
    const label = h("p", {id: "history-label"});
    const slider = h("input", {type: "range", id: "history-slider", min: 0,
      max: changes.length - 1, value: changes.length - 1, step: 1});
    const show = async () => {
      const c = changes[Number(slider.value)];
      const text = "Change " + (Number(slider.value) + 1) + " of " + changes.length +
        ": position " + c.position + " · " + timeText(c.time) + " · " +
        (c.eventType || "").replaceAll("_", " ") + (c.actor ? " · by " + c.actor : "");
      label.textContent = text;
      slider.setAttribute("aria-valuetext", text);
      try {
        const at = await api("EventLogService/GetPurchaseOrderAt", Object.assign({}, ref, {position: c.position}));
        const p = at.purchaseOrder;
        put(snapshot, h("dl", {class: "fields", "data-position": c.position},
          h("dt", {}, "Status"), h("dd", {class: "history-status"}, statusName(p.status)),
          h("dt", {}, "Value"), h("dd", {}, moneyText(p.value)),
          h("dt", {}, "Balance"), h("dd", {class: "history-balance"}, moneyText(p.balance)),
          h("dt", {}, "Lines"), h("dd", {}, (p.lineItems || []).map(l =>
            h("div", {}, "#" + l.lineNumber + " " + moneyText(l.balance) + " left of " + moneyText(l.totalValue || l.amount))))));
      } catch (err) {
        put(snapshot, h("p", {class: "muted"}, errorText(err)));
      }
    };
    let timer = null;
    slider.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(show, 120);
    });
    put(history, 
      field("See this purchase order as it was after each change", slider), label,
      answer.truncated ? h("p", {class: "muted"}, "Only the last 1,000 changes are shown.") : null,
      snapshot);
    await show();
  };

  const reload = async () => {
    po = await api("PurchaseOrderService/GetPurchaseOrder", ref);
    drawSummary();
    await Promise.all([loadInvoices(), loadNotes(), loadHistory()]);
  };

  drawSummary();
  drawActions();
  await Promise.all([loadInvoices(), loadNotes(), loadHistory()]);
  session.view = {refresh: () => reload().catch(e => showBanner(errorText(e)))};
}

function explanation(account, inv) {
  const a = inv.association || {};
  const e = a.explanation;
  const summary = e && e.summary ? e.summary : (a.associated ? "matched" : "not matched");
  const details = h("details", {},
    h("summary", {}, summary),
    h("div", {class: "explanation"}, "Loading…"));
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    const box = details.querySelector(".explanation");
    try {
      const full = await api("InvoiceService/GetInvoice",
        {accountId: account, invoiceId: inv.invoiceId, view: "INVOICE_VIEW_FULL"});
      const ex = (full.association || {}).explanation || {};
      put(box, 
        h("p", {}, ex.summary || ""),
        h("ul", {}, (ex.purchaseOrders || []).map(c => h("li", {},
          c.purchaseOrderId + ": " + (c.outcome || "").replace("CANDIDATE_OUTCOME_", "").replaceAll("_", " ").toLowerCase(),
          (c.lines || []).length ? h("ul", {}, c.lines.map(l => h("li", {},
            "line " + l.lineNumber + ": " + (l.outcome || "").replace("CANDIDATE_OUTCOME_", "").replaceAll("_", " ").toLowerCase()))) : null))),
        a.lineBalanceAfter ? h("p", {class: "muted"}, "Line balance after: " + moneyText(a.lineBalanceAfter)) : null);
    } catch (err) {
      box.textContent = errorText(err);
    }
  });
  return details;
}

// Records a test invoice, with a match preview first (validate_only).
function invoiceForm(account, po, after) {
  const month = (po.effectiveMonth || "");
  const form = h("form", {class: "grid", id: "invoice-form"},
    field("Invoice id", h("input", {name: "id", value: "test-" + Date.now(), "data-field": "invoice.invoice_id"})),
    field("Seller (bill from)", h("input", {name: "billFrom", value: (po.billFrom || [""])[0], "data-field": "invoice.bill_from"})),
    field("Category", h("select", {name: "category", "data-field": "invoice.category"},
      options(CATEGORIES, "INVOICE_CATEGORY_MONTHLY_USAGE", "INVOICE_CATEGORY_"))),
    field("Billing month", h("input", {name: "period", value: month, placeholder: "YYYY-MM", "data-field": "invoice.billing_period"})),
    field("Amount", h("input", {name: "amount", placeholder: "100.00", "data-field": "invoice.amount"})),
    formError(),
    h("div", {class: "actions"},
      h("button", {type: "submit", name: "preview", id: "invoice-preview", class: "secondary"}, "Preview the match"),
      h("button", {type: "button", name: "record", id: "invoice-record", disabled: true}, "Record invoice")),
    h("div", {id: "invoice-preview-result", "aria-live": "polite"}));
  const result = form.querySelector("#invoice-preview-result");
  const recordButton = form.querySelector("#invoice-record");
  const request = () => {
    const amount = readAmount(form, "amount", po.currencyCode);
    if (!amount) return null;
    return {accountId: account, invoice: {invoiceId: form.elements.id.value.trim(),
      billFrom: form.elements.billFrom.value.trim(), category: form.elements.category.value,
      billingPeriod: form.elements.period.value.trim(), amount: amount}};
  };
  let previewed = "";
  for (const input of form.querySelectorAll("input, select")) {
    input.addEventListener("input", () => { recordButton.disabled = true; previewed = ""; });
  }
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    clearFormErrors(form);
    put(result, );
    const req = request();
    if (!req) return;
    try {
      const inv = await api("InvoiceService/RecordInvoice", Object.assign({validateOnly: true}, req));
      const a = inv.association || {};
      put(result, h("div", {class: "preview"},
        h("p", {}, a.associated
          ? "Would match " + a.purchaseOrderId + " line " + a.lineNumber + "; line balance after: " +
            moneyText(a.lineBalanceAfter) + ", purchase order balance after: " + moneyText(a.purchaseOrderBalanceAfter)
          : "Would not match a purchase order" + (a.unmatchedReason ? " (" + a.unmatchedReason.replace("UNMATCHED_REASON_", "").replaceAll("_", " ").toLowerCase() + ")" : "")),
        a.explanation && a.explanation.summary ? h("p", {class: "muted"}, a.explanation.summary) : null,
        (inv.notifications || []).length ? h("p", {}, "It would raise: " +
          inv.notifications.map(notificationText).join("; ")) : null));
      previewed = JSON.stringify(req);
      recordButton.disabled = false;
    } catch (err) { showFormError(form, err); }
  });
  recordButton.addEventListener("click", async () => {
    clearFormErrors(form);
    const req = request();
    if (!req || JSON.stringify(req) !== previewed) return;
    try {
      const inv = await api("InvoiceService/RecordInvoice", Object.assign({requestId: requestId()}, req));
      put(result, h("p", {class: "ok"}, "Recorded " + inv.invoiceId + " at position " + inv.position));
      recordButton.disabled = true;
      form.elements.id.value = "test-" + Date.now();
      await after();
    } catch (err) { showFormError(form, err); }
  });
  return h("section", {"aria-labelledby": "h-invoice"}, h("h2", {id: "h-invoice"}, "Record a test invoice"), form);
}

async function renderLog() {
  document.title = "Log · poledger";
  const box = h("div", {id: "log-status"}, "Checking…");
  put(main(), h("h1", {}, "Event log"), h("section", {}, box));
  const digest = await api("EventLogService/GetLogDigest", {});
  const head = Number(digest.headPosition || 0);
  // The chain links of the last 10,000 events: each record (an append's
  // events, which share its hash) names the hash of the one before it; the
  // last must be the digest.
  const from = Math.max(1, head - 9999);
  const events = [];
  let token = "";
  do {
    const page = await api("EventLogService/ReadEvents",
      {fromPosition: String(from), pageSize: 1000, pageToken: token});
    events.push(...(page.events || []));
    token = page.nextPageToken || "";
  } while (token && events.length < 10000);
  let broken = null;
  for (let i = 1; i < events.length; i++) {
    const sameRecord = events[i].recordPosition === events[i - 1].recordPosition;
    if (sameRecord ? events[i].hash !== events[i - 1].hash
        : events[i].prevHash !== events[i - 1].hash) {
      broken = events[i].position;
      break;
    }
  }
  const last = events.length ? events[events.length - 1] : null;
  if (!broken && last && last.hash !== digest.chainHash) broken = last.position;
  put(box, h("dl", {class: "fields"},
    h("dt", {}, "Head position"), h("dd", {id: "log-head"}, String(head)),
    h("dt", {}, "Digest"), h("dd", {class: "mono", id: "log-digest"}, digest.chainHash || "—"),
    h("dt", {}, "Chain links"), h("dd", {id: "log-verify", class: broken ? "bad" : "ok"},
      broken ? "broken at position " + broken
        : events.length ? "verified from position " + from + " to " + head + " (" + events.length + " events)"
          : "empty log")),
  h("h2", {}, "Latest events"),
  h("div", {class: "table-wrap"}, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "Position"), h("th", {scope: "col"}, "Time"),
      h("th", {scope: "col"}, "Event"), h("th", {scope: "col"}, "Account"),
      h("th", {scope: "col", class: "optional"}, "Actor"))),
    h("tbody", {}, events.slice(-20).reverse().map(e => h("tr", {},
      h("td", {}, e.position), h("td", {}, timeText(e.time)), h("td", {}, e.eventType),
      h("td", {}, e.accountId || ""), h("td", {class: "optional"}, e.actor || "")))))));
}

// ---------------------------------------------------------------- start

document.getElementById("token").value = session.token;
document.getElementById("session").addEventListener("submit", ev => {
  ev.preventDefault();
  const account = document.getElementById("account").value.trim();
  session.token = document.getElementById("token").value.trim();
  sessionStorage.setItem("poledger.token", session.token);
  session.permissionsFor = null;
  session.liveAccount = "";
  if (!account) return;
  const target = accountHash(account);
  if (location.hash === target) route(); else location.hash = target;
});
window.addEventListener("hashchange", route);
route();
