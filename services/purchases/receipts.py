"""Resending a purchase's receipt (an admin's `receipt.resend`, from the support console).

The worker builds the receipt again from the purchase row, exactly as the payment's own
`receipt.requested` was built, as a new event with a new id: the notifier deduplicates
by event id, so the same event redelivered never sends twice, while a resend is a new
event and does send. Only a paid purchase has a receipt: a pending or failed one is
refused with PAY014, an unknown one (or another user's) with PAY008.
"""

from schemas.commands import ResendReceipt
from services.errors import InvalidState, NotFound
from services.ledger import account_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import envelope_of
from services.ledger.handlers.common import applied
from services.purchases.handlers import receipt_of
from services.purchases.purchase_store import LOCK_PURCHASE

PAID = ("succeeded", "refunded")


async def resend_receipt(ctx: LedgerContext, command: ResendReceipt) -> Outcome:
    """A fresh `receipt.requested` for a paid purchase; the balance shown is today's."""
    purchase_id = command.payload.purchase_id
    row = (
        await ctx.conn.execute(LOCK_PURCHASE, {"pi": None, "purchase": purchase_id})
    ).mappings().first()
    if row is None or row["user_id"] != command.user_id:
        raise NotFound("no such purchase", purchaseId=str(purchase_id))
    purchase = dict(row)
    if purchase["status"] not in PAID:
        raise InvalidState(
            f"the purchase is {purchase['status']}: only a paid purchase has a receipt",
            purchaseId=str(purchase_id),
            status=purchase["status"],
        )
    accounts = await account_store.lock_accounts(ctx.conn, [command.user_id])
    account = accounts.get(command.user_id)
    event = receipt_of(purchase, account.available if account else 0, envelope_of(command))
    return applied(
        command,
        {"purchaseId": str(purchase_id), "eventId": str(event.id), "resent": True},
        [event],
    )
