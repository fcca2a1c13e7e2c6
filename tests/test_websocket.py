"""Live balances over a real WebSocket client (the `websockets` package)."""

import asyncio
import json
import time
import uuid

import pytest
import websockets

from schemas.commands import ChargeCredits, ChargePayload, GrantCredits, GrantPayload
from tests.conftest import publish, start_ingress, token


def ws_url(ingress) -> str:
    return ingress.url.replace("http://", "ws://") + "/payment/ws"


async def connect(ingress, user: str):
    socket = await websockets.connect(ws_url(ingress))
    await socket.send(json.dumps({"type": "auth", "token": token(user)}))
    hello = json.loads(await asyncio.wait_for(socket.recv(), 5))
    return socket, hello


async def next_change(socket, timeout: float = 5) -> dict:
    """The next charge pushed to this socket (a grant's own event may still trail in)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        message = json.loads(await asyncio.wait_for(socket.recv(), max(left, 0.001)))
        if message["type"] == "balance.changed" and message["transactionType"] == "CREDIT_USAGE":
            return message


@pytest.fixture(scope="module")
def second_replica(settings, worker, relay):
    replica = start_ingress(settings, "ingress-replica-2")
    yield replica
    replica.process.stop()


async def funded(events, producer, settings, *grants: GrantCredits) -> None:
    """Grants applied AND announced: their events must not reach the sockets opened next."""
    await publish(producer, settings, *grants)
    ids = {str(g.id) for g in grants}
    announced = await events.wait_for(
        lambda e: e.get("commandId") in ids and e["type"] == "balance.changed", count=len(ids)
    )
    assert len(announced) >= len(ids)


async def test_client_gets_its_balance_then_each_change_within_a_second(
    ingress, settings, engine, producer, worker, relay, events, user_id
):
    funding = GrantCredits(user_id=user_id, payload=GrantPayload(credits=10, reason="ws"))
    await funded(events, producer, settings, funding)
    socket, hello = await connect(ingress, user_id)
    try:
        assert hello == {"type": "balance", "userId": user_id, "available": 10, "held": 0,
                         "total": 10}
        charge = ChargeCredits(user_id=user_id,
                               payload=ChargePayload(credits=3, reference="booking-ws"))
        sent = time.monotonic()
        await publish(producer, settings, charge)
        change = await next_change(socket)
        latency = time.monotonic() - sent
        assert (change["available"], change["held"], change["total"], change["delta"]) == (
            7, 0, 7, -3
        )
        assert change["transactionType"] == "CREDIT_USAGE"
        assert latency < 1.0, f"pushed after {latency:.2f}s"
    finally:
        await socket.close()


async def test_two_users_on_two_replicas_each_see_only_their_own_changes(
    ingress, second_replica, settings, engine, producer, worker, relay, events, user_id
):
    alice, bob = f"{user_id}-a", f"{user_id}-b"
    grants = [GrantCredits(user_id=u, payload=GrantPayload(credits=5, reason="ws"))
              for u in (alice, bob)]
    await funded(events, producer, settings, *grants)
    alice_here, _ = await connect(ingress, alice)
    alice_there, _ = await connect(second_replica, alice)  # a second tab, other replica
    bob_there, _ = await connect(second_replica, bob)
    try:
        await publish(producer, settings,
                      ChargeCredits(user_id=alice, payload=ChargePayload(credits=2, reference="a")))
        for tab in (alice_here, alice_there):
            change = await next_change(tab)
            assert change["available"] == 3
        with pytest.raises(TimeoutError):
            await next_change(bob_there, timeout=1.0)
        await publish(producer, settings,
                      ChargeCredits(user_id=bob, payload=ChargePayload(credits=1, reference="b")))
        assert (await next_change(bob_there))["available"] == 4
        with pytest.raises(TimeoutError):
            await next_change(alice_here, timeout=1.0)
    finally:
        for socket in (alice_here, alice_there, bob_there):
            await socket.close()


@pytest.mark.parametrize("first", [
    {"type": "auth", "token": "not-a-jwt"},
    {"type": "hello"},
])
async def test_a_socket_without_a_valid_token_is_closed_with_4401(ingress, first):
    socket = await websockets.connect(ws_url(ingress))
    await socket.send(json.dumps(first))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_the_socket_is_closed_with_4401_when_its_token_expires(ingress, user_id):
    socket = await websockets.connect(ws_url(ingress))
    await socket.send(json.dumps({"type": "auth", "token": token(user_id, ttl=2)}))
    opened = time.monotonic()
    hello = json.loads(await asyncio.wait_for(socket.recv(), 5))
    assert hello["type"] == "balance", "a live token opens the socket"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:  # nothing is pushed to this user; only the close can end this
            await asyncio.wait_for(socket.recv(), 8)
    lived = time.monotonic() - opened
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert "expired" in closed.value.rcvd.reason
    # exp is a whole second: the token had between one and two seconds left.
    assert 0.5 < lived < 4, f"closed after {lived:.1f}s"


async def test_token_in_the_url_is_not_needed_and_not_used(ingress, user_id):
    socket = await websockets.connect(ws_url(ingress) + f"?token={token(user_id)}")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), 8)
    # The URL token did not authenticate: the server waited for the auth message.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_hub_drops_repeats_keeps_users_apart_and_marks_a_slow_client(settings):
    from ingress.live import QUEUE_SIZE, BalanceHub, SlowClient

    hub = BalanceHub(settings)
    mine, theirs = hub.subscribe("u-1"), hub.subscribe("u-2")

    def event(user: str, event_id: str) -> bytes:
        return json.dumps({"id": event_id, "type": "balance.changed", "userId": user,
                           "payload": {"available": 1}}).encode()

    first = str(uuid.uuid4())
    hub.dispatch(event("u-1", first))
    hub.dispatch(event("u-1", first))  # the relay may deliver twice
    assert len(mine.pending) == 1 and len(theirs.pending) == 0
    assert json.loads(mine.pending[0]) == {"type": "balance.changed", "eventId": first,
                                           "occurredAt": None, "available": 1}
    for _ in range(QUEUE_SIZE):
        hub.dispatch(event("u-1", str(uuid.uuid4())))
    assert mine.overflowed and not theirs.overflowed
    with pytest.raises(SlowClient):
        asyncio.run(mine.next(1.0))
    assert asyncio.run(theirs.next(0.01)) is None, "nothing pending: time to ping"
    hub.unsubscribe(mine)
    hub.dispatch(event("u-1", str(uuid.uuid4())))
    assert "u-1" not in hub.subscribers


async def test_the_live_socket_declines_compression(ingress, user_id):
    """Browsers offer permessage-deflate; the ingress declines it (live frames are a few
    hundred bytes: compression would cost each socket memory and the fan-out CPU)."""
    socket = await websockets.connect(ws_url(ingress), compression="deflate")
    try:
        assert socket.response.headers.get("Sec-WebSocket-Extensions") is None
    finally:
        await socket.close()
