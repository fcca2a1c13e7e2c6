/* The support console: one page that answers "where did my credits go?".
 *
 * It signs in through the service (an HttpOnly session cookie set by the sign-in; the
 * page never sees a token), reads the admin JSON endpoints under /payment/admin/ and
 * sends every action with the session's CSRF token and an Idempotency-Key made when the
 * form is drawn, so a double click is one action. Everything shown from the ledger is
 * put into the page as text (textContent), never as markup: a booking reference or a
 * reason written by someone else cannot run script here (the CSP forbids inline script
 * as a second wall).
 *
 * For the tests: <body data-ready="true" data-view="..."> once a view is drawn, and
 * script errors copied into <pre id="errors">.
 */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const errorsBox = $("errors");
  const describe = (v) => (v instanceof Error ? `${v.name}: ${v.message}` : String(v));
  window.onerror = (message, source, line, column, error) => {
    errorsBox.textContent += `error: ${error ? describe(error) : message} at ${source}:${line}:${column}\n`;
  };
  window.addEventListener("unhandledrejection", (event) => {
    errorsBox.textContent += `unhandled rejection: ${describe(event.reason)}\n`;
  });

  let session = null;

  // --- HTTP ---------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = (body && body.code) || `HTTP${status}`;
      this.details = (body && body.details) || {};
    }
  }

  async function api(path, options = {}) {
    const method = options.method || "GET";
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      if (session) headers["X-CSRF-Token"] = session.csrfToken;
      if (options.key) headers["Idempotency-Key"] = options.key;
    }
    const reply = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    let body = null;
    try { body = await reply.json(); } catch (_) { body = null; }
    if (!reply.ok) throw new ApiError(reply.status, body);
    return { status: reply.status, body };
  }

  // --- DOM helpers (text only) ----------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const card = (title, note, ...content) =>
    el("section", { class: "card" }, el("h2", {}, title, note ? el("small", {}, note) : null), ...content);

  function table(rows, columns, options = {}) {
    if (!rows || rows.length === 0) return el("p", { class: "empty" }, options.empty || "none");
    const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.title)));
    const body = rows.map((row) => {
      const tr = el("tr", { class: options.onRow ? "clickable" : null, dataset: options.rowData ? options.rowData(row) : {} },
        columns.map((c) => {
          const value = c.value(row);
          const cls = [c.num ? "num" : "", c.wrap ? "wrap" : "", c.sign && value > 0 ? "pos" : "", c.sign && value < 0 ? "neg" : ""].join(" ").trim();
          return el("td", { class: cls || null }, c.sign && value > 0 ? `+${value}` : value);
        }));
      if (options.onRow) tr.addEventListener("click", () => options.onRow(row, tr));
      return tr;
    });
    return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
  }

  // --- formatting -----------------------------------------------------------------------
  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }
  function relative(iso) {
    if (!iso) return "";
    const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
    const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
    for (const [unit, size] of units) {
      const n = Math.trunc(Math.abs(seconds) / size);
      if (n >= 1) return seconds >= 0 ? `in ${n} ${unit}${n > 1 ? "s" : ""}` : `${n} ${unit}${n > 1 ? "s" : ""} ago`;
    }
    return seconds >= 0 ? "in under a minute" : "just now";
  }
  function money(minor, currency) {
    if (minor === null || minor === undefined) return "";
    const digits = String(Math.abs(minor)).padStart(3, "0");
    return `${minor < 0 ? "-" : ""}${digits.slice(0, -2)}.${digits.slice(-2)} ${String(currency || "").toUpperCase()}`;
  }
  const link = (hash, text) => el("a", { href: hash }, text);

  // --- status and readiness ----------------------------------------------------------------
  function status(text, isError = false) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }
  function ready(view) {
    document.body.dataset.view = view;
    document.body.dataset.ready = "true";
  }
  function showError(error) {
    status(error instanceof ApiError ? `${error.code}: ${error.message}` : describe(error), true);
  }

  // --- sign-in ---------------------------------------------------------------------------
  async function loadSession() {
    try {
      session = (await api("/payment/admin/session")).body;
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      session = null;
      const how = error.details || {};
      $("dev-sign-in").hidden = how.devSignIn !== true;
      $("sign-in").hidden = !how.signIn;
      if (how.signIn) $("sign-in").href = `${how.signIn}?next=${encodeURIComponent("/payment/admin/console")}`;
    }
    const signedIn = session !== null && (session.roles || []).includes("admin");
    $("signed-out").hidden = signedIn;
    $("search").hidden = !signedIn;
    $("nav").hidden = !signedIn;
    $("sign-out").hidden = session === null;
    $("admin").textContent = session ? `${session.subject}${signedIn ? "" : " (not an admin)"}` : "";
    return signedIn;
  }

  $("dev-sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    document.body.dataset.ready = "false";
    try {
      await api("/payment/admin/dev-sign-in", { method: "POST", body: { subject: $("dev-subject").value } });
      await start();
    } catch (error) { showError(error); ready("signed-out"); }
  });
  $("sign-out").addEventListener("click", async () => {
    try { await api("/payment/admin/sign-out", { method: "POST" }); } catch (error) { showError(error); }
    session = null;
    $("view").replaceChildren();
    await start();
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/search/${encodeURIComponent($("q").value.trim())}`;
  });

  // --- views ---------------------------------------------------------------------------
  async function searchView(q) {
    $("q").value = q;
    const found = (await api(`/payment/admin/customers/search?q=${encodeURIComponent(q)}`)).body;
    const matches = found.matches || [];
    if (matches.length === 1) { location.replace(`#/customer/${encodeURIComponent(matches[0].userId)}`); return null; }
    return [card("Customers found", `${matches.length} for "${q}"`, table(matches, [
      { title: "User", value: (m) => link(`#/customer/${encodeURIComponent(m.userId)}`, m.userId) },
      { title: "Matched by", value: (m) => m.matchedBy },
      { title: "", value: (m) => m.detail || "", wrap: true },
    ], { empty: "nobody matches exactly" }))];
  }

  function actionForm(name, fields, submitText, send) {
    const result = el("span", { class: "result", "data-result": name });
    const button = el("button", { type: "submit" }, submitText);
    const form = el("form", { class: "action", dataset: { action: name } },
      fields.map((f) => el("label", {}, f.label, f.input)),
      el("label", {}, "Reason", el("input", { name: "reason", required: true, maxlength: 500, placeholder: "why (kept in the audit trail)" })),
      button, result);
    form.dataset.key = crypto.randomUUID();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.dataset.busy === "true") return;
      form.dataset.busy = "true";
      button.disabled = true;
      result.className = "result";
      result.textContent = "sending…";
      let outcome;
      try {
        const values = Object.fromEntries(new FormData(form).entries());
        const reply = await send(values, form.dataset.key);
        const body = reply.body || {};
        outcome = reply.status === 202 ? "accepted: the ledger applies it shortly"
          : body.amountRefunded !== undefined ? `done: ${money(body.amountRefunded, body.currency)} refunded in Stripe`
            : "done";
        form.dataset.key = crypto.randomUUID();  // the next submission is another action
      } catch (error) {
        result.className = "result error";
        result.textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : describe(error);
        document.body.dataset.lastResult = `${name}: ${result.textContent}`;
        form.dataset.busy = "false";
        button.disabled = false;
        ready(document.body.dataset.view);
        return;
      }
      // Drawn again with what the action changed; the outcome stays in the status line.
      document.body.dataset.lastResult = `${name}: ${outcome}`;
      await route();
      status(`${name}: ${outcome}`);
    });
    return form;
  }
  const number = (name, attrs = {}) => el("input", { name, type: "number", min: 1, step: 1, required: true, ...attrs });
  const select = (name, options) => el("select", { name, required: true }, options.map(([value, text]) => el("option", { value }, text)));
  const integer = (text) => (text === undefined || text === "" ? undefined : Number.parseInt(text, 10));

  async function customerView(userId) {
    const c = (await api(`/payment/admin/customers/${encodeURIComponent(userId)}`)).body;
    const base = `/payment/admin/customers/${encodeURIComponent(userId)}`;
    const post = (path, body, key) => api(`${base}/${path}`, { method: "POST", body, key });
    const balance = c.balance || {};
    const paid = (c.purchases || []).filter((p) => p.status === "succeeded" || p.status === "refunded");
    const views = [];
    views.push(el("div", { class: "tiles", id: "balance" },
      el("div", { class: "tile" }, el("b", { "data-balance": "available" }, balance.available), el("span", {}, "available")),
      el("div", { class: "tile" }, el("b", { "data-balance": "held" }, balance.held), el("span", {}, "held")),
      el("div", { class: "tile" }, el("b", { "data-balance": "total" }, balance.total), el("span", {}, "total")),
      el("div", { class: "tile" }, el("b", {}, c.userId), el("span", {}, c.email || "no email on record"),
        el("p", {}, link(`#/customer/${encodeURIComponent(userId)}/explain`, "Explain this balance →")))));
    views.push(card("Actions", null,
      actionForm("grant", [{ label: "Credits", input: number("credits") }], "Grant goodwill credits",
        (v, key) => post("grant", { credits: integer(v.credits), reason: v.reason }, key)),
      paid.length ? actionForm("refund-purchase", [
        { label: "Purchase", input: select("purchaseId", paid.map((p) => [p.purchaseId, `${p.packName} · paid ${money(p.amount, p.currency)} · refunded ${money(p.refundedAmount, p.currency)} · ${p.paymentIntentId || ""}`])) },
        { label: "Amount (minor units, empty = all)", input: el("input", { name: "amount", type: "number", min: 1, step: 1 }) },
      ], "Refund through Stripe",
      (v, key) => post("refund-purchase", { purchaseId: v.purchaseId, amount: integer(v.amount), reason: v.reason }, key)) : null,
      paid.length ? actionForm("resend-receipt", [
        { label: "Purchase", input: select("purchaseId", paid.map((p) => [p.purchaseId, `${p.packName} · ${when(p.createdAt)}`])) },
      ], "Resend receipt", (v, key) => post("resend-receipt", { purchaseId: v.purchaseId, reason: v.reason }, key)) : null));
    views.push(card("Open batches", "spent in this order", table(c.batches, [
      { title: "Batch", value: (b) => link(`#/batch/${b.id}`, b.id.slice(0, 8)) },
      { title: "Source", value: (b) => b.source },
      { title: "Remaining", value: (b) => b.remaining, num: true },
      { title: "of", value: (b) => b.amount, num: true },
      { title: "Acquired", value: (b) => when(b.acquiredAt) },
      { title: "Expires", value: (b) => `${relative(b.expiresAt)} (${when(b.expiresAt)})` },
    ], { empty: "no open batch" })));
    views.push(card("Open holds", "bookings and dispute or fraud freezes", table(c.holds, [
      { title: "Kind", value: (h) => h.kind },
      { title: "Reference", value: (h) => h.reference, wrap: true },
      { title: "Credits", value: (h) => h.credits, num: true },
      { title: "Age", value: (h) => relative(h.createdAt) },
      { title: "Expires", value: (h) => relative(h.expiresAt) },
      { title: "", value: (h) => (h.kind === "booking" ? actionForm(`release-hold-${h.id}`, [], "Release",
        (v, key) => post("release-hold", { holdId: h.id, reason: v.reason }, key)) : "settled by its review") },
    ], { empty: "no open hold" })));
    const m = c.membership;
    views.push(card("Membership", null, m ? table([m], [
      { title: "Plan", value: (x) => x.planName },
      { title: "Status", value: (x) => x.status },
      { title: "Period", value: (x) => `${when(x.currentPeriodStart)} → ${when(x.currentPeriodEnd)}` },
      { title: "Credits this period", value: (x) => x.creditsThisPeriod, num: true },
      { title: "Rollover", value: (x) => x.rollover },
    ]) : el("p", { class: "empty" }, "no membership")));
    views.push(card("Purchases", null, table(c.purchases, [
      { title: "When", value: (p) => when(p.createdAt) },
      { title: "Pack", value: (p) => p.packName },
      { title: "Credits", value: (p) => p.credits, num: true },
      { title: "Amount", value: (p) => money(p.amount, p.currency), num: true },
      { title: "Refunded", value: (p) => money(p.refundedAmount, p.currency), num: true },
      { title: "Status", value: (p) => p.status },
      { title: "PaymentIntent", value: (p) => p.paymentIntentId || "" },
      { title: "Disputes", value: (p) => (p.disputes || []).map((d) => `${d.disputeId} ${d.status}`).join(", "), wrap: true },
    ], { empty: "no purchase" })));
    views.push(card("Promo redemptions", null, table(c.promoRedemptions, [
      { title: "Code", value: (r) => r.code },
      { title: "Status", value: (r) => r.status },
      { title: "When", value: (r) => when(r.redeemedAt || r.createdAt) },
      { title: "Discount", value: (r) => (r.discount ? money(r.discount, r.currency) : ""), num: true },
      { title: "Bonus credits", value: (r) => r.bonusCredits || "", num: true },
    ])));
    views.push(card("Fraud flags", null, table(c.fraudFlags, [
      { title: "Raised", value: (f) => when(f.createdAt) },
      { title: "Rule", value: (f) => `${f.rule} (${f.subject})`, wrap: true },
      { title: "Frozen", value: (f) => f.frozenCredits, num: true },
      { title: "Severity", value: (f) => f.severity },
      { title: "Status", value: (f) => f.status },
      { title: "", value: (f) => (f.status === "open" ? actionForm(`resolve-${f.id}`, [
        { label: "Resolution", input: select("resolution", [["cleared", "cleared: release"], ["confirmed", "confirmed: take back"]]) },
      ], "Resolve", (v, key) => post("resolve-fraud-flag", { flagId: f.id, resolution: v.resolution, reason: v.reason }, key)) : "") },
    ])));
    views.push(card("Emails sent", null, table(c.notifications, [
      { title: "When", value: (n) => when(n.sentAt || n.createdAt) },
      { title: "Template", value: (n) => n.template },
      { title: "Status", value: (n) => n.status },
      { title: "To", value: (n) => n.recipient || "" },
      { title: "Event", value: (n) => n.eventId },
    ])));
    views.push(card("Audit", null, link(`#/audit/${encodeURIComponent(userId)}`, "Admin actions on this customer →")));
    return views;
  }

  function postingsOf(entry) {
    return el("div", {},
      el("strong", {}, "Postings"),
      table(entry.postings, [
        { title: "Account", value: (p) => (p.accountKind === "system" ? `system: ${p.account}` : p.account) },
        { title: "Bucket", value: (p) => p.bucket },
        { title: "Amount", value: (p) => p.amount, num: true, sign: true },
      ]),
      el("strong", {}, "Batches"),
      table(entry.allocations, [
        { title: "Batch", value: (a) => link(`#/batch/${a.batchId}`, a.batchId.slice(0, 8)) },
        { title: "Source", value: (a) => a.batchSource },
        { title: "Credits", value: (a) => a.credits, num: true, sign: true },
        { title: "Batch expires", value: (a) => when(a.batchExpiresAt) },
      ], { empty: "no batch touched" }));
  }

  async function explainView(userId, cursor) {
    const query = new URLSearchParams({ limit: "100" });
    if (cursor) query.set("cursor", cursor);
    const page = (await api(`/payment/admin/customers/${encodeURIComponent(userId)}/explanation?${query}`)).body;
    const balance = page.balance || {};
    const entries = page.entries || [];
    const rows = table(entries, [
      { title: "When", value: (e) => when(e.createdAt) },
      { title: "Type", value: (e) => e.type },
      { title: "Reference", value: (e) => e.reference || "", wrap: true },
      { title: "Available", value: (e) => e.availableChange, num: true, sign: true },
      { title: "Held", value: (e) => e.heldChange, num: true, sign: true },
      { title: "Balance after", value: (e) => e.balanceAfter, num: true },
      { title: "Held after", value: (e) => e.heldAfter, num: true },
    ], {
      empty: "no transaction",
      rowData: (e) => ({ transaction: e.id, balanceAfter: String(e.balanceAfter) }),
      onRow: (entry, tr) => {
        const open = tr.nextSibling && tr.nextSibling.classList && tr.nextSibling.classList.contains("detail");
        if (open) { tr.nextSibling.remove(); return; }
        tr.after(el("tr", { class: "detail", dataset: { detailOf: entry.id } }, el("td", { colspan: 7 }, postingsOf(entry))));
      },
    });
    const more = page.hasMore && page.nextCursor
      ? el("p", {}, link(`#/customer/${encodeURIComponent(userId)}/explain/${encodeURIComponent(page.nextCursor)}`, "Older →"))
      : null;
    return [
      el("p", {}, link(`#/customer/${encodeURIComponent(userId)}`, `← ${userId}`)),
      card("Where the credits went", `now ${balance.available} available, ${balance.held} held; newest first, click a row for its postings and batches`,
        el("div", { id: "explanation", dataset: { available: String(balance.available), held: String(balance.held) } }, rows), more),
    ];
  }

  async function batchView(batchId) {
    const found = (await api(`/payment/admin/batches/${encodeURIComponent(batchId)}`)).body;
    const b = found.batch;
    return [
      el("p", {}, b.userId ? link(`#/customer/${encodeURIComponent(b.userId)}`, `← ${b.userId}`) : null),
      card(`Batch ${batchId.slice(0, 8)}`, `${b.source} · ${b.remaining} of ${b.amount} left · expires ${relative(b.expiresAt)}`,
        table(found.movements, [
          { title: "When", value: (mv) => when(mv.createdAt) },
          { title: "Type", value: (mv) => mv.transactionType },
          { title: "Reference", value: (mv) => mv.reference || "", wrap: true },
          { title: "Credits", value: (mv) => mv.credits, num: true, sign: true },
        ], { empty: "nothing moved" }),
        found.returnedElsewhere && found.returnedElsewhere.length
          ? el("div", {}, el("strong", {}, "Returned to another batch"), table(found.returnedElsewhere, [
            { title: "When", value: (r) => when(r.createdAt) },
            { title: "Type", value: (r) => r.transactionType },
            { title: "Batch", value: (r) => link(`#/batch/${r.batchId}`, r.batchId.slice(0, 8)) },
            { title: "Credits", value: (r) => r.credits, num: true },
          ])) : null),
    ];
  }

  async function auditView(userId) {
    const query = new URLSearchParams({ limit: "100" });
    if (userId) query.set("userId", userId);
    const page = (await api(`/payment/admin/audit?${query}`)).body;
    return [card(userId ? `Audit trail of ${userId}` : "Audit trail", null,
      el("p", {}, el("a", { href: `/payment/admin/audit.csv?${query}`, id: "audit-csv", download: "audit.csv" }, "Export CSV")),
      table(page.items, [
        { title: "When", value: (a) => when(a.at) },
        { title: "Admin", value: (a) => a.admin },
        { title: "Action", value: (a) => a.action },
        { title: "User", value: (a) => link(`#/customer/${encodeURIComponent(a.userId)}`, a.userId) },
        { title: "Reason", value: (a) => a.reason, wrap: true },
        { title: "Status", value: (a) => (a.errorCode ? `${a.status} ${a.errorCode}` : a.status) },
        { title: "Effect", value: (a) => (a.effect ? `${a.effect.type || ""} ${a.effect.credits ?? ""}`.trim() : ""), wrap: true },
      ], { empty: "no admin action yet", rowData: (a) => ({ action: a.action, command: a.commandId }) }))];
  }

  // --- routing ---------------------------------------------------------------------------
  async function route() {
    document.body.dataset.ready = "false";
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    const [view, id, sub, cursor] = parts;
    status("");
    try {
      let content;
      if (view === "search" && id) content = await searchView(id);
      else if (view === "customer" && id && sub === "explain") content = await explainView(id, cursor);
      else if (view === "customer" && id) content = await customerView(id);
      else if (view === "batch" && id) content = await batchView(id);
      else if (view === "audit") content = await auditView(id);
      else content = [el("p", { class: "empty" }, "Find a customer by user id, email, Stripe customer id, PaymentIntent id or transaction id.")];
      if (content === null) return;  // redirected
      $("view").replaceChildren(...content);
      ready(view || "home");
    } catch (error) {
      $("view").replaceChildren();
      showError(error);
      ready("error");
    }
  }

  async function start() {
    document.body.dataset.ready = "false";
    try {
      if (await loadSession()) await route();
      else ready("signed-out");
    } catch (error) {
      showError(error);
      ready("error");
    }
  }

  window.addEventListener("hashchange", () => { if (session) route(); });
  start();
})();
