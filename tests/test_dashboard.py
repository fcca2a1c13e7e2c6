"""The admin dashboard in a real browser: Debian's chromium, headless, against a running
ingress and its real report endpoints, driven over the DevTools protocol.

The admin signs in the way `make run` offers it: the page, signed out, shows the
development sign-in (an ingress in development mode), the test clicks it, and the
browser keeps the HttpOnly session cookie the service set; no token is pasted or put in
a URL. The page marks `<body data-ready="true">` once every chart is drawn
("signed-out" without a session), `data-points` on each chart's section, and copies
every script error into `<pre id="errors">`; the DOM is read from the browser.
"""

import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.chromium_cdp import Browser
from tests.conftest import ARTIFACTS, Ingress, auth
from tests.test_http_api import charge_http, grant_http
from tests.test_purchases import purchase, wait_balance

CHARTS = ("chart-revenue", "chart-credits", "chart-liability", "chart-packs", "chart-churn",
          "chart-promos")
DRAWN_FROM_TEST_DATA = ("chart-revenue", "chart-credits", "chart-liability", "chart-packs")
EXTERNAL_URL = re.compile(r"https?://", re.IGNORECASE)
SCREENSHOT = ARTIFACTS / "dashboard.png"
# What the page settles on: charts drawn, a report failed, or no session.
SETTLED = ("['true', 'error', 'signed-out'].includes(document.body.dataset.ready)"
           " && document.body.dataset.ready")


class DomFacts(HTMLParser):
    """What the test reads from the dumped DOM: body data, chart sections, status, errors."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.points: dict[str, str | None] = {}
        self.texts: dict[str, str] = {"errors": "", "status": ""}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "body":
            self.body = found
        elif tag == "section" and found.get("id") in CHARTS:
            self.points[str(found["id"])] = found.get("data-points")
        elif found.get("id") in self.texts:
            self._in = found["id"]

    def handle_endtag(self, tag: str) -> None:
        if tag in {"pre", "p"}:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.texts[self._in] += data


def read_dom(dom: str) -> DomFacts:
    facts = DomFacts()
    facts.feed(dom)
    return facts


async def signed_in(browser: Browser, ingress: Ingress, subject: str) -> str:
    """Open the dashboard signed out, use its development sign-in; what the page settles on."""
    await browser.goto(f"{ingress.url}/payment/admin")
    assert await browser.wait_for(SETTLED) == "signed-out"
    assert await browser.evaluate("document.getElementById('dev-sign-in-box').hidden") is False
    await browser.evaluate(f"document.getElementById('dev-subject').value = {subject!r}")
    await browser.evaluate("document.getElementById('dev-sign-in').click()")
    await browser.wait_for("document.getElementById('account').dataset.state === 'signed-in'")
    return str(await browser.wait_for(SETTLED))


@pytest.fixture(scope="module")
async def report_data(ingress: Ingress, webhook_registered, stripe_client) -> str:
    """Today's figures: a paid pack purchase, an admin grant and a charge of credits."""
    user = f"u-dash-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=ingress.url, timeout=20) as http:
        pack_id = f"pack_dash_{uuid.uuid4().hex[:6]}"
        created = await http.post(
            "/payment/credit-packs/",
            json={"id": pack_id, "name": "Dashboard 10", "credits": 10, "price": 900,
                  "currency": "usd"},
            headers=auth("dash-admin", "admin"),
        )
        assert created.status_code == 201, created.text
        started = await purchase(http, pack_id, user)
        await stripe_client.v1.payment_intents.confirm_async(started["paymentIntentId"])
        assert (await wait_balance(http, user, 10))["total"] == 10, "the purchase was not granted"
        granted = await grant_http(http, user, 7, key=str(uuid.uuid4()))
        assert granted.status_code == 200, granted.text
        assert (await charge_http(http, user, 4)).status_code in {200, 202}
        assert (await wait_balance(http, user, 13))["total"] == 13, "the charge was not applied"
    return user


async def test_dashboard_draws_every_report_after_signing_in(dev_ingress, report_data):
    subject = f"dash-admin-{uuid.uuid4().hex[:6]}"
    async with Browser() as browser:
        settled = await signed_in(browser, dev_ingress, subject)
        dom = await browser.dom()
        cookies = {c["name"]: c for c in await browser.cookies()}
    facts = read_dom(dom)
    context = f"status: {facts.texts['status']!r}; errors: {facts.texts['errors']!r}"
    assert settled == "true", context
    assert facts.texts["errors"].strip() == "", context
    assert set(facts.points) == set(CHARTS), facts.points
    drawn = {chart: int(points or "-1") for chart, points in facts.points.items()}
    assert all(points >= 0 for points in drawn.values()), drawn
    assert all(drawn[chart] >= 1 for chart in DRAWN_FROM_TEST_DATA), drawn
    assert f"Signed in as {subject}" in dom
    session = cookies["pika_admin_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/payment"
    assert 'id="token"' not in dom and "#token=" not in dom, "no token is asked for or kept"


async def test_dashboard_screenshot(dev_ingress, report_data):
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    async with Browser(1400, 1800) as browser:
        assert await signed_in(browser, dev_ingress, "dash-admin") == "true"
        await browser.screenshot(SCREENSHOT)
    assert SCREENSHOT.exists(), "chromium wrote no screenshot"
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size > 20_000, "the screenshot is too small to hold the charts"


async def test_signing_out_ends_the_dashboards_session(dev_ingress, report_data):
    async with Browser() as browser:
        assert await signed_in(browser, dev_ingress, f"dash-admin-{uuid.uuid4().hex[:6]}") == "true"
        session_id = next(c["value"] for c in await browser.cookies() if c["name"] == "pika_admin_session")
        await browser.evaluate("document.getElementById('sign-out').click()")
        await browser.wait_for("document.getElementById('account').dataset.state === 'signed-out'")
        await browser.goto(f"{dev_ingress.url}/payment/admin")
        assert await browser.wait_for(SETTLED) == "signed-out"
    async with httpx.AsyncClient(base_url=dev_ingress.url) as http:
        old = await http.get("/payment/reports/revenue",
                             headers={"Cookie": f"pika_admin_session={session_id}"})
    assert old.status_code == 401, old.text


async def test_dashboard_without_a_session_shows_no_data_and_offers_what_is_configured(ingress):
    """Outside development mode with no identity provider configured: no development
    sign-in, no sign-in link, and a forged cookie is no session."""
    async with Browser() as browser:
        await browser.page("Network.setCookie", name="pika_admin_session", value="forged-" + uuid.uuid4().hex,
                           url=f"{ingress.url}/payment", path="/payment", httpOnly=True, sameSite="Strict")
        await browser.goto(f"{ingress.url}/payment/admin")
        assert await browser.wait_for(SETTLED) == "signed-out"
        facts = read_dom(await browser.dom())
        hidden = await browser.evaluate(
            "[document.getElementById('dev-sign-in-box').hidden, document.getElementById('sign-in').hidden]")
    assert hidden == [True, True]
    assert "No sign-in is configured" in facts.texts["status"], facts.texts
    assert facts.texts["errors"].strip() == "", facts.texts
    assert all(points in (None, "0") for points in facts.points.values()), facts.points


async def test_dashboard_files_are_served_from_the_ingress_with_no_external_url(http):
    page = await http.get("/payment/admin")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert not EXTERNAL_URL.search(page.text), EXTERNAL_URL.findall(page.text)
    scripts = re.findall(r'src="([^"]+)"', page.text)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert any("chart-4." in s for s in scripts) and styles, (scripts, styles)
    expected = {".js": "text/javascript", ".css": "text/css"}
    for path in [*scripts, *styles]:
        assert path.startswith("/payment/admin/static/"), path
        served = await http.get(path)
        assert served.status_code == 200, path
        assert served.headers["content-type"].startswith(expected[Path(path).suffix]), path
        assert served.headers["x-content-type-options"] == "nosniff"
        if "chart-4." not in path:  # the library's comments name its home page; ours name none
            assert not EXTERNAL_URL.search(served.text), (path, EXTERNAL_URL.findall(served.text))
    assert "Chart.js v4." in (await http.get(next(s for s in scripts if "chart-4." in s))).text
    for missing in ("/payment/admin/static/nope.js", "/payment/admin/static/..%2Fapp.py",
                    "/payment/admin/static/index.html"):
        assert (await http.get(missing)).status_code == 404, missing
