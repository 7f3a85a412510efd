"""Reading topics between two offsets without a consumer group.

Operations inspect and replay topics; a consumer group would commit positions and take partitions away
from the real consumers, so these readers assign partitions themselves and never commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.settings import Settings

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


async def existing_topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def partitions(settings: Settings, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics that exist (a missing topic has none)."""
    wanted = sorted(set(topics))
    if not wanted:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    return sorted(
        TopicPartition(d["topic"], p["partition"]) for d in described if d["error_code"] == 0 for p in d["partitions"]
    )


@asynccontextmanager
async def reader(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without a group: it is assigned partitions explicitly and commits nothing."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    # aiokafka (0.14) starts a task for the group-less coordinator; stopping the consumer before that task
    # ever ran raises CancelledError from stop(). One loop turn lets it start.
    await asyncio.sleep(0)
    try:
        yield consumer
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class OffsetRange:
    """Per partition: the first offset to read and the offset to stop before."""

    start: dict[TopicPartition, int]
    end: dict[TopicPartition, int]

    @property
    def total(self) -> int:
        return sum(max(0, self.end[tp] - self.start.get(tp, 0)) for tp in self.end)


async def current_range(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> OffsetRange:
    """From the oldest retained message to the end as of now."""
    if not tps:
        return OffsetRange({}, {})
    return OffsetRange(await consumer.beginning_offsets(tps), await consumer.end_offsets(tps))


async def read_range(
    consumer: AIOKafkaConsumer, offsets: OffsetRange, *, max_records: int = 500, stall_timeout: float = 30.0
) -> AsyncIterator[dict[TopicPartition, list[Record]]]:
    """Yield batches (per partition, in offset order) until every partition reached its end offset.

    Messages appended after the range was taken are not yielded, so a replay has a defined end even
    while producers keep writing. Raises TimeoutError when the broker yields nothing for `stall_timeout`.
    """
    end = {tp: stop for tp, stop in offsets.end.items() if offsets.start.get(tp, 0) < stop}
    if not end:
        return
    consumer.assign(list(end))
    for tp in end:
        consumer.seek(tp, offsets.start.get(tp, 0))
    remaining = set(end)
    last_progress = time.monotonic()
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
        kept = {tp: [r for r in records if r.offset < end[tp]] for tp, records in batches.items()}
        kept = {tp: records for tp, records in kept.items() if records}
        if kept:
            yield kept
            last_progress = time.monotonic()  # the broker's silence counts, not the caller's work
        for tp in list(remaining):
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
        if remaining and time.monotonic() - last_progress > stall_timeout:
            raise TimeoutError(f"no progress reading {sorted(map(str, remaining))} for {stall_timeout}s")
