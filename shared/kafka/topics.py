"""Topic administration: the catalog's topics and their DLQ twins, created where missing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shared.events import ALL_TOPICS
from shared.settings import Settings

PARTITIONS = 3
VISIBLE_WITHIN = 30.0
"""How long new topics may take to show in the broker's metadata before ensure_topics gives up."""


async def ensure_topics(settings: Settings, partitions: int = PARTITIONS) -> list[str]:
    """Create every catalog topic (and its DLQ twin) of this environment that is missing."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = [settings.topic(t) for t in ALL_TOPICS]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in missing]
            )
            errors = [e for e in response.topic_errors if e[1] not in (0, 36)]  # 36: already exists
            if errors:
                raise RuntimeError(f"topic creation failed: {errors}")
            await _until_described(admin, missing)
        return wanted
    finally:
        await admin.close()


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
