"""Topic administration: the catalog's topics and their DLQ twins, created where missing, and checked against the
settings where they exist.

A topic's partitions, replication factor and `min.insync.replicas` are settings (KAFKA_TOPIC_PARTITIONS,
KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS); left at 0, they follow the cluster (`TopicSpec.for_cluster`).
An existing topic is never altered: a different partition count would move keys to other partitions
(docs/deployment.md, running on a Kafka cluster), so a topic that differs from the settings is reported, by
`eventshop topics check` and at start-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from shared.events import ALL_TOPICS
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)

SINGLE_BROKER_PARTITIONS = 3
"""One broker is a development machine: the pipeline bench measured its CPU per order at 3 partitions."""
CLUSTER_PARTITIONS = 12
"""A cluster serves a shop: up to 12 stock workers or projectors per group, each a whole share with 1, 2, 3, 4, 6
or 12 of them."""
SAFE_REPLICATION = 3
"""Replicas of a partition on a cluster: one broker may be lost and another restarted while writes go on."""
VISIBLE_WITHIN = 30.0
"""How long new topics may take to show in the broker's metadata before ensure_topics gives up."""
MIN_ISR = "min.insync.replicas"


@dataclass(frozen=True)
class TopicSpec:
    """What every catalog topic should have."""

    partitions: int
    replication_factor: int
    min_insync_replicas: int

    @classmethod
    def for_cluster(cls, settings: Settings, brokers: int) -> TopicSpec:
        """The settings, each one left at 0 chosen for a cluster where `brokers` answer: 3 replicas on any cluster, 1
        on a single broker; `min.insync.replicas` one less than the replicas (at least 1), so an acked event is on
        two brokers and one broker may be down; 12 partitions on a cluster, 3 on one broker.

        Never fewer replicas because fewer brokers answer: a broker restarting, or one another broker's metadata
        does not list yet, must not leave topics with fewer replicas for ever; creating them fails instead (a
        cluster of two brokers sets KAFKA_REPLICATION_FACTOR)."""
        replicas = settings.kafka_replication_factor or (1 if brokers <= 1 else SAFE_REPLICATION)
        return cls(
            partitions=settings.kafka_topic_partitions
            or (SINGLE_BROKER_PARTITIONS if brokers <= 1 else CLUSTER_PARTITIONS),
            replication_factor=replicas,
            min_insync_replicas=settings.kafka_min_insync_replicas or max(1, replicas - 1),
        )


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster describes it (partitions 0: it does not exist)."""

    name: str
    partitions: int
    replication_factor: int
    min_insync_replicas: int | None
    under_replicated: int = 0
    """Partitions with fewer in-sync replicas than replicas (a broker is down or catching up)."""
    leaderless: int = 0

    def differences(self, spec: TopicSpec) -> list[str]:
        """How this topic differs from `spec`, in words; empty when it matches."""
        if not self.partitions:
            return ["missing"]
        found = {
            "partitions": (self.partitions, spec.partitions),
            "replication factor": (self.replication_factor, spec.replication_factor),
            MIN_ISR: (self.min_insync_replicas, spec.min_insync_replicas),
        }
        return [f"{what} {has} (settings: {wanted})" for what, (has, wanted) in found.items() if has != wanted]


@dataclass(frozen=True)
class TopicReport:
    """Every catalog topic of an environment against the spec for the cluster it is on."""

    brokers: int
    spec: TopicSpec
    topics: list[TopicState]

    @property
    def differing(self) -> dict[str, list[str]]:
        return {t.name: diff for t in self.topics if (diff := t.differences(self.spec))}


@asynccontextmanager
async def admin_client(settings: Settings, timeout: float = 10.0) -> AsyncIterator[Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def catalog_topics(settings: Settings) -> list[str]:
    return [settings.topic(t) for t in ALL_TOPICS]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every catalog topic (and its DLQ twin) of this environment that is missing, as `TopicSpec` says."""
    from aiokafka.admin import NewTopic

    wanted = catalog_topics(settings)
    async with admin_client(settings) as admin:
        spec = TopicSpec.for_cluster(settings, len((await admin.describe_cluster())["brokers"]))
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=t,
                        num_partitions=spec.partitions,
                        replication_factor=spec.replication_factor,
                        topic_configs={MIN_ISR: str(spec.min_insync_replicas)},
                    )
                    for t in missing
                ]
            )
            errors = [e for e in response.topic_errors if e[1] not in (0, 36)]  # 36: already exists
            if errors:
                raise RuntimeError(f"topic creation failed: {errors}")
            await _until_described(admin, missing)
        return wanted


async def describe_topics(
    settings: Settings, attempts: int = 10, expected: Collection[str] = frozenset()
) -> TopicReport:
    """The catalog topics as the cluster has them, and the spec the settings give for it. Asked again (every
    0.5 s, `attempts` times at most) when a broker is not ready for the admin client yet (a broker just started or
    just gone), or does not know yet a topic just created (`expected`) or its configuration (the broker that
    answered had not caught up with the controller's metadata); the last answer stands after that."""
    for attempt in range(1, attempts + 1):
        try:
            report = await _describe_topics(settings)
        except KafkaError:
            if attempt == attempts:
                raise
        else:
            if attempt == attempts or not _pending(report, expected):
                return report
        await asyncio.sleep(0.5)
    raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises


def _pending(report: TopicReport, expected: Collection[str]) -> bool:
    """A topic known to exist that the answering broker does not show yet, or shows without its configuration."""
    return any((t.min_insync_replicas is None) if t.partitions else (t.name in expected) for t in report.topics)


async def _describe_topics(settings: Settings) -> TopicReport:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    wanted = catalog_topics(settings)
    async with admin_client(settings) as admin:
        brokers = len((await admin.describe_cluster())["brokers"])
        described = {d["topic"]: d for d in await admin.describe_topics(wanted) if d["error_code"] == 0}
        configs: dict[str, int] = {}
        if described:
            resources = [ConfigResource(ConfigResourceType.TOPIC, t, configs={MIN_ISR: None}) for t in described]
            for response in await admin.describe_configs(resources):
                for _, _, _, name, entries in response.resources:
                    configs.update((name, int(value)) for key, value, *_ in entries if key == MIN_ISR)
    return TopicReport(
        brokers, TopicSpec.for_cluster(settings, brokers), [_state(t, described, configs) for t in wanted]
    )


def _state(name: str, described: dict[str, Any], configs: dict[str, int]) -> TopicState:
    partitions = described.get(name, {}).get("partitions") or []
    if not partitions:
        return TopicState(name, 0, 0, None)
    return TopicState(
        name,
        len(partitions),
        max(len(p["replicas"]) for p in partitions),
        configs.get(name),
        under_replicated=sum(len(p["isr"]) < len(p["replicas"]) for p in partitions),
        leaderless=sum(p["leader"] < 0 for p in partitions),
    )


async def warn_about_topic_settings(settings: Settings) -> None:
    """At start-up: a warning per topic that differs from the settings (never an error: the topics in use keep
    working, and only an operator may change them, see docs/deployment.md)."""
    try:
        report = await describe_topics(settings)
    except Exception as exc:  # noqa: BLE001 - Kafka may be down at start; the components wait for it anyway
        log.info("kafka.topics_not_checked", error=repr(exc))
        return
    for topic, differences in report.differing.items():
        log.warning("kafka.topic_settings_differ", topic=topic, differences=differences, check="eventshop topics check")


async def _until_described(admin: Any, topics: list[str]) -> None:
    """Until the broker's metadata shows every topic with its partitions: a create returns before that, and a
    consumer or describe that comes at once would otherwise find a topic missing."""
    deadline = time.monotonic() + VISIBLE_WITHIN
    while True:
        described = await admin.describe_topics(topics)
        pending = [d["topic"] for d in described if d.get("error_code") or not d.get("partitions")]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not visible after {VISIBLE_WITHIN:.0f} s: {pending}")
        await asyncio.sleep(0.1)
