"""`python -m devtools faults`: the fault-injection suite (`make faults`; `--short` in `make test`).

The ledger promises exactly-once effect over at-least-once delivery: a command is
applied once however often it arrives or however often the worker dies, and every
applied command's events reach Kafka (perhaps more than once; consumers dedupe by
event id). Unit tests cannot show that, because the interesting failures happen
between two systems: after the commit but before the Kafka ack, after the publish but
before the outbox row is marked sent, in the middle of a Postgres restart. So this
suite runs the real processes - two ledger workers and two relays, as deployed - under
a steady load of grants, charges, holds, captures, releases and refunds, and breaks
them on purpose:

  a. SIGKILL a ledger worker at random moments (10 times; 3 with --short);
  b. restart the Postgres server (`pg_ctlcluster ... restart`) mid-load;
  c. SIGKILL the active relay mid-load (the standby takes over);
  d. publish every command twice: some copies adjacent, some delayed behind later
     commands of the same user, some on another partition (so they may arrive first).

After each scenario the load stops, the suite waits for quiescence (every command sent
is in `processed_commands`, no outbox row unsent) and then checks, for the commands of
that scenario: the reconcile invariants (with every event sent), one stored outcome per
command, the number of ledger transactions each command wrote (0 if rejected, 1, or 2
for a partial capture), every outbox event published on `payment.events`, the per-user
balance chain of the published `balance.changed` events (a consumer that dedupes by
event id must end at the database's balance), nothing dead-lettered, no process that
died on its own. Any failed check is a discrepancy; the exit code is 1 if there is one.

Everything is private to the run, as in a benchmark: its own database
(`pika_faults_<random>` on the configured Postgres server, dropped at the end), its own
tansu broker on a free port, its own topic prefix and child processes. Scenario (b)
restarts the whole Postgres server, which other users of that server notice; the suite
always leaves the server running, even when interrupted.

What the local broker cannot show: tansu keeps its log in memory, so a broker restart
loses every topic and offset - a broker crash is not among the scenarios. Real Kafka
keeps both across restarts; there, a broker fault looks to the workers like (a).

Where things are: `suite` (main: set-up, clean-up, exit code), `scenarios` (the four,
and how one runs), `injections` (the faults), `load` (the command mix), `quiescence`,
`checks` and `baseline` (what is checked afterwards), `report` (the table), `fleet` and
`child` (workers and relays), `postgres` (the server restart), `database`,
`topic_reader`, `metrics`, `polling`, `plan`, `context`, `progress`.
"""

from devtools.faults.suite import main

__all__ = ["main"]
