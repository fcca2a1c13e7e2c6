"""Command handlers of the ledger: one function per use case, `verb_noun(ctx, cmd)`.

Each handler runs inside the batch's DB transaction (and its own savepoint), locks the
accounts it touches first, raises a `PaymentError` to reject (the savepoint then undoes
everything it wrote) and returns an `Outcome` whose events go to the outbox.

Charges, the hot path, goodwill grants and holds are applied set-based for many users at
once (`SET_HANDLERS`); a single one is the same code with one element.
"""

from services.ledger.handlers.charges import charge_credits, charge_credits_many
from services.ledger.handlers.common import APPLIED, Handler, SetHandler
from services.ledger.handlers.expiry import expire_credits
from services.ledger.handlers.grants import grant_batch, grant_credits, grant_credits_many
from services.ledger.handlers.holds import (
    capture_credits,
    hold_credits,
    hold_credits_many,
    release_credits,
    release_hold,
)
from services.ledger.handlers.refunds import refund_credits
from services.ledger.handlers.returns import return_to_batches
from services.ledger.handlers.transfers import transfer_credits

HANDLERS: dict[str, Handler] = {
    "credits.charge": charge_credits,
    "credits.hold": hold_credits,
    "credits.capture": capture_credits,
    "credits.release": release_credits,
    "credits.refund": refund_credits,
    "credits.grant": grant_credits,
    "credits.transfer": transfer_credits,
    "credits.expire": expire_credits,
}
# The types a round applies set-based (services/ledger/registry.py, SetHandler).
SET_HANDLERS: dict[str, SetHandler] = {
    "credits.charge": charge_credits_many,
    "credits.grant": grant_credits_many,
    "credits.hold": hold_credits_many,
}

__all__ = [
    "APPLIED",
    "HANDLERS",
    "SET_HANDLERS",
    "Handler",
    "capture_credits",
    "charge_credits",
    "charge_credits_many",
    "expire_credits",
    "grant_batch",
    "grant_credits",
    "grant_credits_many",
    "hold_credits",
    "hold_credits_many",
    "refund_credits",
    "release_credits",
    "release_hold",
    "return_to_batches",
    "transfer_credits",
]
