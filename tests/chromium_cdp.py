"""Headless Debian chromium driven over the DevTools protocol (the protocol chromedriver
speaks to it), with nothing but the websockets package the suite already has.

Pages that sign in with an HttpOnly session cookie cannot be opened with a token in the
URL: a test navigates, clicks and reads the page the way a person would, and the
browser keeps the cookie the service set.
"""

import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import websockets

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0")


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium and "
            "chromium-driver (or apt-get install -y chromium chromium-driver as root)"
        )


class Browser:
    """One chromium with one page; `async with Browser() as page: ...`."""

    def __init__(self, width: int = 1400, height: int = 1800) -> None:
        self.size = (width, height)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # Chromium's helper processes may still write to the profile as it is removed.
        self._profile = tempfile.TemporaryDirectory(prefix="pika-chromium-",
                                                    ignore_cleanup_errors=True)
        self._process: asyncio.subprocess.Process | None = None
        self._socket: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._session = ""

    async def __aenter__(self) -> "Browser":
        require_chromium()
        profile = Path(self._profile.name)
        self._process = await asyncio.create_subprocess_exec(
            str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}",
            f"--window-size={self.size[0]},{self.size[1]}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped whole, helpers included
        )
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and len(port_file.read_text().splitlines()) >= 2:
                break
            await asyncio.sleep(0.1)
        else:
            await self.__aexit__(None, None, None)
            pytest.fail("chromium did not open its DevTools port within 30 s")
        port, path = port_file.read_text().splitlines()[:2]
        self._socket = await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
        self._reader = asyncio.create_task(self._read())
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        self._session = attached["sessionId"]
        await self.page("Page.enable")
        await self.page("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            await self._process.wait()
        self._profile.cleanup()

    async def _read(self) -> None:
        async for raw in self._socket:
            message = json.loads(raw)
            waiting = self._waiting.pop(message.get("id", -1), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        request: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            request["sessionId"] = session
        answer = asyncio.get_running_loop().create_future()
        self._waiting[ident] = answer
        await self._socket.send(json.dumps(request))
        message = await asyncio.wait_for(answer, 60)
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        result: dict[str, Any] = message.get("result", {})
        return result

    async def page(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.call(method, self._session, **params)

    async def goto(self, url: str) -> None:
        await self.page("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.page("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll `expression` until it is truthy; its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            with contextlib.suppress(RuntimeError):  # the page may be between documents
                value = await self.evaluate(expression)
                if value:
                    return value
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"the page never satisfied {expression!r} within {timeout}s")
            await asyncio.sleep(0.2)

    async def dom(self) -> str:
        html: str = await self.evaluate("document.documentElement.outerHTML")
        return html

    async def cookies(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.page("Network.getCookies"))["cookies"]
        return found

    async def screenshot(self, path: Path) -> None:
        shot = await self.page("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
