"""HTTP contracts of the admin console's session (sign-in through the identity provider,
or the development sign-in)."""

from datetime import datetime

from pydantic import Field

from schemas.base import WireModel, examples


class AdminSessionRead(WireModel):
    """The signed-in admin, and the CSRF token every cookie-authenticated write must send."""

    model_config = examples({
        "subject": "ops-alice", "email": "alice@pika.example", "roles": ["admin"],
        "csrfToken": "q2VnY3Jm...", "expiresAt": "2026-12-02T17:00:00Z",
    })

    subject: str
    email: str | None = None
    roles: list[str]
    csrf_token: str = Field(description="Send as `X-CSRF-Token` on every POST made with the cookie.")
    expires_at: datetime = Field(description="The session ends then; sign in again.")


class DevSignInRequest(WireModel):
    """Development mode only: sign in as this subject with the admin role, no identity provider."""

    model_config = examples({"subject": "dev-admin"})

    subject: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@:-]+$")
    email: str | None = Field(None, max_length=254)
