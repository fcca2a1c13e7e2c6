"""SQL of `stripe_events`, and of the owner look-ups a Stripe event's command needs."""

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

RECORD = text(
    "INSERT INTO stripe_events (event_id, type, object_id, livemode) VALUES (:id, :type, :obj, :live) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
PURCHASER_OF_INTENT = text("SELECT user_id FROM purchases WHERE payment_intent_id = :pi")
MEMBER_OF_SUBSCRIPTION = text("SELECT user_id, id FROM memberships WHERE stripe_subscription_id = :s")


@dataclass(frozen=True)
class StripeEventRecord:
    """One row of the inbox: which event, about what, live or test mode."""

    event_id: str
    type: str
    object_id: str | None
    livemode: bool


async def insert_stripe_event(conn: AsyncConnection, event: StripeEventRecord) -> None:
    """Keep the event once; a redelivery finds its row and changes nothing."""
    await conn.execute(
        RECORD,
        {"id": event.event_id, "type": event.type, "obj": event.object_id, "live": event.livemode},
    )


async def purchaser_of_intent(conn: AsyncConnection, payment_intent_id: str) -> str | None:
    """The user whose purchase holds this PaymentIntent (charges carry no metadata of ours)."""
    user_id: str | None = await conn.scalar(PURCHASER_OF_INTENT, {"pi": payment_intent_id})
    return user_id


async def member_of_subscription(conn: AsyncConnection, subscription_id: str) -> tuple[str, str] | None:
    """(user id, membership id) of the membership this Stripe subscription pays for."""
    row = (await conn.execute(MEMBER_OF_SUBSCRIPTION, {"s": subscription_id})).first()
    return (str(row.user_id), str(row.id)) if row else None
