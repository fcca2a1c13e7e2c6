"""Idempotency replies are sealed (encrypted and authenticated) before they go to Redis.

A purchase's reply carries the PaymentIntent's client secret (a membership's carries
its subscription's), and whoever holds one can confirm that payment from a browser.
The replay store keeps replies for IDEMPOTENCY_TTL_SECONDS, so anyone able to read
Redis (a shared instance, a dump, MONITOR) would read live client secrets.

Why encrypt rather than drop the secret and fetch it again from Stripe on replay: the
idempotency layer replays any route's reply without knowing its shape. Dropping fields
would teach it the shape of every reply that carries a secret (purchases, memberships,
the next one someone adds), and a replay would then need Stripe to answer. Sealing the
whole reply keeps the layer generic and the replay identical to the first answer.

The key is derived with HKDF-SHA256 from STRIPE_SECRET_KEY: whoever holds that key
can read client secrets from Stripe anyway, so the seal adds no secret to manage and
shuts out exactly the reader of Redis who lacks it. A reply sealed under a rotated key
no longer opens; the idempotency layer then treats it as missing and runs the request
again under the same command id, which the ledger and Stripe's idempotency keys make
harmless.
"""

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_PURPOSE = b"pika-payment idempotency replies v1"


class ReplySeal:
    """Fernet (AES-CBC + HMAC) under a key derived from one secret."""

    def __init__(self, secret: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_PURPOSE).derive(
            secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, value: Any) -> str:
        return self._fernet.encrypt(json.dumps(value, default=str).encode()).decode("ascii")

    def open(self, token: str) -> Any | None:
        """The sealed value, or None when it was sealed under another key or altered."""
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError):
            return None
