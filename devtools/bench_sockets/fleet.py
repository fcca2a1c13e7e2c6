"""The bench's sockets: thousands of live-balance clients on one event loop.

Each socket is a real client of `GET /payment/ws` (the `websockets` package), opened
and authenticated as a browser tab would: a JWT in the first frame, then the server's
`balance` hello. Its receive loop does as little as it can, so that 2,000 of them do
not make the client the bottleneck: it stamps each frame with the clock, appends it
to one list and answers pings; frames are parsed only after the measured phase.
"""

import asyncio
import json
import time

import websockets
from websockets.asyncio.client import ClientConnection, connect

from devtools.tokens import make_token
from services.settings import Settings

OPEN_SECONDS = 15.0  # TCP + upgrade + auth + the hello (a balance read) for one socket
PONG = json.dumps({"type": "pong"})


class Fleet:
    """Sockets by index; `owners[i]` is socket i's user, `frames` what they all received.

    `compression`: "deflate" offers permessage-deflate as browsers do (the server may
    accept it), None offers nothing.
    """

    def __init__(self, url: str, settings: Settings, owners: list[str], compression: str | None) -> None:
        self.url = url
        self.settings = settings
        self.owners = owners
        self.compression = compression
        self.sockets: dict[int, ClientConnection] = {}
        self.frames: list[tuple[float, int, str]] = []  # (perf_counter at arrival, socket, frame)
        self.closed: dict[int, str] = {}  # socket -> close code and reason, if the server closed it
        self.failed: dict[int, str] = {}  # socket -> why it could not be opened
        self.tasks: list[asyncio.Task[None]] = []

    def token(self, user: str) -> str:
        s = self.settings
        return make_token(s.payment_jwt_secret, user, ["user"], 3600,
                          audience=s.payment_jwt_audience, issuer=s.payment_jwt_issuer)

    async def open_all(self, concurrency: int) -> None:
        """Open every socket, at most `concurrency` handshakes at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            async with gate:
                try:
                    self.sockets[index] = await asyncio.wait_for(self._open(index), OPEN_SECONDS)
                except Exception as error:  # counted and printed: the run fails on it
                    self.failed[index] = f"{type(error).__name__}: {error}"[:200]
                    return
            self.tasks.append(asyncio.create_task(self._receive(index, self.sockets[index])))

        await asyncio.gather(*(one(i) for i in range(len(self.owners))))

    async def _open(self, index: int) -> ClientConnection:
        socket = await connect(self.url, compression=self.compression, ping_interval=None,
                               proxy=None, max_queue=None, open_timeout=OPEN_SECONDS)
        await socket.send(json.dumps({"type": "auth", "token": self.token(self.owners[index])}))
        hello = json.loads(await socket.recv())
        if hello.get("type") != "balance":
            await socket.close()
            raise RuntimeError(f"expected the balance hello, got {hello.get('type')!r}")
        return socket

    async def _receive(self, index: int, socket: ClientConnection) -> None:
        frames, clock = self.frames, time.perf_counter
        try:
            async for frame in socket:
                frames.append((clock(), index, str(frame)))
                if '"ping"' in frame[:20]:
                    await socket.send(PONG)
        except websockets.ConnectionClosed:
            pass
        received = socket.protocol.close_rcvd
        self.closed[index] = f"{received.code} {received.reason}" if received else "dropped"

    async def close_all(self) -> None:
        """Close the sockets (a close we start is not counted as the server's)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.sockets.values()), return_exceptions=True)
