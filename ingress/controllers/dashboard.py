"""The admin dashboard: one static page that draws the JSON reports with a vendored Chart.js.

The page holds no data, so it is public; it calls /payment/reports/* with the admin's
console session (the HttpOnly cookie of /payment/admin/sign-in, or the development
sign-in), never a pasted token. Its files and headers are those of every admin page
(ingress/static_pages.py): self-hosted, under a Content-Security-Policy of 'self' only.
"""

from litestar import Controller, MediaType, Response, get

from ingress.static_pages import asset, page

FOLDER = "dashboard"
CHART_JS = "chart-4.6.1.umd.min.js"


class DashboardController(Controller):
    path = "/payment/admin"
    tags = ["dashboard"]

    @get("/", media_type=MediaType.HTML, operation_id="getAdminDashboard")
    async def page(self) -> Response[bytes]:
        """The reports dashboard page; its data is fetched with the admin's console session."""
        return page(FOLDER)

    @get("/static/{name:str}", operation_id="getAdminDashboardStatic", include_in_schema=False)
    async def static(self, name: str) -> Response[bytes]:
        # The library's name carries its version; our own files change with the service.
        cache = "public, max-age=86400, immutable" if name == CHART_JS else "no-cache"
        return asset(FOLDER, name, cache)
