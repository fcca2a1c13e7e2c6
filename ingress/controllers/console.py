"""The support console: one static page that answers "where did my credits go?".

The page holds no data, so it is public; it reads the admin routes under
/payment/admin/ (customers, balance explanation, batches, actions, audit) with the
admin's session cookie, which those routes check.
"""

from litestar import Controller, MediaType, Response, get

from ingress.static_pages import asset, page

FOLDER = "console"


class ConsoleController(Controller):
    path = "/payment/admin/console"
    tags = ["console"]

    @get("/", media_type=MediaType.HTML, operation_id="getSupportConsole")
    async def page(self) -> Response[bytes]:
        """The support console page; its data is fetched with the admin's session."""
        return page(FOLDER)

    @get("/static/{name:str}", operation_id="getSupportConsoleStatic", include_in_schema=False)
    async def static(self, name: str) -> Response[bytes]:
        return asset(FOLDER, name)
