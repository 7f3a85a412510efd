"""Topic administration: the catalog's topics and their DLQ twins, created where missing."""

from __future__ import annotations

from shared.events import ALL_TOPICS
from shared.settings import Settings

PARTITIONS = 3


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
        return wanted
    finally:
        await admin.close()
