"""Prometheus metrics of every process (one registry per process; /metrics of the gateway shows it), and
the few a gateway app owns itself (`gateway_registry`), which its /metrics adds."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

OUTBOX_BACKLOG = Gauge("eventshop_outbox_backlog", "Outbox rows committed but not yet published")
OUTBOX_OLDEST_AGE = Gauge(
    "eventshop_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when none)"
)
RELAY_PUBLISHED = Counter("eventshop_relay_published_total", "Outbox rows published to Kafka and marked")
CONSUMER_LAG = Gauge(
    "eventshop_consumer_lag", "Messages behind the partition's high watermark", ["group", "topic", "partition"]
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
