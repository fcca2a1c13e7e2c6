"""The identity provider as the admin sign-in sees it: discovery, the authorization
request (code flow, PKCE S256, state, nonce), the code exchange and the ID token checks.

Authlib does the protocol: the authorization URL with its PKCE challenge, the token
request with the verifier and the client's authentication (client_secret_basic, or
`none` for a public client), and the ID token's claims (iss, aud, azp, exp, iat, nonce,
at_hash); joserfc checks the signature against the provider's JWKS. Nothing here keeps
state: the caller stores state, nonce and verifier between the two requests.
"""

import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

with warnings.catch_warnings():
    # Authlib prefers the httpx2 package and warns when it falls back to httpx, which is
    # the client the whole service uses; the fallback is the supported httpx client.
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from services.errors import DependencyUnavailable, Unauthorized
from services.settings import Settings

DISCOVERY_PATH = "/.well-known/openid-configuration"
# The provider's metadata and keys are fetched again after this long (key rotation);
# an unknown `kid` fetches the keys at once.
METADATA_TTL_SECONDS = 3600
HTTP_TIMEOUT = 10.0
ID_TOKEN_LEEWAY_SECONDS = 60


@dataclass(frozen=True)
class SignInRequest:
    """What the browser is sent to, and what must be kept until it comes back."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class Identity:
    subject: str
    email: str | None
    roles: frozenset[str]


class OidcClient:
    """One identity provider, its metadata cached per process."""

    def __init__(self, settings: Settings) -> None:
        if not settings.admin_oidc_configured:
            raise ValueError("ADMIN_OIDC_ISSUER, ADMIN_OIDC_CLIENT_ID and ADMIN_OIDC_REDIRECT_URL are needed")
        self.issuer = str(settings.admin_oidc_issuer).rstrip("/")
        self.client_id = str(settings.admin_oidc_client_id)
        self.client_secret = settings.admin_oidc_client_secret or None
        self.redirect_url = str(settings.admin_oidc_redirect_url)
        self.scopes = settings.admin_oidc_scopes
        self.roles_claim = settings.admin_oidc_roles_claim
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, Any] | None = None
        self._fetched_at = 0.0

    def _oauth(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            # A public client (no secret) authenticates with nothing but the PKCE verifier.
            token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none",
            scope=self.scopes,
            redirect_uri=self.redirect_url,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT,
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                response = await http.get(url)
                response.raise_for_status()
                body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise DependencyUnavailable(f"the identity provider did not answer ({url})") from error
        if not isinstance(body, dict):
            raise DependencyUnavailable(f"the identity provider's {url} is not a JSON object")
        return body

    async def metadata(self, *, refresh: bool = False) -> dict[str, Any]:
        stale = time.monotonic() - self._fetched_at > METADATA_TTL_SECONDS
        if self._metadata is None or refresh or stale:
            found = await self._get_json(self.issuer + DISCOVERY_PATH)
            # OpenID Connect Discovery 1.0, section 4.3: the document must name its issuer.
            if str(found.get("issuer", "")).rstrip("/") != self.issuer:
                raise DependencyUnavailable("the identity provider's discovery document names another issuer")
            for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(needed), str):
                    raise DependencyUnavailable(f"the discovery document has no {needed}")
            self._metadata, self._keys, self._fetched_at = found, None, time.monotonic()
        return self._metadata

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        metadata = await self.metadata()
        if self._keys is None or refresh:
            self._keys = await self._get_json(metadata["jwks_uri"])
        return KeySet.import_key_set(self._keys)  # type: ignore[arg-type]

    async def start(self) -> SignInRequest:
        """A fresh authorization request: 256-bit state, nonce and PKCE verifier."""
        metadata = await self.metadata()
        state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
        async with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
            )
        return SignInRequest(url, state, nonce, verifier)

    async def finish(self, code: str, *, nonce: str, code_verifier: str) -> Identity:
        """Exchange the code (with the PKCE verifier) and return the ID token's verified identity."""
        metadata = await self.metadata()
        try:
            async with self._oauth() as oauth:
                token = await oauth.fetch_token(
                    metadata["token_endpoint"], grant_type="authorization_code", code=code,
                    code_verifier=code_verifier, redirect_uri=self.redirect_url,
                )
        except OAuthError as error:  # invalid_grant and the like: a used, foreign or forged code
            raise Unauthorized(f"the identity provider refused the sign-in: {error}") from error
        except (httpx.HTTPError, ValueError) as error:
            raise DependencyUnavailable("the identity provider's token endpoint did not answer") from error
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthorized("the identity provider sent no ID token")
        claims = await self._verified_claims(id_token, nonce=nonce, access_token=token.get("access_token"))
        return self._identity(claims)

    async def _verified_claims(self, id_token: str, *, nonce: str, access_token: Any) -> CodeIDToken:
        metadata = await self.metadata()
        algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        # "none" and the HMAC family are never accepted for an ID token signed by the provider.
        algorithms = [a for a in algorithms if isinstance(a, str) and a[:2] in ("RS", "ES", "PS")]
        registry = JWSRegistry(algorithms=algorithms)
        try:
            try:
                decoded = jwt.decode(id_token, await self._key_set(), registry=registry)
            except JoseError:
                # A key the provider rotated in since we fetched: look once more.
                decoded = jwt.decode(id_token, await self._key_set(refresh=True), registry=registry)
            params: dict[str, Any] = {"nonce": nonce, "client_id": self.client_id}
            if isinstance(access_token, str):
                params["access_token"] = access_token
            claims = CodeIDToken(
                decoded.claims, decoded.header,
                {"iss": {"essential": True, "value": self.issuer},
                 "aud": {"essential": True, "value": self.client_id},
                 "nonce": {"essential": True, "value": nonce}},
                params,
            )
            claims.validate(leeway=ID_TOKEN_LEEWAY_SECONDS)
        except (JoseError, ValueError) as error:
            raise Unauthorized(f"the ID token was refused: {error}") from error
        return claims

    def _identity(self, claims: CodeIDToken) -> Identity:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("the ID token has no subject")
        roles = claims.get(self.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        email = claims.get("email")
        return Identity(
            subject,
            email if isinstance(email, str) else None,
            frozenset(r for r in roles if isinstance(r, str)),
        )
