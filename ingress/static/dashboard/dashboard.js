/* The admin reports dashboard: fetches /payment/reports/* and draws them with the
 * vendored Chart.js. Loaded before the library (both deferred) so the error hooks below
 * also see the library's own errors.
 *
 * The admin is signed in by the console session: an HttpOnly cookie this script never
 * sees, sent by the browser to this origin only. GET /payment/admin/session says who is
 * signed in (and its CSRF token, sent as X-CSRF-Token on sign-out, the page's only
 * write); signed out, its details say whether to link to the identity provider's
 * sign-in or to offer the development sign-in (development mode only).
 *
 * For the tests and for monitoring: <body data-ready="true"> once every chart is drawn
 * ("error" when a report failed, "signed-out" without a session), each chart's <section data-points="N"> with the number
 * of data values drawn, and every script error in <pre id="errors">.
 */
"use strict";

(function () {
  // --- error capture ------------------------------------------------------------------
  const errorsBox = document.getElementById("errors");
  function describe(value) {
    if (value instanceof Error) return `${value.name}: ${value.message}`;
    if (typeof value === "string") return value;
    try { return JSON.stringify(value); } catch (_) { return String(value); }
  }
  function recordError(text) {
    errorsBox.textContent += `${new Date().toISOString()} ${text}\n`;
  }
  window.onerror = function (message, source, line, column, error) {
    recordError(`error: ${error ? describe(error) : message} at ${source}:${line}:${column}`);
  };
  window.addEventListener("unhandledrejection", (event) => {
    recordError(`unhandled rejection: ${describe(event.reason)}`);
  });
  const consoleError = console.error.bind(console);
  console.error = function (...args) {
    recordError(`console.error: ${args.map(describe).join(" ")}`);
    consoleError(...args);
  };

  // --- session ------------------------------------------------------------------------
  // null: signed out; else {subject, email, roles, csrfToken, expiresAt}. In memory only.
  let session = null;
  async function readSession() {
    let response;
    try {
      response = await fetch("/payment/admin/session", { cache: "no-store", credentials: "same-origin" });
    } catch (error) {
      return { session: null, problem: `Could not reach the service: ${describe(error)}` };
    }
    if (response.ok) return { session: await response.json() };
    let details = {};
    try { details = (await response.json()).details || {}; } catch (_) { /* not our error shape */ }
    return { session: null, signIn: details.signIn || null, devSignIn: details.devSignIn === true };
  }
  function showAccount(found) {
    const account = document.getElementById("account");
    session = found.session;
    account.dataset.state = session ? "signed-in" : "signed-out";
    document.getElementById("who").textContent = session
      ? `Signed in as ${session.email || session.subject}` : "Signed out.";
    document.getElementById("sign-out").hidden = !session;
    document.getElementById("sign-in").hidden = Boolean(session) || !found.signIn;
    document.getElementById("dev-sign-in-box").hidden = Boolean(session) || !found.devSignIn;
  }
  async function devSignIn() {
    const subject = document.getElementById("dev-subject").value.trim();
    const response = await fetch("/payment/admin/dev-sign-in", {
      method: "POST", cache: "no-store", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ subject }),
    });
    if (!response.ok) { setStatus(`Development sign-in failed (${response.status}).`, "bad"); return; }
    await checkSession(true);
  }
  async function signOut() {
    if (!session) return;
    await fetch("/payment/admin/sign-out", {
      method: "POST", cache: "no-store", credentials: "same-origin",
      headers: { "X-CSRF-Token": session.csrfToken },
    });
    charts.forEach((_, id) => clearChart(id, ""));
    await checkSession(false);
  }
  async function checkSession(load) {
    const found = await readSession();
    showAccount(found);
    if (found.problem) { setStatus(found.problem, "bad"); document.body.dataset.ready = "error"; return; }
    if (!session) {
      const how = found.signIn ? "Sign in with your admin account." : found.devSignIn
        ? "Use the development sign-in." : "No sign-in is configured on this service.";
      setStatus(`Signed out. ${how}`, "bad");
      document.body.dataset.ready = "signed-out";
      return;
    }
    if (load) refresh();
  }

  // --- dates (UTC, as the reports bucket) -----------------------------------------------
  function isoDay(date) { return date.toISOString().slice(0, 10); }
  function addDays(day, days) {
    const date = new Date(`${day}T00:00:00Z`);
    date.setUTCDate(date.getUTCDate() + days);
    return isoDay(date);
  }

  // --- formatting: integers in, strings out ---------------------------------------------
  function groupDigits(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function money(minor, currency) {
    const n = Math.round(Number(minor)); // axis ticks may be fractional; amounts never are
    const abs = Math.abs(n);
    const cents = abs % 100;
    const major = (abs - cents) / 100; // exact: integer division of an integer
    return `${n < 0 ? "-" : ""}${groupDigits(major)}.${String(cents).padStart(2, "0")} ${currency.toUpperCase()}`;
  }
  function percentFromBp(bp) {
    const n = Math.round(Number(bp));
    const abs = Math.abs(n);
    const rest = abs % 100;
    return `${n < 0 ? "-" : ""}${(abs - rest) / 100}.${String(rest).padStart(2, "0")}%`;
  }
  function count(n) { return groupDigits(Math.round(Number(n))); }
  function bucketLabel(start, granularity) {
    return granularity === "month" ? String(start).slice(0, 7) : String(start).slice(0, 10);
  }

  // --- HTTP -----------------------------------------------------------------------------
  class ReportError extends Error {
    constructor(report, status, detail) {
      super(detail);
      this.report = report;
      this.status = status; // 0: the network failed
    }
  }
  async function getReport(report, params, format) {
    const query = new URLSearchParams(params);
    if (format === "csv") query.set("format", "csv");
    let response;
    try {
      response = await fetch(`/payment/reports/${report}?${query}`, {
        headers: { Accept: format === "csv" ? "text/csv" : "application/json" },
        cache: "no-store",
        credentials: "same-origin", // the session cookie; GETs need no CSRF token
      });
    } catch (error) {
      throw new ReportError(report, 0, describe(error));
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = [body.code, body.message].filter(Boolean).join(" ") || detail;
      } catch (_) { /* not the service's error shape */ }
      throw new ReportError(report, response.status, detail);
    }
    return format === "csv" ? response.blob() : response.json();
  }
  function explain(error) {
    if (!(error instanceof ReportError)) return `Unexpected failure: ${describe(error)}`;
    const where = `/payment/reports/${error.report}`;
    if (error.status === 0) return `Could not reach the service (${where}): ${error.message}. Check the connection and press Refresh.`;
    if (error.status === 401) return `Your session has ended (401 ${error.message}). Sign in again.`;
    if (error.status === 403) return `This account is not an admin's (403 ${error.message}). The reports need the admin role.`;
    if (error.status === 404) return `${where} is not available on this service (404).`;
    if (error.status === 429) return `Too many requests (429): wait a minute and press Refresh.`;
    return `${where} answered ${error.status}: ${error.message}`;
  }

  // --- charts ---------------------------------------------------------------------------
  const COLORS = {
    blue: "#2563eb", red: "#dc2626", green: "#16a34a", amber: "#d97706", violet: "#7c3aed",
    teal: "#0d9488", slate: "#64748b", pink: "#db2777", sky: "#0284c7", lime: "#65a30d",
  };
  const PLAN_COLORS = Object.values(COLORS);
  const charts = new Map();

  function sectionOf(id) { return document.getElementById(id); }
  function clearChart(id, message) {
    const section = sectionOf(id);
    if (charts.has(id)) { charts.get(id).destroy(); charts.delete(id); }
    section.dataset.points = "0";
    section.querySelector("[data-total]").textContent = "";
    const note = section.querySelector(".note");
    note.textContent = message || "";
    note.hidden = !message;
    section.classList.toggle("failed", Boolean(message));
  }
  function draw(id, config, total) {
    clearChart(id, "");
    const section = sectionOf(id);
    const options = config.options || (config.options = {});
    options.animation = false;
    options.responsive = true;
    options.maintainAspectRatio = false;
    options.interaction = options.interaction || { mode: "index", intersect: false };
    const chart = new Chart(section.querySelector("canvas"), config);
    charts.set(id, chart);
    const points = config.data.datasets.reduce((sum, set) => sum + set.data.length, 0);
    section.dataset.points = String(points);
    section.querySelector("[data-total]").textContent = total || "";
    if (points === 0) {
      const note = section.querySelector(".note");
      note.textContent = "Nothing in this range.";
      note.hidden = false;
    }
  }
  function line(label, data, color, extra) {
    return { label, data, borderColor: color, backgroundColor: color, pointRadius: 2, tension: 0.2, ...extra };
  }
  function bar(label, data, color, extra) {
    return { label, data, backgroundColor: color, borderColor: color, maxBarThickness: 48, ...extra };
  }
  function moneyAxis(currency, extra) {
    return { beginAtZero: true, ticks: { precision: 0, callback: (v) => money(v, currency) }, ...extra };
  }
  function countAxis(extra) {
    return { beginAtZero: true, ticks: { precision: 0, callback: (v) => count(v) }, ...extra };
  }

  function drawRevenue(report, view) {
    const currency = report.currency || view.currency;
    const labels = report.buckets.map((b) => bucketLabel(b.start, view.granularity));
    const t = report.totals || {};
    draw("chart-revenue", {
      type: "line",
      data: {
        labels,
        datasets: [
          line("gross", report.buckets.map((b) => b.gross), COLORS.blue),
          line("refunds", report.buckets.map((b) => b.refunds), COLORS.red),
          line("net", report.buckets.map((b) => b.net), COLORS.green, { borderWidth: 3 }),
        ],
      },
      options: {
        scales: { y: moneyAxis(currency) },
        plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${money(c.raw, currency)}` } } },
      },
    }, `net ${money(t.net || 0, currency)} · gross ${money(t.gross || 0, currency)} · refunds ${money(t.refunds || 0, currency)} · packs ${money(t.packs || 0, currency)} · memberships ${money(t.memberships || 0, currency)}`);
  }

  function drawCredits(report, view) {
    const labels = report.buckets.map((b) => bucketLabel(b.start, view.granularity));
    const of = (key) => report.buckets.map((b) => b[key]);
    const t = report.totals || {};
    const issued = (t.issuedPurchased || 0) + (t.issuedMembership || 0) + (t.issuedPromotional || 0) + (t.issuedRefunded || 0);
    draw("chart-credits", {
      type: "bar",
      data: {
        labels,
        datasets: [
          bar("issued: purchased", of("issuedPurchased"), COLORS.blue, { stack: "issued" }),
          bar("issued: membership", of("issuedMembership"), COLORS.violet, { stack: "issued" }),
          bar("issued: promotional", of("issuedPromotional"), COLORS.sky, { stack: "issued" }),
          bar("issued: refunded", of("issuedRefunded"), COLORS.teal, { stack: "issued" }),
          bar("consumed", of("consumed"), COLORS.green, { stack: "out" }),
          bar("expired", of("expired"), COLORS.amber, { stack: "out" }),
          bar("clawed back", of("clawedBack"), COLORS.red, { stack: "out" }),
        ],
      },
      options: {
        scales: { x: { stacked: true }, y: countAxis({ stacked: true }) },
        plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${count(c.raw)} credits` } } },
      },
    }, `issued ${count(issued)} · consumed ${count(t.consumed || 0)} · expired ${count(t.expired || 0)} · clawed back ${count(t.clawedBack || 0)}`);

    const closing = report.buckets.length ? report.buckets[report.buckets.length - 1].liability : report.openingLiability;
    draw("chart-liability", {
      type: "line",
      data: {
        labels,
        datasets: [line("liability (credits)", of("liability"), COLORS.violet, { fill: true, backgroundColor: "rgba(124, 58, 237, 0.15)" })],
      },
      options: {
        scales: { y: countAxis() },
        plugins: { tooltip: { callbacks: { label: (c) => `liability: ${count(c.raw)} credits` } } },
      },
    }, `opening ${count(report.openingLiability || 0)} · closing ${count(closing || 0)} credits`);
  }

  function drawPacks(report, view) {
    const currency = report.currency || view.currency;
    const items = report.items.slice(0, 10);
    draw("chart-packs", {
      type: "bar",
      data: {
        labels: items.map((i) => i.name || i.packId),
        datasets: [bar("revenue", items.map((i) => i.revenue), COLORS.blue)],
      },
      options: {
        indexAxis: "y",
        interaction: { mode: "nearest", axis: "y", intersect: false },
        scales: { x: moneyAxis(currency) },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (c) => `revenue: ${money(c.raw, currency)}`,
              afterLabel: (c) => `${count(items[c.dataIndex].purchases)} purchases · ${count(items[c.dataIndex].credits)} credits`,
            },
          },
        },
      },
    }, `${count(report.items.reduce((s, i) => s + i.purchases, 0))} purchases of ${count(report.items.length)} packs · ${money(report.items.reduce((s, i) => s + i.revenue, 0), currency)}`);
  }

  function drawChurn(report) {
    const months = [...new Set(report.buckets.map((b) => bucketLabel(b.start, "month")))].sort();
    const plans = [...new Set(report.buckets.map((b) => b.planId))].sort();
    const cell = new Map(report.buckets.map((b) => [`${b.planId}|${bucketLabel(b.start, "month")}`, b]));
    const datasets = plans.map((plan, index) => bar(
      plan,
      months.map((m) => (cell.get(`${plan}|${m}`) || { churnRateBp: 0 }).churnRateBp),
      PLAN_COLORS[index % PLAN_COLORS.length],
    ));
    const canceled = report.buckets.reduce((s, b) => s + b.canceled, 0);
    const added = report.buckets.reduce((s, b) => s + b.new, 0);
    draw("chart-churn", {
      type: "bar",
      data: { labels: months, datasets },
      options: {
        scales: { y: { beginAtZero: true, title: { display: true, text: "churn rate" }, ticks: { precision: 0, callback: (v) => percentFromBp(v) } } },
        plugins: {
          tooltip: {
            callbacks: {
              label: (c) => `${c.dataset.label}: ${percentFromBp(c.raw)}`,
              afterLabel: (c) => {
                const b = cell.get(`${c.dataset.label}|${months[c.dataIndex]}`);
                return b ? `at start ${count(b.atStart)} · new ${count(b.new)} · canceled ${count(b.canceled)}` : "";
              },
            },
          },
        },
      },
    }, `${count(plans.length)} plans · new ${count(added)} · canceled ${count(canceled)}`);
  }

  function drawPromos(report, view) {
    const items = report.items;
    const currency = (items[0] && items[0].currency) || view.currency;
    draw("chart-promos", {
      type: "bar",
      data: {
        labels: items.map((i) => i.code),
        datasets: [
          bar("redemptions", items.map((i) => i.redemptions), COLORS.teal, { yAxisID: "y" }),
          bar("discount given", items.map((i) => i.discountGiven), COLORS.amber, { yAxisID: "money" }),
        ],
      },
      options: {
        scales: {
          y: countAxis({ position: "left", title: { display: true, text: "redemptions" } }),
          money: moneyAxis(currency, { position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "discount" } }),
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: (c) => (c.dataset.yAxisID === "money" ? `discount: ${money(c.raw, items[c.dataIndex].currency || currency)}` : `redemptions: ${count(c.raw)}`),
              afterBody: (ctx) => {
                const i = items[ctx[0].dataIndex];
                return `${i.kind} · revenue ${money(i.revenue, i.currency || currency)} · bonus credits ${count(i.bonusCreditsGranted)} granted, ${count(i.bonusCreditsSpent)} spent`;
              },
            },
          },
        },
      },
    }, `${count(items.length)} codes · ${count(items.reduce((s, i) => s + i.redemptions, 0))} redemptions`);
  }

  // --- the page -------------------------------------------------------------------------
  const REPORTS = [
    { name: "revenue", sections: ["chart-revenue"], params: (v) => ({ from: v.from, to: v.to, granularity: v.granularity, currency: v.currency }), draw: drawRevenue },
    { name: "credits", sections: ["chart-credits", "chart-liability"], params: (v) => ({ from: v.from, to: v.to, granularity: v.granularity }), draw: drawCredits },
    { name: "packs", sections: ["chart-packs"], params: (v) => ({ from: v.from, to: v.to, currency: v.currency }), draw: drawPacks },
    { name: "churn", sections: ["chart-churn"], params: (v) => ({ from: v.from, to: v.to, granularity: "month" }), draw: drawChurn },
    { name: "promo-codes", sections: ["chart-promos"], params: (v) => ({ from: v.from, to: v.to }), draw: drawPromos },
  ];
  const input = (id) => document.getElementById(id);
  const statusLine = input("status");
  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.className = kind || "";
  }
  function currentView() {
    const from = input("from").value;
    const through = input("to").value;
    if (!from || !through) throw new RangeError("Pick both dates.");
    if (through < from) throw new RangeError("The range ends before it starts.");
    const currency = (input("currency").value.trim() || "usd").toLowerCase();
    if (!/^[a-z]{3}$/.test(currency)) throw new RangeError("The currency is a three-letter code, e.g. usd.");
    return { from, to: addDays(through, 1), granularity: input("granularity").value, currency };
  }
  function nextFrame() {
    return new Promise((resolve) => {
      requestAnimationFrame(() => resolve());
      setTimeout(resolve, 200); // a hidden tab may not paint frames
    });
  }

  let generation = 0;
  async function refresh() {
    const mine = ++generation;
    document.body.dataset.ready = "false";
    let view;
    try { view = currentView(); } catch (error) { setStatus(error.message, "bad"); return; }
    if (!session) { setStatus("Sign in first.", "bad"); document.body.dataset.ready = "signed-out"; return; }
    if (typeof Chart === "undefined") {
      recordError("Chart.js did not load from /payment/admin/static/");
      setStatus("The charting library did not load.", "bad");
      document.body.dataset.ready = "error";
      return;
    }
    setStatus(`Loading ${view.from} to ${addDays(view.to, -1)}…`);
    const results = await Promise.allSettled(REPORTS.map((r) => getReport(r.name, r.params(view), "json")));
    if (mine !== generation) return; // a newer refresh took over
    const failures = [];
    results.forEach((result, index) => {
      const report = REPORTS[index];
      if (result.status === "fulfilled") {
        try {
          report.draw(result.value, view);
          return;
        } catch (error) {
          recordError(`drawing ${report.name}: ${describe(error)}`);
          failures.push(error);
        }
      } else {
        failures.push(result.reason);
      }
      const why = failures[failures.length - 1];
      report.sections.forEach((id) => clearChart(id, explain(why)));
    });
    await nextFrame();
    if (mine !== generation) return;
    if (failures.length === 0) {
      setStatus(`Updated ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC · ${view.from} to ${addDays(view.to, -1)} by ${view.granularity}, ${view.currency.toUpperCase()}.`, "good");
      document.body.dataset.ready = "true";
    } else {
      const auth = failures.find((f) => f instanceof ReportError && (f.status === 401 || f.status === 403));
      setStatus(explain(auth || failures[0]), "bad");
      document.body.dataset.ready = "error";
      if (auth && auth.status === 401) showAccount(await readSession());
    }
  }

  async function downloadCsv(report) {
    const entry = REPORTS.find((r) => r.name === report);
    let view;
    try { view = currentView(); } catch (error) { setStatus(error.message, "bad"); return; }
    if (!session) { setStatus("Sign in first.", "bad"); return; }
    try {
      const blob = await getReport(report, entry.params(view), "csv");
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = `${report}-${view.from}-to-${view.to}.csv`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      setStatus(explain(error), "bad");
    }
  }

  function start() {
    const today = isoDay(new Date());
    input("to").value = today;
    input("from").value = addDays(today, -29);
    if (typeof Chart !== "undefined") {
      Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
      Chart.defaults.color = "#334155";
    }
    input("controls").addEventListener("submit", (event) => {
      event.preventDefault();
      refresh();
    });
    input("dev-sign-in").addEventListener("click", () => { devSignIn(); });
    input("sign-out").addEventListener("click", () => { signOut(); });
    document.querySelectorAll("button[data-csv]").forEach((button) => {
      button.addEventListener("click", () => downloadCsv(button.dataset.csv));
    });
    checkSession(true);
  }

  // Deferred scripts run before DOMContentLoaded, and the library runs after this one:
  // wait for the event so Chart is defined.
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
