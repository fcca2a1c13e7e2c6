"""Self-hosted admin pages (the reports dashboard, the support console): their files,
read once from a fixed folder, and the headers that pin them to this origin.

A page holds no data and is public; what it shows comes from the admin JSON routes,
which check the caller. Everything it loads comes from here, so it works offline and a
Content-Security-Policy of 'self' only can pin that down.
"""

from functools import lru_cache
from pathlib import Path

from litestar import Response
from litestar.exceptions import NotFoundException

STATIC_ROOT = Path(__file__).resolve().parent / "static"
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


@lru_cache(maxsize=4)
def page_files(folder: str) -> dict[str, tuple[bytes, str]]:
    """The files of `folder` by name, read once: a fixed list, so no path from a URL
    touches the disk."""
    return {
        path.name: (path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in (STATIC_ROOT / folder).iterdir()
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def page(folder: str) -> Response[bytes]:
    """The page's index.html, never cached (it names the current assets)."""
    body, media_type = page_files(folder)["index.html"]
    return Response(body, media_type=media_type,
                    headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


def asset(folder: str, name: str, cache: str = "no-cache") -> Response[bytes]:
    """One of the page's scripts or styles, by its exact name."""
    found = page_files(folder).get(name)
    if found is None or name == "index.html":
        raise NotFoundException(f"no {folder} file {name!r}")
    body, media_type = found
    return Response(body, media_type=media_type,
                    headers={**SECURITY_HEADERS, "Cache-Control": cache})
