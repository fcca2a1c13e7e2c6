"""Where the command handlers are assembled: the one module that knows every domain.

The ledger applies commands with the registry it is given (services/ledger/registry.py)
instead of importing purchases, memberships and fraud, which themselves build on the
ledger. The ledger worker builds the registry once at start; seed, the benchmark and
the tests build it the same way.
"""

from services.fraud.handlers import HANDLERS as FRAUD_HANDLERS
from services.ledger.handlers import HANDLERS as LEDGER_HANDLERS
from services.ledger.handlers import SET_HANDLERS, Handler
from services.ledger.registry import CommandRegistry
from services.memberships.handlers import HANDLERS as MEMBERSHIP_HANDLERS
from services.purchases.claims import claim_returned_credits
from services.purchases.disputes import freeze_purchase, settle_dispute
from services.purchases.handlers import HANDLERS as PURCHASE_HANDLERS
from services.purchases.receipts import resend_receipt

PURCHASE_DISPUTE_HANDLERS: dict[str, Handler] = {
    "purchase.freeze": freeze_purchase,
    "purchase.settle_dispute": settle_dispute,
}
# An admin's resend of a purchase's receipt (the support console).
RECEIPT_HANDLERS: dict[str, Handler] = {"receipt.resend": resend_receipt}


def command_handlers() -> dict[str, Handler]:
    """The handler of every command type; a type claimed by two domains is a wiring bug."""
    handlers: dict[str, Handler] = {}
    for domain in (
        LEDGER_HANDLERS,
        PURCHASE_HANDLERS,
        MEMBERSHIP_HANDLERS,
        FRAUD_HANDLERS,
        PURCHASE_DISPUTE_HANDLERS,
        RECEIPT_HANDLERS,
    ):
        twice = handlers.keys() & domain.keys()
        if twice:
            raise RuntimeError(f"command types with two handlers: {sorted(twice)}")
        handlers.update(domain)
    return handlers


def command_registry() -> CommandRegistry:
    """Every handler, and purchases as the claimant of credits returned to bought batches."""
    return CommandRegistry(
        command_handlers(), set_handlers=SET_HANDLERS, return_claims=claim_returned_credits
    )
