"""One worker or relay process of the suite, which it kills and restarts on purpose."""

import contextlib
import signal
import time
from collections import Counter
from pathlib import Path

from devtools import processes
from devtools.faults.metrics import scrape_metrics
from services.settings import Settings

ACTIVE_RELAY = "relay is the active replica"
RELAY_LOST = "relay lost its connection"


class Child:
    """One `pika-payment worker|relay` slot; each (re)start is a new incarnation.

    Counters scraped from /metrics are kept per incarnation and summed, so a worker
    killed with SIGKILL still contributes what it had reported at the last scrape.
    """

    def __init__(self, name: str, command: str, settings: Settings, log_dir: Path) -> None:
        self.name = name
        self.command = command
        self.settings = settings
        self.log_dir = log_dir
        self.process: processes.Process | None = None
        self.incarnation = 0
        self.metrics_port = 0
        self.log_path = log_dir / f"{name}-0.log"
        self.log_paths: list[Path] = []  # every incarnation's log
        self.base: Counter[str] = Counter()
        self.last: dict[str, float] = {}
        self.killing = False  # set while we kill it: its death is then no surprise

    def start(self) -> None:
        # A new session keeps Ctrl-C away from the children: the suite stops them
        # itself, in order, and never leaves one behind. Each incarnation gets its own
        # log (kept when a run fails) and its own metrics port.
        self.incarnation += 1
        self.metrics_port = processes.free_port()
        self.log_path = self.log_dir / f"{self.name}-{self.incarnation}.log"
        self.log_paths.append(self.log_path)
        env = processes.settings_env(self.settings.model_copy(update={"metrics_port": self.metrics_port}))
        self.process = processes.spawn(processes.service_command(self.command), log=self.log_path,
                                       env=env, cwd=processes.ROOT, new_session=True)
        self.last = {}

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def alive(self) -> bool:
        return processes.alive(self.process)

    async def scrape(self) -> None:
        if not self.alive():
            return
        with contextlib.suppress(Exception):
            self.last = await scrape_metrics(self.metrics_port)

    def counter(self, name: str) -> float:
        return self.base[name] + self.last.get(name, 0.0)

    def _retire_incarnation(self) -> None:
        self.base.update(self.last)
        self.last = {}

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like an OOM kill or a node loss."""
        self.killing = True
        try:
            await self.scrape()
            if self.process and self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(5)  # SIGKILL cannot be caught: this takes milliseconds
            self._retire_incarnation()
        finally:
            self.killing = False

    async def kill_and_restart(self) -> tuple[int, float]:
        """SIGKILL this incarnation and start the next at once: the killed pid, when it died."""
        pid = self.pid
        await self.kill()
        died_at = time.monotonic()
        self.start()
        return pid, died_at

    def check_exit(self) -> str | None:
        """If the process died without being killed by us: note it and start it again."""
        if self.killing or self.process is None or self.process.poll() is None:
            return None
        what = f"{self.name} (pid {self.pid}) exited by itself with code {self.process.returncode}"
        self._retire_incarnation()
        self.start()
        return what

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def is_active_relay(self) -> bool:
        """The relay logs when it takes the advisory lock and when it loses its session."""
        text = self.log_text()
        return self.alive() and text.rfind(ACTIVE_RELAY) > text.rfind(RELAY_LOST)

    def stop(self) -> None:
        processes.terminate(self.process)

    def wait_stopped(self, seconds: float) -> None:
        processes.wait_or_kill(self.process, seconds)
