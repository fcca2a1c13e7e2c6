"""Starting a purchase: limits, the user's Stripe customer, a PaymentIntent, a pending row.

No credits move here. They are granted by the ledger worker when Stripe's signed
`payment_intent.succeeded` arrives, never on the client's word.
"""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.errors import CreditLimitExceeded, TransactionLimitExceeded
from services.ledger import queries
from services.ledger.journal_store import transactions_today
from services.promos.checkout import PromoTerms, promo_terms, undo_promo
from services.promos.rules import Target
from services.purchases.credit_packs import get_pack
from services.purchases.customers import ensure_customer
from services.purchases.ports import PaymentProvider
from services.purchases.purchase_store import FIND_PURCHASE, SAVE_PURCHASE
from services.settings import Settings


def check_limits(
    settings: Settings, pack: dict[str, Any], balance_total: int, today: int = 0, extra: int = 0
) -> None:
    """The limits a purchase must meet before anyone is charged (`extra`: promo bonus)."""
    granted = pack["credits"] + pack["bonus_credits"] + extra
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
    promo_code: str | None = None,
    redemption_id: uuid.UUID | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Create the PaymentIntent (or Checkout Session) of a purchase, at the promo price.

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
    target = Target("pack", pack_id, pack["price"], pack["currency"])
    promo = await promo_terms(
        engine, settings, target, user_id, owner_id=purchase_id, promo_code=promo_code,
        redemption_id=redemption_id, source=source,
    )
    try:
        return await _create(engine, provider, settings, pack, promo, balance["total"], today,
                             user_id=user_id, purchase_id=purchase_id, email=email,
                             payment_method=payment_method, checkout=checkout)
    except Exception:
        await undo_promo(engine, promo)
        raise


async def _create(
    engine: AsyncEngine,
    provider: PaymentProvider,
    settings: Settings,
    pack: dict[str, Any],
    promo: PromoTerms | None,
    balance_total: int,
    today: int,
    *,
    user_id: str,
    purchase_id: uuid.UUID,
    email: str | None,
    payment_method: str | None,
    checkout: bool,
) -> dict[str, Any]:
    pack_id = pack["id"]
    amount = promo.preview.final if promo else pack["price"]
    promo_bonus = promo.preview.bonus_credits if promo else 0
    check_limits(settings, pack, balance_total, today, extra=promo_bonus)
    customer_id = await ensure_customer(engine, provider, user_id, email)
    metadata = {
        "userId": user_id,
        "packId": pack_id,
        "credits": str(pack["credits"]),
        "bonusCredits": str(pack["bonus_credits"]),
        "purchaseId": str(purchase_id),
        **({"promoCode": promo.code} if promo else {}),
    }
    terms = {
        "id": purchase_id,
        "pack_id": pack_id,
        "amount_minor": amount,
        "currency": pack["currency"],
        "credits": pack["credits"],
        "bonus_credits": pack["bonus_credits"],
        "status": "pending",
        "list_amount_minor": pack["price"],
        "discount_minor": promo.preview.discount if promo else 0,
        "promo_code": promo.code if promo else None,
        "promo_bonus_credits": promo_bonus,
    }
    view: dict[str, Any]
    if checkout:
        session = await provider.create_checkout_session(
            amount=amount,
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
            amount=amount,
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
                "amount": amount,
                "currency": pack["currency"],
                "pi": terms["payment_intent_id"],
                "session": terms["checkout_session_id"],
                "email": email,
                "list_amount": pack["price"],
                "discount": terms["discount_minor"],
                "promo_code": terms["promo_code"],
                "reservation": promo.reservation_id if promo else None,
                "promo_bonus": promo_bonus,
                "promo_bonus_days": promo.preview.bonus_expiry_days if promo else None,
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
        "list_price": terms.get("list_amount_minor") or terms["amount_minor"],
        "discount": terms.get("discount_minor") or 0,
        "promo_bonus_credits": terms.get("promo_bonus_credits") or 0,
        "promo_code": terms.get("promo_code"),
        **extra,
    }
