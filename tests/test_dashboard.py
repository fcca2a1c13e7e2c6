"""The admin dashboard in a real browser: Debian's chromium, headless, against the running
ingress and its real report endpoints.

The page is opened as `/payment/admin#token=<admin JWT>` (a fragment is never sent to a
server). It marks `<body data-ready="true">` once every chart is drawn, `data-points` on
each chart's section, and copies every script error into `<pre id="errors">`; the DOM
chromium dumps after its virtual-time budget is checked for those.
"""

import asyncio
import re
import tempfile
import uuid
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.conftest import ARTIFACTS, Ingress, auth, token
from tests.test_http_api import charge_http, grant_http
from tests.test_purchases import purchase, wait_balance

CHROMIUM = Path("/usr/bin/chromium")
CHARTS = ("chart-revenue", "chart-credits", "chart-liability", "chart-packs", "chart-churn",
          "chart-promos")
DRAWN_FROM_TEST_DATA = ("chart-revenue", "chart-credits", "chart-liability", "chart-packs")
EXTERNAL_URL = re.compile(r"https?://", re.IGNORECASE)
SCREENSHOT = ARTIFACTS / "dashboard.png"


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


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium and "
            "chromium-driver (or apt-get install -y chromium chromium-driver as root)"
        )


async def chromium(url: str, *mode: str, timeout: float = 120) -> str:
    """Run headless chromium once on `url`; its stdout (the DOM with --dump-dom)."""
    require_chromium()
    with tempfile.TemporaryDirectory(prefix="pika-chromium-") as profile:
        child = await asyncio.create_subprocess_exec(
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--virtual-time-budget=15000", *mode, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(child.communicate(), timeout)
        except TimeoutError:
            child.kill()
            await child.wait()
            pytest.fail(f"chromium did not finish within {timeout}s on {url.split('#')[0]}")
    assert child.returncode == 0, f"chromium exited {child.returncode}:\n{err.decode()[-3000:]}"
    return out.decode()


def read_dom(dom: str) -> DomFacts:
    facts = DomFacts()
    facts.feed(dom)
    return facts


def page_url(ingress: Ingress, jwt: str) -> str:
    return f"{ingress.url}/payment/admin#token={jwt}"


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


async def test_dashboard_draws_every_report_in_chromium(ingress, report_data):
    dom = await chromium(page_url(ingress, token("dash-admin", "admin")), "--dump-dom")
    facts = read_dom(dom)
    context = f"status: {facts.texts['status']!r}; errors: {facts.texts['errors']!r}"
    assert facts.body.get("data-ready") == "true", context
    assert facts.texts["errors"].strip() == "", context
    assert set(facts.points) == set(CHARTS), facts.points
    drawn = {chart: int(points or "-1") for chart, points in facts.points.items()}
    assert all(points >= 0 for points in drawn.values()), drawn
    assert all(drawn[chart] >= 1 for chart in DRAWN_FROM_TEST_DATA), drawn
    assert "#token=" not in dom and "?token=" not in dom, "the token must not stay in the page"


async def test_dashboard_screenshot(ingress, report_data):
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    await chromium(page_url(ingress, token("dash-admin", "admin")),
                   f"--screenshot={SCREENSHOT}", "--window-size=1400,1800")
    assert SCREENSHOT.exists(), "chromium wrote no screenshot"
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size > 20_000, "the screenshot is too small to hold the charts"


async def test_dashboard_says_so_when_the_token_is_refused(ingress):
    for jwt, status in ((token("dash-user"), "403"), ("not-a-jwt", "401")):
        facts = read_dom(await chromium(page_url(ingress, jwt), "--dump-dom"))
        assert facts.body.get("data-ready") == "error", facts.texts
        assert status in facts.texts["status"], facts.texts
        assert facts.texts["errors"].strip() == "", facts.texts


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
