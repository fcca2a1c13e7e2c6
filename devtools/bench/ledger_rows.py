"""The rows and event bodies the ledger writes for an applied grant or charge.

Plain dicts and `json.dumps` instead of the pydantic models of schemas.events: the
funding and the baselines measure the database path, and the diagnostic phase (c)
measures the worker's own code. The bodies keep the models' field order.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from devtools.bench.sql import INSERT_OUTBOX, INSERT_POSTINGS
from devtools.bench.workload import Charge

EVENT_SOURCE = "pika-payment"


def batch_item(batch_id: uuid.UUID, n: int, source: str, expires_at: datetime) -> dict[str, Any]:
    return {"batchId": str(batch_id), "credits": n, "source": source, "expiresAt": expires_at.isoformat()}


def balance_body(after: tuple[int, int]) -> dict[str, int]:
    """(available, held) as the `balance` of results and events."""
    available, held = after
    return {"available": available, "held": held, "total": available + held}


def transaction_body(
    tx_id: uuid.UUID,
    tx_type: str,
    credits: int,
    reference: str,
    batches: list[dict[str, Any]],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The payload of `credits.granted` / `credits.charged`."""
    return {
        "transactionId": str(tx_id),
        "transactionType": tx_type,
        "credits": credits,
        "reference": reference,
        "holdId": None,
        "batches": batches,
        "metadata": metadata,
    }


@dataclass
class OutboxRows:
    """Outbox rows in insertion order, with events shaped as schemas.events builds them."""

    event_ids: list[uuid.UUID] = field(default_factory=list)
    command_ids: list[uuid.UUID] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)

    def add(self, command_id: uuid.UUID, user_id: str, kind: str, payload: dict[str, Any], now: str) -> None:
        event_id = uuid.uuid4()
        body = {
            "id": str(event_id),
            "schemaVersion": 1,
            "occurredAt": now,
            "userId": user_id,
            "correlationId": None,
            "source": EVENT_SOURCE,
            "commandId": str(command_id),
            "type": kind,
            "payload": payload,
        }
        self.event_ids.append(event_id)
        self.command_ids.append(command_id)
        self.keys.append(user_id)
        self.types.append(kind)
        self.payloads.append(json.dumps(body, separators=(",", ":")))

    def add_transaction(
        self,
        command_id: uuid.UUID,
        user_id: str,
        kind: str,
        transaction: dict[str, Any],
        balance: dict[str, int],
        delta: int,
        now: str,
    ) -> None:
        """The transaction's event (`kind`), then the `balance.changed` it causes."""
        changed = {
            **balance,
            "delta": delta,
            "heldDelta": 0,
            "transactionId": transaction["transactionId"],
            "transactionType": transaction["transactionType"],
        }
        self.add(command_id, user_id, kind, transaction, now)
        self.add(command_id, user_id, "balance.changed", changed, now)

    async def insert(self, conn: asyncpg.Connection, topic: str) -> None:
        if self.event_ids:
            await conn.execute(
                INSERT_OUTBOX, self.event_ids, self.command_ids, topic, self.keys, self.types, self.payloads
            )


def charge_outcome(
    charge: Charge,
    tx_id: uuid.UUID,
    taken: list[dict[str, Any]],
    after: tuple[int, int],
    outbox: OutboxRows,
    now: str,
) -> str:
    """The processed-command result (JSON) of an applied charge; its two events go to `outbox`."""
    balance = balance_body(after)
    charged = transaction_body(tx_id, "CREDIT_USAGE", charge.credits, charge.reference, taken, {})
    outbox.add_transaction(
        charge.id, charge.user_id, "credits.charged", charged, balance, -charge.credits, now
    )
    return json.dumps(
        {
            "transactionId": str(tx_id),
            "credits": charge.credits,
            "reference": charge.reference,
            "balance": balance,
            "batches": taken,
        }
    )


@dataclass
class Postings:
    """Legs of several transactions, written by one INSERT (the zero-sum trigger is per statement)."""

    tx: list[uuid.UUID] = field(default_factory=list)
    account: list[int] = field(default_factory=list)
    amount: list[int] = field(default_factory=list)
    available_after: list[int | None] = field(default_factory=list)
    held_after: list[int | None] = field(default_factory=list)

    def add(self, tx_id: uuid.UUID, user_account: int, system_account: int, delta: int,
            after: tuple[int, int]) -> None:
        """A user leg of `delta` with the balances after, and the opposite system leg."""
        self.tx += [tx_id, tx_id]
        self.account += [user_account, system_account]
        self.amount += [delta, -delta]
        self.available_after += [after[0], None]
        self.held_after += [after[1], None]

    async def insert(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            INSERT_POSTINGS, self.tx, self.account, self.amount, self.available_after, self.held_after
        )
