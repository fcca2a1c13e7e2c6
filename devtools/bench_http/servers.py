"""The processes the HTTP bench drives: the real ingress and the bare baseline app.

The ingress is `pika-payment ingress` as `make run` starts it (ops/cli.py: uvicorn, one
process), with the run's settings in its environment; the bare app
(devtools.bench_http.bare_app) is served by the same `uvicorn.run` options. Both are
children of the run (devtools.bench.sandbox.Run), so its cleanup stops them.
"""

import os
import sys
import urllib.request
from pathlib import Path

from devtools.bench.children import Child
from devtools.processes import ROOT, free_port, service_command, settings_env, spawn, toolkit_env, wait_until
from devtools.stack import RUN_DIR
from services.settings import Settings


def answers(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=1):
            return True
    except OSError:
        return False


def get_json(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body: bytes = response.read()
        return body


def _started(child: Child, url: str) -> Child:
    if wait_until(lambda: answers(url), 30, interval=0.2, process=child.process):
        return child
    raise RuntimeError(f"{child.name} did not answer {url} within 30s; see {child.log}")


def start_ingress(settings: Settings, tag: str) -> tuple[Child, str]:
    """`pika-payment ingress` on a free port; (child, base URL), once /health answers."""
    port, metrics_port = free_port(), free_port()
    configured = settings.model_copy(update={
        "payment_service_port": port, "payment_service_host": "127.0.0.1",
        "ingress_metrics_port": metrics_port, "ingress_metrics_host": "127.0.0.1",
    })
    log = RUN_DIR / f"bench-http-{tag}-ingress.log"
    process = spawn(service_command("ingress"), log=log, env=settings_env(configured), cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    return _started(Child("ingress", process, log, metrics_port), f"{base}/payment/health"), base


def start_bare(body_file: Path, tag: str) -> tuple[Child, str]:
    """The bare Litestar app returning `body_file`'s JSON on /bare; (child, its URL)."""
    port = free_port()
    log = RUN_DIR / f"bench-http-{tag}-bare.log"
    process = spawn([sys.executable, "-m", "devtools.bench_http.bare_app", str(port), str(body_file)],
                    log=log, env=toolkit_env(dict(os.environ)), cwd=ROOT)
    url = f"http://127.0.0.1:{port}/bare"
    return _started(Child("bare", process, log, 0), url), url
