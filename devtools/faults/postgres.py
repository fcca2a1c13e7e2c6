"""The local Postgres server that scenario (b) restarts, and the promise to leave it running."""

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass

import asyncpg

from devtools.faults.database import server_address, with_database
from devtools.faults.progress import say
from devtools.processes import port_open
from services.settings import Settings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class PgCluster:
    """The Debian-packaged Postgres cluster behind DATABASE_URL, if it is local."""

    version: str
    name: str
    port: int
    admin_url: str

    @classmethod
    def find(cls, settings: Settings) -> "tuple[PgCluster | None, str]":
        """The cluster, or None and why scenario (b) cannot run here."""
        host, port = server_address(settings.plain_database_url)
        if host not in LOCAL_HOSTS:
            return None, f"DATABASE_URL host {host} is not this machine"
        if not (shutil.which("pg_ctlcluster") and shutil.which("pg_lsclusters")):
            return None, "pg_ctlcluster is not available"
        listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
        for line in listing.stdout.splitlines():
            cols = line.split()
            if len(cols) >= 3 and cols[2] == str(port):
                admin_url = with_database(settings.plain_database_url, "postgres")
                return cls(cols[0], cols[1], port, admin_url), ""
        return None, f"no pg_ctlcluster cluster listens on port {port}"

    def ctl(self, action: str) -> list[str]:
        return ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action]

    async def restart(self) -> float:
        """Fast restart (open sessions are terminated); seconds until it accepts logins."""
        started = time.monotonic()
        # Its own session: a Ctrl-C must not stop pg_ctlcluster between stop and start.
        proc = await asyncio.create_subprocess_exec(
            *self.ctl("restart"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctlcluster restart failed: {out.decode(errors='replace')}")
        await self.wait_ready(60)
        return time.monotonic() - started

    async def wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                conn = await asyncpg.connect(self.admin_url, timeout=2)
                await conn.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def online(self) -> bool:
        listing = subprocess.run(["pg_lsclusters", "-h", self.version, self.name],
                                 capture_output=True, text=True, check=False)
        cols = listing.stdout.split()
        return len(cols) >= 4 and cols[3] == "online"

    def ensure_running(self) -> None:
        """Whatever happened, leave the shared server up (synchronous: runs in `finally`).

        A restart interrupted half-way may still be stopping or starting the server, so
        this waits for it to settle and starts it if it ends up down.
        """
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.online() and port_open("127.0.0.1", self.port):
                return
            if not self.online():
                say(f"[yellow]Postgres {self.version}/{self.name} is down: starting it[/yellow]")
                subprocess.run(self.ctl("start"), check=False, capture_output=True)
            time.sleep(0.5)
        say(f"[red]Postgres {self.version}/{self.name} is still not up: start it with "
            f"`{' '.join(self.ctl('start'))}`[/red]")
