"""Placeholder secrets that must never reach a deployment.

The development defaults in `services/settings.py`, docker-compose.yml and the example
Kubernetes Secret are readable by anyone with the repository. A process that starts with
one of them signs or accepts tokens, webhooks and API calls an outsider can forge, and
nothing else would notice. So every `pika-payment` command asks `placeholder_secrets`
before doing anything, and refuses to start unless PAYMENT_DEV_MODE says this is a
developer's machine.
"""

from services.settings import Settings

# Shortest secret accepted outside dev mode: an HS256 key should carry at least the 256
# bits of its hash (RFC 7518 section 3.2); Stripe's own webhook secrets are longer.
MIN_SECRET_LENGTH = 32
# Markers of a value that was meant to be replaced (compose and k8s examples use them).
PLACEHOLDER_MARKERS = ("change_me", "change-me")
DEV_JWT_SECRET = "dev-secret-change-me"
DEV_WEBHOOK_SECRET = "whsec_dev"
DEV_STRIPE_SECRET_KEY = "sk_test_dev"


def _too_weak(name: str, value: str, dev_default: str) -> list[str]:
    if value == dev_default:
        return [f"{name} is the development default {dev_default!r}"]
    if len(value) < MIN_SECRET_LENGTH:
        return [f"{name} is shorter than {MIN_SECRET_LENGTH} characters"]
    return []


def _configured_secrets(settings: Settings) -> dict[str, str | None]:
    """Variables whose value is a secret or a credential-bearing URL, by variable name.

    The JWT secret counts only while HS256 tokens are accepted: a deployment verifying
    RS256/ES256 tokens leaves it unset (its default is never used to verify anything).
    The publishable key is not secret, but a placeholder there breaks every payment.
    """
    secrets: dict[str, str | None] = {
        "STRIPE_SECRET_KEY": settings.stripe_secret_key,
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "STRIPE_PUBLISHABLE_KEY": settings.stripe_publishable_key,
        "SMTP_PASSWORD": settings.smtp_password,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        # An admin console whose client secret is a placeholder lets anyone who read it
        # exchange codes as us at the identity provider.
        "ADMIN_OIDC_CLIENT_SECRET": settings.admin_oidc_client_secret,
    }
    if "HS256" in settings.jwt_algorithms:
        secrets["PAYMENT_JWT_SECRET"] = settings.payment_jwt_secret
    return secrets


def placeholder_secrets(settings: Settings) -> list[str]:
    """Every reason `settings` must not run outside development (empty: fine to run).

    Each reason names its variable and never quotes a configured value, so the list can
    be printed and logged as it is.
    """
    problems: list[str] = []
    if "HS256" in settings.jwt_algorithms:
        problems += _too_weak("PAYMENT_JWT_SECRET", settings.payment_jwt_secret, DEV_JWT_SECRET)
    problems += _too_weak("STRIPE_WEBHOOK_SECRET", settings.stripe_webhook_secret, DEV_WEBHOOK_SECRET)
    if settings.stripe_secret_key == DEV_STRIPE_SECRET_KEY:
        problems.append(f"STRIPE_SECRET_KEY is the development default {DEV_STRIPE_SECRET_KEY!r}")
    reported = {problem.split()[0] for problem in problems}
    for name, value in _configured_secrets(settings).items():
        if name in reported:
            continue
        if value and any(marker in value.lower() for marker in PLACEHOLDER_MARKERS):
            problems.append(f"{name} holds a placeholder (CHANGE_ME / change-me)")
    return problems


def refusal_message(problems: list[str]) -> str:
    """What an operator reads when a process refuses to start."""
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return (
        "refusing to start: placeholder secrets outside development (PAYMENT_DEV_MODE is off)\n"
        f"{lines}\n"
        "Set real secrets (Kubernetes: the pika-payment-secrets Secret), or PAYMENT_DEV_MODE=true "
        "on a developer machine."
    )
