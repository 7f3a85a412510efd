"""Prometheus metrics of every process (one registry per process; /metrics of the gateway shows it), and
the few a gateway app owns itself (`gateway_registry`), which its /metrics adds.

`eventshop gateway --workers N` runs N processes behind one port, and a scrape reaches one of them. Their
metrics then live in files of one directory (prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR,
chosen when prometheus_client is first imported), which every worker's /metrics reads: counters and histograms
add up over the workers, each gauge as its `multiprocess_mode` says. With one process nothing of this applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# The process's directory of metric files when it is one of several gateway workers (prometheus_client's name).
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# How often a gateway worker writes its open subscriptions to its file (no worker can ask another at a scrape).
OPEN_SUBSCRIPTIONS_REFRESH_SECONDS = 1.0

# Each gauge says how gateway workers' values combine. The relay and the consumers set these, never a gateway,
# so the workers' zeros become one series (`max`), not one per worker.
OUTBOX_BACKLOG = Gauge(
    "eventshop_outbox_backlog", "Outbox rows committed but not yet published", multiprocess_mode="max"
)
OUTBOX_OLDEST_AGE = Gauge(
    "eventshop_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none)",
    multiprocess_mode="max",
)
ORDERS_UNDECIDED = Gauge(
    "eventshop_orders_undecided",
    "Orders accepted (CREATED) that the stock worker has not yet reserved or rejected",
    multiprocess_mode="max",
)
ORDERS_UNDECIDED_OLDEST_AGE = Gauge(
    "eventshop_orders_undecided_oldest_age_seconds",
    "Age of the oldest order still awaiting its stock decision (0 when none)",
    multiprocess_mode="max",
)
RESERVATIONS_OVERDUE = Gauge(
    "eventshop_reservations_overdue",
    "RESERVED orders past their payment deadline that no expirer has expired yet",
    multiprocess_mode="max",
)
RESERVATIONS_OVERDUE_OLDEST = Gauge(
    "eventshop_reservations_overdue_oldest_seconds",
    "How long the most overdue reservation is past its payment deadline (0 when none)",
    multiprocess_mode="max",
)
ORDERS_EXPIRED = Counter(
    "eventshop_orders_expired_total", "RESERVED orders expired unpaid at their deadline, their stock released"
)
RELAY_PUBLISHED = Counter("eventshop_relay_published_total", "Outbox rows published to Kafka and marked")
CONSUMER_LAG = Gauge(
    "eventshop_consumer_lag",
    "Messages behind the partition's high watermark",
    ["group", "topic", "partition"],
    multiprocess_mode="max",
)
PROJECTION_LAG = Histogram(
    "eventshop_projection_lag_seconds",
    "From the event's occurred_at to its view written",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DLQ_MESSAGES = Counter("eventshop_dlq_messages_total", "Messages sent to a dead-letter topic", ["topic", "consumer"])
GRAPHQL_DURATION = Histogram(
    "eventshop_graphql_request_duration_seconds",
    "GraphQL operation duration",
    ["operation_type", "operation_name"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def dead_letters_counted(topics: list[str], consumer: str) -> None:
    """A consumer's dead-letter counters, one per topic it reads, shown at 0 from its start: a healthy system
    says "0", not "no data" (a labelled series exists only once its labels are used)."""
    for topic in topics:
        DLQ_MESSAGES.labels(topic=topic, consumer=consumer)


# A gauge, not a counter: a counter's series of several workers add up into one, and this one is there to show
# how the kernel spreads connections over them (one series per live worker, labelled pid, with --workers N).
GATEWAY_WORKER_REQUESTS = Gauge(
    "eventshop_gateway_worker_requests",
    "GraphQL requests over HTTP this gateway process answered since it started",
    multiprocess_mode="liveall",
)


class OpenSubscriptions(Collector):
    """`eventshop_subscriptions_active` of one gateway app, counted when scraped. Not a process-wide Gauge: two
    apps in one process (tests, benchmarks) would share it, and it would count the last one made."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "eventshop_subscriptions_active", "Open GraphQL subscriptions on this gateway", value=self.count()
        )


def gateway_registry(open_subscriptions: Callable[[], int]) -> CollectorRegistry:
    """The metrics one gateway app owns; its /metrics shows them after the process's."""
    registry = CollectorRegistry()
    registry.register(OpenSubscriptions(open_subscriptions))
    return registry


def multiprocess_dir() -> str | None:
    """The directory of metric files this process shares with the other gateway workers; None when alone."""
    return os.environ.get(MULTIPROCESS_DIR) or None


@dataclass(frozen=True)
class GatewayMetrics:
    """What a gateway's /metrics shows: the process's registry and the app's own; or, as one of several
    workers, what every worker wrote to the shared directory (whichever worker the scrape reached)."""

    registries: tuple[CollectorRegistry, ...]

    @classmethod
    def of(cls, open_subscriptions: Callable[[], int]) -> GatewayMetrics:
        directory = multiprocess_dir()
        if directory is None:
            return cls((REGISTRY, gateway_registry(open_subscriptions)))
        workers = CollectorRegistry()
        MultiProcessCollector(workers, directory)
        return cls((workers,))

    def exposition(self) -> bytes:
        return b"".join(generate_latest(registry) for registry in self.registries)


async def share_open_subscriptions(count: Callable[[], int], stopping: asyncio.Event) -> None:
    """A gateway worker's `eventshop_subscriptions_active`, written to its metric file until `stopping`;
    /metrics shows the sum over the live workers. Made here, not at import: a lone gateway counts its
    subscriptions when scraped (OpenSubscriptions), and two metrics of one name would collide there."""
    gauge = Gauge(
        "eventshop_subscriptions_active",
        "Open GraphQL subscriptions on this gateway",
        registry=None,
        multiprocess_mode="livesum",
    )
    while not stopping.is_set():
        gauge.set(count())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), OPEN_SUBSCRIPTIONS_REFRESH_SECONDS)
