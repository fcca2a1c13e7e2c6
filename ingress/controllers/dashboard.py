"""The admin dashboard: one static page that draws the JSON reports with a vendored Chart.js.

The page holds no data, so it is public; it calls /payment/reports/* with the admin's
console session (the HttpOnly cookie of /payment/admin/sign-in, or the development
sign-in), never a pasted token. Everything it loads comes from here, so it works offline
and a Content-Security-Policy of 'self' only can pin that down.
"""

from functools import lru_cache
from pathlib import Path

from litestar import Controller, MediaType, Response, get
from litestar.exceptions import NotFoundException

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "dashboard"
CHART_JS = "chart-4.6.1.umd.min.js"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}
# Scripts, styles and fetches from this origin only; blob: for the CSV downloads.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@lru_cache(maxsize=1)
def static_files() -> dict[str, tuple[bytes, str]]:
    """The served files by name, read once: a fixed list, so no path from a URL touches the disk."""
    return {
        path.name: (path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in STATIC_DIR.iterdir()
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


class DashboardController(Controller):
    path = "/payment/admin"
    tags = ["dashboard"]

    @get("/", media_type=MediaType.HTML, operation_id="getAdminDashboard")
    async def page(self) -> Response[bytes]:
        """The reports dashboard page; its data is fetched with the admin's console session."""
        body, media_type = static_files()["index.html"]
        return Response(body, media_type=media_type,
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    @get("/static/{name:str}", operation_id="getAdminDashboardStatic", include_in_schema=False)
    async def static(self, name: str) -> Response[bytes]:
        found = static_files().get(name)
        if found is None or name == "index.html":
            raise NotFoundException(f"no dashboard file {name!r}")
        body, media_type = found
        # The library's name carries its version; our own files change with the service.
        cache = "public, max-age=86400, immutable" if name == CHART_JS else "no-cache"
        return Response(body, media_type=media_type,
                        headers={**SECURITY_HEADERS, "Cache-Control": cache})
