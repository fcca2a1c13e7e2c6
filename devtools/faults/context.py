"""The state of one run that scenarios, faults and checks are handed (instead of globals)."""

import random
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from devtools.faults.database import ReconnectingDb
from devtools.faults.fleet import Fleet
from devtools.faults.plan import Plan
from devtools.faults.postgres import PgCluster
from devtools.faults.topic_reader import TopicReader
from services.settings import Settings


@dataclass
class Context:
    """What every scenario shares: settings, processes, clients, random source."""

    settings: Settings
    plan: Plan
    fleet: Fleet
    producer: AIOKafkaProducer
    events: TopicReader
    dlq: TopicReader
    db: ReconnectingDb
    rng: random.Random
    cluster: PgCluster | None
    cluster_note: str  # why there is no cluster, if there is none: (b) is then skipped
