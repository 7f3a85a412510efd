"""The Kafka producer every process uses, and starting a Kafka client that waits for the broker."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """acks=all + idempotence: a retried send is never duplicated or reordered within a partition."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "request_timeout_ms": 15_000,
        "max_batch_size": 256 * 1024,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def start_with_retry(client: Any, stopping: asyncio.Event, delay: float = 1.0) -> bool:
    """Start a Kafka client, waiting for the broker if it is down; False if asked to stop first."""
    while not stopping.is_set():
        try:
            await client.start()
            return True
        except Exception as exc:
            log.warning("kafka.unavailable", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
    return False
