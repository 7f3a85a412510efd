"""Dead-letter queues: what is in them, one message in full, and sending messages back to their topic.

A message lands in `<topic>.dlq` with its original key, value and headers plus `dlq.*` headers that
say why (see `shared.kafka.consumer.ConsumerLoop.dead_letter`). A redrive republishes it to the original topic
exactly as it first travelled (the `dlq.*` headers stripped) and records that in `dlq_redrives`, so a
second redrive of the same message is skipped unless forced. The consumers are idempotent, so a message
redriven twice (forced, or by two operators at once) does no harm.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from command.db import WriteDatabase
from command.models import DlqRedrive, db_now
from eventshop.ops.topics import OffsetRange, Record, current_range, existing_topics, partitions, read_range
from shared.events import Topic, dlq_topic
from shared.settings import Settings

DLQ_SUFFIX = ".dlq"
DLQ_HEADER_PREFIX = "dlq."

redrives: Any = DlqRedrive.__table__  # type: ignore[attr-defined]
"""One row per redrive (command.models.DlqRedrive)."""


def as_dlq_topic(settings: Settings, topic: str) -> str:
    """Operators may name the DLQ or the topic it belongs to, with or without this environment's topic prefix:
    `user.created` means `<prefix>user.created.dlq`."""
    name = topic if topic.endswith(DLQ_SUFFIX) else dlq_topic(topic)
    return name if name.startswith(settings.kafka_topic_prefix) else settings.topic(name)


@dataclass(frozen=True)
class DeadLetter:
    """One message of a DLQ topic, with the reasons the consumer put in its headers."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_record(cls, record: Record) -> DeadLetter:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value,
            tuple(record.headers or ()),
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def original_topic(self) -> str | None:
        return self.header("dlq.original_topic")

    @property
    def error_type(self) -> str | None:
        return self.header("dlq.error_type")

    @property
    def error_message(self) -> str | None:
        return self.header("dlq.error_message")

    @property
    def attempts(self) -> str | None:
        return self.header("dlq.attempts")

    @property
    def consumer(self) -> str | None:
        return self.header("dlq.consumer")

    @property
    def position(self) -> tuple[int, int]:
        return (self.partition, self.offset)

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the message had before it was dead-lettered."""
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX)]


class RedriveLog:
    """The `dlq_redrives` table: which DLQ positions were sent back, when and where to."""

    def __init__(self, db: WriteDatabase) -> None:
        self.db = db

    async def redriven(self, dlq_topic: str) -> set[tuple[int, int]]:
        """(partition, offset) of every message of `dlq_topic` redriven at least once."""
        stmt = (
            sa.select(redrives.c.dlq_partition, redrives.c.dlq_offset)
            .where(redrives.c.dlq_topic == dlq_topic)
            .distinct()
        )
        async with self.db.engine.connect() as conn:
            return {(int(p), int(o)) for p, o in await conn.execute(stmt)}

    async def record(self, message: DeadLetter, landed: RecordMetadata) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                redrives.insert().values(
                    dlq_topic=message.topic,
                    dlq_partition=message.partition,
                    dlq_offset=message.offset,
                    target_topic=landed.topic,
                    target_partition=landed.partition,
                    target_offset=landed.offset,
                    redriven_at=db_now(),
                )
            )


class DeadLetters:
    """Read access to the DLQ topics, with a group-less consumer (positions are never committed)."""

    def __init__(self, settings: Settings, consumer: AIOKafkaConsumer) -> None:
        self.settings = settings
        self.consumer = consumer

    async def topics(self) -> list[str]:
        """The DLQ twins of the catalog topics in this environment (its topic prefix) that exist."""
        catalog = {self.settings.topic(dlq_topic(t)) for t in Topic}
        return sorted(catalog & await existing_topics(self.settings))

    async def counts(self, topics: Iterable[str] | None = None) -> dict[str, int]:
        """Messages retained per DLQ topic (end minus beginning offsets: nothing is read)."""
        names = list(topics) if topics is not None else await self.topics()
        offsets = await current_range(self.consumer, await partitions(self.settings, names))
        counts = dict.fromkeys(names, 0)
        for tp, end in offsets.end.items():
            counts[tp.topic] += end - offsets.start[tp]
        return counts

    async def messages(self, dlq_topic: str) -> list[DeadLetter]:
        """Every retained message of one DLQ topic, in (partition, offset) order."""
        offsets = await current_range(self.consumer, await partitions(self.settings, [dlq_topic]))
        found = [
            DeadLetter.from_record(record)
            async for batch in read_range(self.consumer, offsets)
            for records in batch.values()
            for record in records
        ]
        return sorted(found, key=lambda m: m.position)

    async def message(self, dlq_topic: str, partition: int, offset: int) -> DeadLetter | None:
        tp = TopicPartition(dlq_topic, partition)
        if tp not in await partitions(self.settings, [dlq_topic]):
            return None
        retained = await current_range(self.consumer, [tp])
        if not retained.start[tp] <= offset < retained.end[tp]:
            return None
        async for batch in read_range(self.consumer, OffsetRange({tp: offset}, {tp: offset + 1})):
            for record in batch.get(tp, []):
                if record.offset == offset:
                    return DeadLetter.from_record(record)
        return None


@dataclass
class RedriveResult:
    redriven: list[DeadLetter] = field(default_factory=list)
    skipped: list[DeadLetter] = field(default_factory=list)
    """Already redriven once; `force` sends them again."""
    unroutable: list[DeadLetter] = field(default_factory=list)
    """No `dlq.original_topic` header: nowhere to send them."""


async def redrive(
    messages: Iterable[DeadLetter], *, producer: AIOKafkaProducer, log: RedriveLog, force: bool = False
) -> RedriveResult:
    """Republish each message to its original topic with its original key and headers, then record it.

    The record is written after the broker acked the message (acks=all): a crash in between leaves the
    message unrecorded and a later redrive sends it again, which idempotent consumers absorb.
    """
    result = RedriveResult()
    done: dict[str, set[tuple[int, int]]] = {}
    for message in messages:
        target = message.original_topic
        if not target:
            result.unroutable.append(message)
            continue
        if message.topic not in done:
            done[message.topic] = await log.redriven(message.topic)
        if message.position in done[message.topic] and not force:
            result.skipped.append(message)
            continue
        landed = await producer.send_and_wait(
            target, message.value, key=message.key, headers=message.original_headers()
        )
        await log.record(message, landed)
        done[message.topic].add(message.position)
        result.redriven.append(message)
    return result
