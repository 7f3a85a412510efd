"""What the write side wrote, for tests: every event still in the outbox plus every event already in Kafka.

With OUTBOX_COMPLETION=delete the relay deletes an outbox row once Kafka acked it, so the outbox alone
does not show what a command wrote (and with `mark`, retention purges it later). `EventLog` reads every
domain topic from the moment it starts and answers with both sources, with no gap between them: it reads
the unpublished rows first and Kafka's end offsets after; a row no longer unpublished was completed after
its ack, so it lies below those end offsets and is read before the answer is given. Duplicates of an
at-least-once redelivery count once (by event id).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from command.db import WriteDatabase
from shared.events import DOMAIN_TOPICS, Event, parse_event
from shared.settings import Settings
from tests.labs import kafka_admin


@dataclass(frozen=True)
class WrittenEvent:
    event_id: str
    topic: str  # the catalog name, without the environment's topic prefix
    aggregate_type: str
    aggregate_id: int
    envelope: dict[str, Any]  # the event as consumers decode it
    headers: dict[str, str]

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.envelope["data"])


@dataclass(frozen=True)
class Mark:
    """A point in the event history: what was already published and what was still waiting."""

    published: int
    waiting: frozenset[str] = field(default_factory=frozenset)


class EventLog:
    def __init__(self, settings: Settings, db: WriteDatabase) -> None:
        self.settings = settings
        self.db = db
        self.published: list[WrittenEvent] = []
        self._read_to: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with kafka_admin(self.settings) as admin:
            described = await admin.describe_topics([self.settings.topic(t) for t in DOMAIN_TOPICS])
        partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
        assert len({tp.topic for tp in partitions}) == len(DOMAIN_TOPICS), "a domain topic is missing"
        # A short fetch wait: the end-offset requests of `_caught_up` queue behind the pending fetch.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        await consumer.start()
        consumer.assign(partitions)
        self._read_to = dict(await consumer.end_offsets(partitions))
        for tp, offset in self._read_to.items():
            consumer.seek(tp, offset)
        self._consumer = consumer
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def mark(self) -> Mark:
        waiting = await self._caught_up()
        return Mark(len(self.published), frozenset(e.event_id for e in waiting))

    async def since(self, mark: Mark) -> list[WrittenEvent]:
        """Every event written after `mark`, published ones first (in partition order), then waiting ones."""
        waiting = await self._caught_up()
        seen = set(mark.waiting)
        events = []
        for event in [*self.published[mark.published :], *waiting]:
            if event.event_id not in seen:
                seen.add(event.event_id)
                events.append(event)
        return events

    async def all(self) -> list[WrittenEvent]:
        """Every event written since the log started (and every one still waiting in the outbox)."""
        return await self.since(Mark(0))

    async def of(self, mark: Mark, aggregate_type: str, aggregate_id: int | str) -> list[WrittenEvent]:
        """One aggregate's events since `mark`, in the order they were written (its versions: the events
        of one aggregate sit on several topics, and records of different topics arrive in any order)."""
        mine = [
            e
            for e in await self.since(mark)
            if e.aggregate_type == aggregate_type and e.aggregate_id == int(aggregate_id)
        ]
        return sorted(mine, key=lambda e: int(e.envelope["aggregate_version"]))

    async def _caught_up(self, timeout: float = 20.0) -> list[WrittenEvent]:
        """The rows waiting in the outbox now; returns once Kafka was read up to where it ended after that."""
        waiting = await self._waiting()
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._read_to))
        deadline = time.monotonic() + timeout
        while any(self._read_to[tp] < end for tp, end in ends.items()):
            assert self._reader is not None and not self._reader.done(), "the event log reader stopped"
            if time.monotonic() > deadline:
                raise AssertionError(f"the event log did not reach the end of the topics within {timeout}s")
            await asyncio.sleep(0.01)
        return waiting

    async def _waiting(self) -> list[WrittenEvent]:
        async with self.db.engine.connect() as conn:
            rows = await conn.exec_driver_sql(
                "SELECT event_id, topic, aggregate_type, aggregate_id, payload, headers FROM outbox "
                "WHERE published_at IS NULL ORDER BY id"
            )
            return [
                WrittenEvent(
                    r.event_id, r.topic, r.aggregate_type, int(r.aggregate_id), _json(r.payload), _json(r.headers)
                )
                for r in rows
            ]

    async def _read(self) -> None:
        assert self._consumer is not None
        prefix = len(self.settings.kafka_topic_prefix)
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                self.published.extend(e for e in (_published(record, prefix) for record in records) if e)
                self._read_to[tp] = records[-1].offset + 1


def _published(record: ConsumerRecord[bytes, bytes], prefix: int) -> WrittenEvent | None:
    """The event in a record, or None for what no handler wrote (the poison messages of consumer tests)."""
    try:
        envelope = json.loads(record.value or b"")
        return WrittenEvent(
            envelope["event_id"],
            record.topic[prefix:],
            envelope["aggregate_type"],
            int(envelope["aggregate_id"]),
            envelope,
            {k: v.decode() for k, v in record.headers or ()},
        )
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        return None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def event_from(**fields: Any) -> Event:
    """A typed event from its fields as plain values, read the way consumers read one (`parse_event`); it
    occurred when its snapshot changed, unless the fields say otherwise."""
    return parse_event({"schema_version": 2, "occurred_at": fields["data"]["updated_at"], **fields})
