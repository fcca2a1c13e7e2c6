"""`python -m devtools bench-http` (`make bench-http`): the ingress's HTTP cost against a bare
Litestar endpoint, in one run.

What it answers: how much does a real authenticated read cost next to what Litestar and
uvicorn cost on their own on this machine, and how fast are writes that wait for the
ledger's answer? It drives, with `wrk` and a Lua script that sets the bearer token
(one per user, spread over --users seeded users):
1. a bare Litestar app (devtools.bench_http.bare_app) returning the JSON body of a real
   balance read, served by uvicorn with the ingress's options: the floor;
2. `GET /payment/credits/balance` and 3. `GET /payment/credits/history?limit=20` on the
   real ingress (`pika-payment ingress`, as `make run` starts it, rate limits lifted);
4. `POST /payment/credits/grant` (admin token, a fresh Idempotency-Key per request) with
   the ledger worker and the relay running: each request waits for the ledger's answer.
It prints req/s, p50 and p99 of each, the ratios balance/bare and history/bare, the
ingress's CPU per request and its Postgres queries (and round trips) per request.

Like `make bench`, a run gets a throw-away database (`pika_benchhttp_<random>`,
migrated), a tansu broker and topic prefix of its own, runs in development mode, and
stops every process it started and drops the database whatever happens (error,
Ctrl-C, SIGTERM). Progress goes to stderr, the table to stdout.

Modules: `command` (entry, exit codes), `accounts` (funded users, tokens), `servers`
(the ingress and the bare app), `bare_app`, `wrk` (Lua scripts, running wrk, its
figures), `phases` (the run), `table` (the output).
"""

from devtools.bench_http.command import main

__all__ = ["main"]
