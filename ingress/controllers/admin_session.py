"""Admin sign-in: the console's (and the dashboard's) session instead of a pasted token.

`sign-in` starts an OpenID Connect authorization code flow with PKCE (adapters.oidc),
`callback` finishes it and opens a server-side session (ingress.admin_sessions) whose id
goes into the `pika_admin_session` cookie: HttpOnly (no script reads it), SameSite=Strict
(no other site's request carries it), Path=/payment, Secure outside development mode.
Only an identity whose roles claim holds `admin` gets a session. The development sign-in
(PAYMENT_DEV_MODE only, which `make run` sets) opens the same session without a provider.
"""

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import Parameter
from litestar.response import Redirect

from adapters.oidc.client import OidcClient
from ingress.admin_sessions import (
    CALLBACK_PATH,
    COOKIE,
    COOKIE_PATH,
    CSRF_HEADER,
    SIGN_IN_COOKIE,
    AdminSession,
    PendingSignIn,
    cookie_value,
    sessions_of,
)
from ingress.errors import READ_ERRORS, error_responses
from schemas.session_api import AdminSessionRead, DevSignInRequest
from services.errors import Forbidden, NotFound, Unauthorized
from services.settings import Settings

# Where a signed-in admin lands when `next` is missing or not a path of this service.
CONSOLE_PATH = "/payment/admin/console"
ADMIN_ROLE = "admin"


def safe_next(value: str | None) -> str:
    """`next` only if it is a relative path under /payment/ on this origin: never a URL of
    another site (`https://evil`, `//evil`, `/\\evil`), so sign-in cannot redirect away."""
    if not value or len(value) > 512 or not value.startswith("/payment/"):
        return CONSOLE_PATH
    if "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return CONSOLE_PATH
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return CONSOLE_PATH
    return value


def oidc_of(request: Request[Any, Any, Any]) -> OidcClient:
    """The process's identity-provider client (its discovery cached), or 404 when the
    deployment configured no provider."""
    settings: Settings = request.app.state.settings
    if not settings.admin_oidc_configured:
        raise NotFound("sign-in through an identity provider is not configured (ADMIN_OIDC_ISSUER)")
    client = getattr(request.app.state, "oidc", None)
    if client is None:
        client = request.app.state.oidc = OidcClient(settings)
    return client


def session_cookie(settings: Settings, value: str, max_age: int) -> Cookie:
    return Cookie(key=COOKIE, value=value, path=COOKIE_PATH, max_age=max_age, httponly=True,
                  samesite="strict", secure=not settings.payment_dev_mode)


def session_read(session: AdminSession) -> AdminSessionRead:
    return AdminSessionRead(subject=session.subject, email=session.email, roles=list(session.roles),
                            csrf_token=session.csrf_token,
                            expires_at=datetime.fromtimestamp(session.expires_at, UTC))


class AdminSessionController(Controller):
    path = "/payment/admin"
    tags = ["admin session"]

    @get("/session", operation_id="getAdminSession",
         responses=error_responses(*READ_ERRORS, 401, 503))
    async def session(self, request: Request[Any, Any, Any]) -> AdminSessionRead:
        """The console session of this browser's cookie. Signed out: 401 PAY009 whose details
        say how to sign in here (`signIn`: the provider's sign-in path or null; `devSignIn`:
        whether the development sign-in is open), so a page can offer the right one."""
        session_id = cookie_value(request.headers.get("cookie"), COOKIE)
        session = await sessions_of(request.app.state).get(session_id) if session_id else None
        if session is None:
            settings: Settings = request.app.state.settings
            raise Unauthorized(
                "not signed in to the console",
                signIn="/payment/admin/sign-in" if settings.admin_oidc_configured else None,
                devSignIn=settings.payment_dev_mode,
            )
        return session_read(session)

    @get("/sign-in", operation_id="startAdminSignIn", status_code=302,
         responses=error_responses(*READ_ERRORS, 404, 503))
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        next_path: Annotated[str | None, Parameter(query="next", max_length=512)] = None,
    ) -> Redirect:
        """302 to the identity provider (authorization code, PKCE S256, state, nonce). `next`:
        a path of this service to return to afterwards (anything else: the console)."""
        oidc = oidc_of(request)
        started = await oidc.start()
        settings: Settings = request.app.state.settings
        await sessions_of(request.app.state).remember_sign_in(
            started.state, PendingSignIn(started.nonce, started.code_verifier, safe_next(next_path))
        )
        binding = Cookie(key=SIGN_IN_COOKIE, value=started.state, path=CALLBACK_PATH, httponly=True,
                         samesite="lax", secure=not settings.payment_dev_mode,
                         max_age=settings.admin_sign_in_timeout_seconds)
        return Redirect(started.url, status_code=302, cookies=[binding],
                        headers={"Cache-Control": "no-store"})

    @get("/callback", operation_id="finishAdminSignIn", status_code=303,
         responses=error_responses(*READ_ERRORS, 401, 403, 404, 503))
    async def callback(
        self,
        request: Request[Any, Any, Any],
        code: Annotated[str | None, Parameter(max_length=2048)] = None,
        oauth_state: Annotated[str | None, Parameter(query="state", max_length=512)] = None,
        error: Annotated[str | None, Parameter(max_length=256)] = None,
    ) -> Redirect:
        """Where the identity provider sends the browser back: checks state (bound to this
        browser, usable once), exchanges the code with the PKCE verifier, verifies the ID
        token (signature from the JWKS, iss, aud, exp, nonce), and for an admin opens the
        session and 303s to `next`. A non-admin identity gets 403 PAY010 and no session."""
        oidc = oidc_of(request)
        sessions = sessions_of(request.app.state)
        if error:
            raise Unauthorized(f"the identity provider did not sign you in ({error})")
        state = oauth_state
        if not code or not state:
            raise Unauthorized("the callback needs code and state: start at /payment/admin/sign-in")
        bound = cookie_value(request.headers.get("cookie"), SIGN_IN_COOKIE)
        if bound is None or bound != state:
            raise Unauthorized("this sign-in was not started in this browser: start again")
        pending = await sessions.take_sign_in(state)
        if pending is None:
            raise Unauthorized("this sign-in is unknown, expired or already used: start again")
        identity = await oidc.finish(code, nonce=pending.nonce, code_verifier=pending.code_verifier)
        if ADMIN_ROLE not in identity.roles:
            raise Forbidden(f"{identity.subject} is not an admin: the console is for admins only")
        session_id, _ = await sessions.create(identity.subject, identity.email, frozenset({ADMIN_ROLE}))
        settings: Settings = request.app.state.settings
        return Redirect(
            pending.next_path, status_code=303,
            cookies=[session_cookie(settings, session_id, settings.admin_session_seconds),
                     Cookie(key=SIGN_IN_COOKIE, value="", path=CALLBACK_PATH, max_age=0, httponly=True,
                            samesite="lax", secure=not settings.payment_dev_mode)],
            headers={"Cache-Control": "no-store"},
        )

    @post("/dev-sign-in", operation_id="devAdminSignIn", status_code=200,
          responses=error_responses(*READ_ERRORS, 404, 503))
    async def dev_sign_in(
        self, request: Request[Any, Any, Any], data: DevSignInRequest
    ) -> Response[AdminSessionRead]:
        """Development mode only (PAYMENT_DEV_MODE=true; 404 otherwise): an admin session for
        `subject` without an identity provider, so `make run` needs none."""
        settings: Settings = request.app.state.settings
        if not settings.payment_dev_mode:
            raise NotFound("no such route")
        session_id, session = await sessions_of(request.app.state).create(
            data.subject, data.email, frozenset({ADMIN_ROLE})
        )
        return Response(session_read(session), headers={"Cache-Control": "no-store"},
                        cookies=[session_cookie(settings, session_id, settings.admin_session_seconds)])

    @post("/sign-out", operation_id="adminSignOut", status_code=204,
          responses=error_responses(*READ_ERRORS, 403, 503))
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[None]:
        """Ends this browser's session (with its X-CSRF-Token, like every cookie write) and
        clears the cookie; with no live session there is nothing to end and 204 all the same."""
        settings: Settings = request.app.state.settings
        sessions = sessions_of(request.app.state)
        session_id = cookie_value(request.headers.get("cookie"), COOKIE)
        session = await sessions.get(session_id) if session_id else None
        if session is not None and session_id:
            if not session.csrf_matches(request.headers.get(CSRF_HEADER)):
                raise Forbidden("sign-out with the session cookie must send its X-CSRF-Token")
            await sessions.delete(session_id)
        return Response(None, status_code=204, cookies=[session_cookie(settings, "", 0)])
