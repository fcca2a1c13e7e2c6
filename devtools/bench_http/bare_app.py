"""The baseline of `make bench-http`: a bare Litestar app, served as the ingress is.

One route, `GET /bare`, returning a fixed JSON body (the bench passes the body of a real
balance read, so both serialise the same bytes). No middleware, no auth, no database:
what Litestar and uvicorn cost per request on this machine, the floor the ingress's
reads are measured against. Served by `uvicorn.run` with the options `pika-payment
ingress` uses (ops/cli.py: one process, no access log, no proxy headers).

`python -m devtools.bench_http.bare_app PORT BODY_FILE`
"""

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, get


def create_app(body: Any) -> Litestar:
    @get("/bare")
    async def bare() -> Any:  # async, as the ingress's handlers are
        return body

    return Litestar(route_handlers=[bare], logging_config=None, debug=False)


def main() -> None:
    port, body_file = int(sys.argv[1]), Path(sys.argv[2])
    uvicorn.run(
        create_app(json.loads(body_file.read_text())),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
