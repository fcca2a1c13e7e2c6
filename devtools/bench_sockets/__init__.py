"""`python -m devtools bench-sockets`: live-balance fan-out on one ingress, measured end to end.

What it answers: when a user's balance changes, how long until each of that user's
open WebSockets hears of it, and what does pushing cost the ingress, with 2,000
sockets over 500 users (4 tabs each) connected to one ingress process?

It runs in a private world as `make bench` does (devtools.bench.sandbox: its own
database, tansu broker and topic prefix, all removed whatever happens) with the real
services as child processes: the ledger worker, the relay and one ingress, started as
`make run` starts them. Steps:
1. fund the users in set-based SQL (devtools.bench.funding), before any clock starts;
2. warm up the worker, then find its peak with a short full-load burst of charges on
   users without sockets (or take it from --peak);
3. open the sockets from this process (one uvloop event loop), each authenticated with
   a token in its first frame as the live route requires;
4. publish charges for the socket users at half the peak, paced, for --seconds; this
   process reads `payment.events` itself with a group-less consumer and stamps each
   `balance.changed`'s arrival; each socket stamps each frame's arrival;
5. check that every socket of a user got each of the user's events exactly once, and
   print Kafka -> socket p50/p95/p99, the ingress's CPU per event and RSS, and the
   bench's own CPU (to show the client side is not the bottleneck).

Modules: `command` (entry, exit codes, cleanup), `phases` (the steps), `fleet` (the
sockets), `ingress_child` (the ingress process), `report` (deliveries and figures).
"""

from devtools.bench_sockets.command import main

__all__ = ["main"]
