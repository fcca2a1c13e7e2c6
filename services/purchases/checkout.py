"""Starting a purchase: limits, the user's Stripe customer, a PaymentIntent, a pending row.

No credits move here. They are granted by the ledger worker when Stripe's signed
`payment_intent.succeeded` arrives (DESIGN.md §1), never on the client's word.
"""

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.errors import CreditLimitExceeded, TransactionLimitExceeded
from services.ledger import queries
from services.ledger.repository import transactions_today
from services.purchases.catalogue import get_pack
from services.purchases.customers import ensure_customer
from services.purchases.ports import PaymentProvider
from services.settings import Settings

SAVE_PURCHASE = text(
    """
    INSERT INTO purchases (id, user_id, pack_id, credits, bonus_credits, amount_minor, currency,
                           status, payment_intent_id, checkout_session_id, email)
    VALUES (:id, :user_id, :pack_id, :credits, :bonus, :amount, :currency, 'pending', :pi,
            :session, :email)
    ON CONFLICT (id) DO NOTHING
    """
)
FIND_PURCHASE = text(
    "SELECT id, pack_id, payment_intent_id, checkout_session_id, amount_minor, currency, "
    "credits, bonus_credits, status FROM purchases WHERE id = :id"
)


def check_limits(
    settings: Settings, pack: dict[str, Any], balance_total: int, today: int = 0
) -> None:
    """The limits a purchase must meet before anyone is charged."""
    granted = pack["credits"] + pack["bonus_credits"]
    if today >= settings.max_daily_transactions:
        raise TransactionLimitExceeded(
            f"{today} transactions today reach the daily limit of "
            f"{settings.max_daily_transactions}",
            today=today,
            limit=settings.max_daily_transactions,
        )
    if pack["credits"] < settings.min_credit_purchase:
        raise TransactionLimitExceeded(
            f"a purchase buys at least {settings.min_credit_purchase} credits",
            credits=pack["credits"],
            minimum=settings.min_credit_purchase,
        )
    if pack["credits"] > settings.max_transaction_amount:
        raise TransactionLimitExceeded(
            f"a purchase buys at most {settings.max_transaction_amount} credits",
            credits=pack["credits"],
            limit=settings.max_transaction_amount,
        )
    if balance_total + granted > settings.max_credit_balance:
        raise CreditLimitExceeded(
            f"the balance would be {balance_total + granted}, above the limit of "
            f"{settings.max_credit_balance}",
            balance=balance_total,
            credits=granted,
            limit=settings.max_credit_balance,
        )


async def start_purchase(
    engine: AsyncEngine,
    provider: PaymentProvider,
    settings: Settings,
    *,
    user_id: str,
    pack_id: str,
    purchase_id: uuid.UUID,
    email: str | None = None,
    payment_method: str | None = None,
    checkout: bool = False,
) -> dict[str, Any]:
    """Create the PaymentIntent (or Checkout Session) of a purchase.

    A repeated purchase id (the same Idempotency-Key) returns the first one.
    """
    async with engine.connect() as conn:
        existing = (await conn.execute(FIND_PURCHASE, {"id": purchase_id})).mappings().first()
        pack = await get_pack(conn, pack_id)
        balance = await queries.balance(conn, user_id)
        today = (await transactions_today(conn, [user_id])).get(user_id, 0)
    if existing is not None:
        return await _again(provider, dict(existing))
    check_limits(settings, pack, balance["total"], today)
    customer_id = await ensure_customer(engine, provider, user_id, email)
    metadata = {
        "userId": user_id,
        "packId": pack_id,
        "credits": str(pack["credits"]),
        "bonusCredits": str(pack["bonus_credits"]),
        "purchaseId": str(purchase_id),
    }
    terms = {
        "id": purchase_id,
        "pack_id": pack_id,
        "amount_minor": pack["price"],
        "currency": pack["currency"],
        "credits": pack["credits"],
        "bonus_credits": pack["bonus_credits"],
        "status": "pending",
    }
    view: dict[str, Any]
    if checkout:
        session = await provider.create_checkout_session(
            amount=pack["price"],
            currency=pack["currency"],
            product_name=pack["name"],
            customer_id=str(customer_id),
            metadata=metadata,
            idempotency_key=f"pika-purchase-{purchase_id}",
        )
        terms |= {"payment_intent_id": None, "checkout_session_id": session.id}
        view = _view(terms, mode="checkout", checkout_session_id=session.id, url=session.url)
    else:
        intent = await provider.create_payment_intent(
            amount=pack["price"],
            currency=pack["currency"],
            customer_id=str(customer_id),
            metadata=metadata,
            idempotency_key=f"pika-purchase-{purchase_id}",
            payment_method=payment_method,
        )
        terms |= {"payment_intent_id": intent.id, "checkout_session_id": None}
        view = _view(
            terms, payment_intent_id=intent.id, client_secret=intent.client_secret,
            status=intent.status,
        )
    async with engine.begin() as conn:
        await conn.execute(
            SAVE_PURCHASE,
            {
                "id": purchase_id,
                "user_id": user_id,
                "pack_id": pack_id,
                "credits": pack["credits"],
                "bonus": pack["bonus_credits"],
                "amount": pack["price"],
                "currency": pack["currency"],
                "pi": terms["payment_intent_id"],
                "session": terms["checkout_session_id"],
                "email": email,
            },
        )
    return view


async def _again(provider: PaymentProvider, purchase: dict[str, Any]) -> dict[str, Any]:
    if purchase["checkout_session_id"]:
        return _view(purchase, mode="checkout", checkout_session_id=purchase["checkout_session_id"])
    intent = await provider.retrieve_payment_intent(purchase["payment_intent_id"])
    return _view(
        purchase, payment_intent_id=intent.id, client_secret=intent.client_secret, status=intent.status
    )


def _view(terms: dict[str, Any], mode: str = "payment_intent", **extra: Any) -> dict[str, Any]:
    return {
        "purchase_id": terms["id"],
        "pack_id": terms["pack_id"],
        "mode": mode,
        "status": extra.pop("status", terms["status"]),
        "amount": terms["amount_minor"],
        "currency": terms["currency"].strip(),
        "credits": terms["credits"],
        "bonus_credits": terms["bonus_credits"],
        **extra,
    }
