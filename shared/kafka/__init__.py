"""Kafka for every process: the producer (`producer`), the consumer loop with retry and DLQ (`consumer`) and
topic administration (`topics`). Import from those modules; the names below are kept for importers not yet
moved to them."""

from shared.kafka.consumer import ConsumerLoop, PoisonMessage, ShuttingDown, decode_event
from shared.kafka.producer import make_producer, start_with_retry
from shared.kafka.topics import PARTITIONS, ensure_topics
from shared.outages import MYSQL_CONNECTION_ERRORS, is_infrastructure_outage, when_available

__all__ = [
    "MYSQL_CONNECTION_ERRORS",
    "PARTITIONS",
    "ConsumerLoop",
    "PoisonMessage",
    "ShuttingDown",
    "decode_event",
    "ensure_topics",
    "is_infrastructure_outage",
    "make_producer",
    "start_with_retry",
    "when_available",
]
