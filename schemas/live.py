"""Messages on the live-balance WebSocket `/payment/ws` (JSON text frames).

The socket's protocol is described in ingress.controllers.live; these models are its
wire contract, so the TypeScript types a frontend codes against (clients/typescript/)
are generated from the same source the server builds its frames with. A client frame
must name its `type` (the server refuses an auth frame without it), so it has no
default there; the server's frames carry every field.
"""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.base import StrictInt, WireModel
from schemas.events import BalanceChangedPayload


class LiveAuth(WireModel):
    """First client frame, within a few seconds of connecting (never a token in the URL)."""

    type: Literal["auth"]
    token: str = Field(description="The user's JWT, as in `Authorization: Bearer`.")


class LivePong(WireModel):
    """Any client frame keeps the socket open; `pong` is the one to answer a ping with."""

    type: Literal["pong"]


class LiveBalance(WireModel):
    """The server's first frame: the balance when the socket opened."""

    type: Literal["balance"] = "balance"
    user_id: str
    available: StrictInt
    held: StrictInt
    total: StrictInt


class LiveBalanceChanged(BalanceChangedPayload):
    """Every `balance.changed` event of the user: its payload plus the event's id and time."""

    type: Literal["balance.changed"] = "balance.changed"
    event_id: uuid.UUID = Field(description="The event's id: a repeat is dropped by id.")
    occurred_at: datetime


class LivePing(WireModel):
    """Sent when nothing else was sent for a while."""

    type: Literal["ping"] = "ping"


LiveClientMessage = Annotated[LiveAuth | LivePong, Field(discriminator="type")]
LiveServerMessage = Annotated[
    LiveBalance | LiveBalanceChanged | LivePing, Field(discriminator="type")
]
live_client_adapter: TypeAdapter[LiveClientMessage] = TypeAdapter(LiveClientMessage)
live_server_adapter: TypeAdapter[LiveServerMessage] = TypeAdapter(LiveServerMessage)
