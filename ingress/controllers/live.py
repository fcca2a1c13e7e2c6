"""`GET /payment/ws`: a user's balance, live.

Protocol (JSON text frames):
- the client authenticates with its first message `{"type": "auth", "token": "<JWT>"}`
  within AUTH_SECONDS (never in the URL, which proxies log);
- the server answers `{"type": "balance", "available", "held", "total"}`, then sends
  every `balance.changed` of that user (balances after the change, delta, transaction);
- the server sends `{"type": "ping"}` every PING_SECONDS; a client that sends nothing
  for IDLE_SECONDS is closed (any message, e.g. `{"type": "pong"}`, keeps it open);
- close codes: 4401 authentication failed or the token expired (the socket lives no
  longer than the token that opened it: reconnect with a fresh one), 4408 idle, 4429
  too slow to keep up.
"""

import asyncio
import contextlib
import time
from typing import Any

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.serialization import encode_json

from ingress.auth import Principal, decode_token, verifier_of
from ingress.live import BalanceHub, SlowClient, Subscription
from schemas.live import LiveBalance, LivePing
from services.errors import PaymentError, Unauthorized
from services.ledger.use_cases import read_balance

AUTH_SECONDS = 5.0
PING_SECONDS = 20.0
IDLE_SECONDS = 90.0


async def _authenticate(socket: WebSocket[Any, Any, Any]) -> Principal | None:
    try:
        first = await asyncio.wait_for(socket.receive_json(), AUTH_SECONDS)
        if not isinstance(first, dict) or first.get("type") != "auth":
            raise Unauthorized("send {\"type\": \"auth\", \"token\": ...} first")
        return await decode_token(f"Bearer {first.get('token', '')}", verifier_of(socket))
    except WebSocketDisconnect:
        return None
    except (TimeoutError, PaymentError, ValueError) as error:
        reason = error.message if isinstance(error, PaymentError) else "authentication expected"
        await socket.close(code=4401, reason=reason[:120])
        return None


async def _pump(socket: WebSocket[Any, Any, Any], subscription: Subscription) -> None:
    """Sends the user's frames as the hub offers them, a ping when idle; 4429 when too slow."""
    ping = encode_json(LivePing().model_dump()).decode()
    while True:
        try:
            frame = await subscription.next(PING_SECONDS)
        except SlowClient:
            await socket.close(code=4429, reason="too slow to keep up")
            return
        await socket.send_data(ping if frame is None else frame)


async def _listen(socket: WebSocket[Any, Any, Any], expires_at: float) -> str:
    """Reads client messages until the client goes idle ("idle") or the token that
    opened the socket expires ("expired"); raises WebSocketDisconnect when it goes away.

    In the connection's own task, with a timeout rather than a task per wait: tasks
    and their coroutines are what the collector walks, thousands of sockets at a time.
    """
    while True:
        left = expires_at - time.time()
        if left <= 0:
            return "expired"
        try:
            async with asyncio.timeout(min(IDLE_SECONDS, left)):
                await socket.receive_data("text")
        except TimeoutError:
            return "idle" if left > IDLE_SECONDS else "expired"


@websocket("/payment/ws")
async def balance_socket(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    principal = await _authenticate(socket)
    if principal is None:
        return
    user_id = principal.subject
    resources = socket.app.state.resources
    hub: BalanceHub = resources.hub
    subscription = hub.subscribe(user_id)  # before reading the balance: no gap
    try:
        balance = await read_balance(resources.uow, user_id)
        hello = LiveBalance(user_id=user_id, available=balance["available"],
                            held=balance["held"], total=balance["total"])
        await socket.send_json(hello.model_dump(mode="json"))
        pump = asyncio.create_task(_pump(socket, subscription))  # ends the socket with 4429 when slow
        try:
            ended = await _listen(socket, principal.expires_at)
        finally:
            pump.cancel()
            await asyncio.wait({pump})
            if not pump.cancelled():
                pump.exception()  # it ended first (4429, or the client went away): retrieved
        with contextlib.suppress(Exception):
            if ended == "expired":
                await socket.close(code=4401, reason="the token has expired")
            else:
                await socket.close(code=4408, reason="idle")
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(subscription)
