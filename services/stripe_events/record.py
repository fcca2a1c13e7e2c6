"""Use case: accept a verified Stripe event as the one ledger command it stands for.

One unit of work reads who owns what the event names, keeps the event in the inbox
and records the evidence behind its command. The evidence is written in the same
transaction as the event on purpose: the ledger worker applies a payment-zone command
only because a verified Stripe event stands behind it, so neither is ever kept
without the other. What the event means is Stripe's language and stays in the
adapter, which hands its translation in as `command_of`.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.commands import CommandEnvelope
from services.db import UnitOfWork
from services.evidence.store import record_evidence
from services.evidence.zones import Evidence
from services.stripe_events.store import (
    StripeEventRecord,
    insert_stripe_event,
    member_of_subscription,
    purchaser_of_intent,
)

# Who vouches for the command in `command_evidence`: the webhook, as the command's source.
EVIDENCE_SUBJECT = "stripe-webhook"


@dataclass(frozen=True)
class Owners:
    """Who owns what a Stripe event names, read inside the use case's unit of work."""

    conn: AsyncConnection

    async def purchaser_of_intent(self, payment_intent_id: str) -> str | None:
        return await purchaser_of_intent(self.conn, payment_intent_id)

    async def member_of_subscription(self, subscription_id: str) -> tuple[str, str] | None:
        return await member_of_subscription(self.conn, subscription_id)


CommandOf = Callable[[Owners], Awaitable[CommandEnvelope | None]]


async def record_stripe_event(
    uow: UnitOfWork, event: StripeEventRecord, command_of: CommandOf
) -> CommandEnvelope | None:
    """The event's command, kept with its evidence; None (nothing kept) when it is not ours.

    Publishing is the caller's: it publishes every time, not only for a new event, so
    a crash between this commit and the publish is healed by Stripe's retry.
    """
    async with uow.begin() as conn:
        command = await command_of(Owners(conn))
        if command is None:
            return None
        await insert_stripe_event(conn, event)
        await record_evidence(
            conn, [(command, Evidence("stripe_event", event.event_id, EVIDENCE_SUBJECT))]
        )
    return command
