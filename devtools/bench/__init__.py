"""`python -m devtools bench`: end-to-end throughput and latency of every command type, next to baselines.

What it answers: is the Kafka-driven path (publish -> ledger worker -> outbox -> relay ->
`balance.changed`) at least as fast as the obvious design, one database transaction
per charge, and how far is it from what Postgres can do with set-based SQL?

Everything runs on the same schema, in a throw-away database (`pika_bench_<random>`)
and on a tansu broker of its own with its own topic prefix, so a bench never touches
the developer's data and two benches cannot see each other's messages. Whatever
happens (error, Ctrl-C), the worker, relay and broker it started are stopped and the
database is dropped.

Phases, each on its own set of users funded before any clock starts, so every phase
sees the same shape of data (three batches per user with different expiries; charges
drain them earliest expiry first and cross batch boundaries):
1. baseline (a): one transaction per charge through asyncpg on 8 connections;
2. baseline (b): 100 charges per transaction, raw set-based SQL through asyncpg on one
   connection (the statements of the ledger's stores, services/ledger/*_store.py);
3. diagnostic (c): the worker's own code (`apply_commands`: SQLAlchemy + pydantic) in
   worker-sized batches without Kafka, which splits the end-to-end cost into "ledger
   code" and "Kafka + relay";
4. baseline (d), the bare ceiling: the least a correct charge needs (lock and update
   the batches earliest expiry first, one ledger row with its unique command id),
   100 per statement on 2 connections, on tables of its own with SQL fixed in
   `bare_ceiling`: it measures the machine, never our schema, so e2e / (d) stays
   comparable across changes of the design;
5. end to end at full load: N charges published as fast as possible; the rate is
   N / (last `balance.changed` - first publish), with one ledger worker process per
   core (`--workers`), one consumer group, the partitions split between them;
6. what the database invariants (the triggers of migration 0011) cost: the same full
   load with them disabled, then once more with them enabled, so the "with" figure is
   the mean of the phases either side of the "without" one (neither side gets the
   warm-up); the triggers are enabled again whatever happens, before the reconcile;
7. end to end at half the rate of 5, paced, for a few seconds: the latency target;
8. grants: N/2 goodwill grants to users without an account, end to end (each creates
   the account and a batch), evidence recorded before the clock as an admin's request
   records it, published to the internal topic;
9. the mix: N/2 commands in the fault suite's proportions (grants, charges, holds,
   captures and releases; not its refunds, which need an applied charge's id).
The ledger is then reconciled; a discrepancy or a missing event fails the run. The
reconcile checks the invariants' rules after the fact, the "without" phase's rows too.

Funding writes what GrantCredits would, with set-based SQL (`fund`: grants through
the ledger run at a few hundred a second here). Funding and baseline events stay in
the outbox, marked sent, so the relay starts without a backlog. Notes under the table
split the CPU per process and a charge's latency per stage, which is where profiling
starts; PIKA_BENCH_PROFILE=<dir> also runs the worker and relay under cProfile.

Modules, in the order a run uses them:
- `command`: the CLI entry (`main`), signals, exit codes;
- `sandbox`: the run's own database, broker and topics, and their teardown;
- `workload`: the charges of each phase, the grants that fund them, the grant phase's
  grants and the mix;
- `sql`, `ledger_rows`: the ledger's own statements, rows and events, written through asyncpg;
- `funding`: grants in set-based SQL before any clock starts;
- `baselines`, `worker_code`, `bare_ceiling`, `timing`: phases (a), (b), (c), (d) and
  how they are timed; `evidence`: the grants' evidence, recorded up front;
- `children`, `event_watch`, `end_to_end`: the worker and relay processes, reading
  `balance.changed` back, and one end-to-end phase;
- `invariants`: the invariant triggers switched off and on, and what they cost;
- `machine`: CPU per process group and background load;
- `phases`: all phases in order; `charges_table`: the table.
"""

from devtools.bench.command import main

__all__ = ["main"]
