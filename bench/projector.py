"""Projector throughput (events/s into MongoDB) vs raw PyMongo bulk upserts of the same documents.

Two paths, each on a fresh `<mongo db>_bench`:
- direct: `ProjectionRunner.handle()` called for every event in order (one task, no Kafka on the way in;
  its `views.changed` announcements are still sent and acked). Baseline: the same view documents as
  `UpdateOne({_id, version: {$lt: v}}, {$set: ...}, upsert=True)` in `bulk_write(ordered=False)` batches.
- Kafka: the events are produced to this run's topics first; then `build_projection_runner` with a fresh
  consumer group consumes them all (partitions in parallel, offsets committed after the effects and the
  announcements), timed from partition assignment to the commit of the last batch. Baseline: a bare
  AIOKafkaConsumer (same topics, fresh group) doing json.loads + bulk upserts per fetched batch + commit.

The baseline sends what `bulk_write(ordered=False)` of UpdateOne upserts sends, the `update` command with many
statements, but as a command so that two FerretDB v1.24 (SQLite) limits can be handled: it stops answering an
update of 100 or more statements that match existing documents (so batches of BULK_BATCH), and it ends an
unordered batch at its first write error without the `n`/`nModified` counts (pymongo's bulk_write then fails
with KeyError), so after a stale statement (duplicate key) the rest of the batch is sent again.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord
from pymongo import monitoring
from pymongo.asynchronous.database import AsyncDatabase

from bench.env import BenchEnv
from bench.samples import projection_stream
from bench.stats import Figure, rate
from projection.documents import OrderView, ProductView, UserView, View
from projection.runner import build_projection_runner
from projection.store import Doc
from shared.events import DOMAIN_TOPICS, Event, Snapshot, parse_event
from shared.kafka.producer import make_producer
from shared.settings import Settings

BULK_BATCH = 50
TIMEOUT = 180.0

DOCUMENTS: dict[str, tuple[str, Callable[[Any], View]]] = {
    "user": (UserView.collection, UserView.of),
    "product": (ProductView.collection, ProductView.of),
    "stock": (ProductView.collection, ProductView.of),
    "order": (OrderView.collection, OrderView.of),
}


class CommandCounter(monitoring.CommandListener):
    """MongoDB commands sent to one database (round trips), for commands per event."""

    def __init__(self) -> None:
        self.database = ""
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == self.database:
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


COMMANDS = CommandCounter()
monitoring.register(COMMANDS)  # applies to every client created from here on


def upsert_for(event_type: str, snapshot: Snapshot) -> tuple[str, Doc]:
    """The `update` statement of UpdateOne({_id, version: {$lt: v}}, {$set: document}, upsert=True)."""
    collection, to_document = DOCUMENTS[event_type.split(".", 1)[0]]
    fields = to_document(snapshot).stored()
    doc_id = fields.pop("_id")
    return collection, {
        "q": {"_id": doc_id, "version": {"$lt": fields["version"]}},
        "u": {"$set": fields},
        "upsert": True,
    }


async def bulk_upsert(db: AsyncDatabase[Doc], ops: dict[str, list[Doc]]) -> None:
    for collection, statements in ops.items():
        pending = statements
        while pending:
            batch = pending[:BULK_BATCH]
            reply = await db.command({"update": collection, "updates": batch, "ordered": False})
            errors = reply.get("writeErrors") or []
            if any(e.get("code") != 11000 for e in errors):  # 11000: a stale event, skipped as the projector does
                raise RuntimeError(f"bulk upsert failed: {errors}")
            done = len(batch)
            if errors and reply.get("n", 0) + len(errors) < len(batch):  # stopped at the error (FerretDB)
                done = max(e["index"] for e in errors) + 1
            pending = pending[done:]


def record_for(settings: Settings, event: Event, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=settings.topic(event.event_type),
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=event.key,
        value=b"",
        checksum=None,
        serialized_key_size=len(event.key),
        serialized_value_size=0,
        headers=[],
    )


async def verify(db: AsyncDatabase[Doc], expected: dict[str, tuple[int, int]]) -> None:
    """Every view exists at its last version: the run was correct, not only fast."""
    for collection, (count, version) in expected.items():
        docs = await db[collection].find({}, {"version": 1}).to_list(None)
        versions = {d["version"] for d in docs}
        if len(docs) != count or versions != {version}:
            raise AssertionError(
                f"{collection}: {len(docs)} documents at versions {versions}, expected {count} at {version}"
            )


async def direct_eventshop(
    db: AsyncDatabase[Doc], producer: AIOKafkaProducer, settings: Settings, events: list[Event]
) -> float:
    runner = build_projection_runner(db, producer, settings, group_id="bench-unused")
    records = [record_for(settings, e, i) for i, e in enumerate(events)]
    started = time.perf_counter()
    for event, record in zip(events, records, strict=True):
        await runner.handle(event, record)
    await runner.flush()
    return rate(len(events), time.perf_counter() - started)


async def direct_baseline(db: AsyncDatabase[Doc], events: list[Event]) -> float:
    ops: dict[str, list[Doc]] = defaultdict(list)
    for event in events:
        collection, op = upsert_for(event.event_type.value, event.data)
        ops[collection].append(op)
    started = time.perf_counter()
    await bulk_upsert(db, ops)
    return rate(len(events), time.perf_counter() - started)


async def produce(producer: AIOKafkaProducer, settings: Settings, events: list[Event]) -> None:
    futures = [
        await producer.send(settings.topic(e.event_type), e.to_bytes(), key=e.key, headers=e.kafka_headers())
        for e in events
    ]
    await asyncio.gather(*futures)


async def kafka_eventshop(
    db: AsyncDatabase[Doc],
    producer: AIOKafkaProducer,
    settings: Settings,
    total: int,
    group: str,
    timeout: float = TIMEOUT,
) -> tuple[float, int]:
    runner = build_projection_runner(db, producer, settings, group_id=group, auto_offset_reset="earliest")
    loop = runner.loop
    stopping = asyncio.Event()
    finished: list[float] = []
    flush = loop.before_commit
    assert flush is not None

    async def before_commit() -> None:  # the runner's own step (announcements acked), then: done yet?
        await flush()
        if loop.processed + loop.dead_lettered >= total and not finished:
            finished.append(time.perf_counter())
            stopping.set()

    loop.before_commit = before_commit
    await loop.start()
    await loop.wait_ready(timeout=60)
    started = time.perf_counter()
    task = asyncio.create_task(runner.run(stopping))
    try:
        await asyncio.wait_for(stopping.wait(), timeout)
    finally:
        stopping.set()
        await task
    return rate(total, finished[0] - started), loop.dead_lettered


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.event.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            self.event.set()


async def kafka_baseline(db: AsyncDatabase[Doc], settings: Settings, total: int, group: str) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    assigned = _Assigned()
    consumer.subscribe(sorted(settings.topic(t) for t in DOMAIN_TOPICS), listener=assigned)
    await consumer.start()
    try:
        await asyncio.wait_for(assigned.event.wait(), 60)
        for tp in consumer.assignment():
            await consumer.position(tp)
        started = time.perf_counter()
        seen = 0
        async with asyncio.timeout(TIMEOUT):
            while seen < total:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                ops: dict[str, list[Doc]] = defaultdict(list)
                for records in batches.values():
                    for record in records:
                        event = parse_event(record.value)
                        collection, op = upsert_for(event.event_type.value, event.data)
                        ops[collection].append(op)
                        seen += 1
                await bulk_upsert(db, ops)
                await consumer.commit()
        return rate(total, time.perf_counter() - started)
    finally:
        await consumer.stop()


@dataclass
class Measured:
    """Each way's events/s per round, its MongoDB commands per event and what it dead-lettered; every round on a
    fresh read model, checked against what the events make."""

    env: BenchEnv
    events: list[Event]
    expected: dict[str, tuple[int, int]]
    results: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    commands: dict[str, float] = field(default_factory=dict)
    dead_lettered: int = 0

    async def measure(self, name: str, body: Callable[[AsyncDatabase[Doc]], Any]) -> None:
        client, db = await self.env.reset_read_model()
        try:
            before = COMMANDS.count
            outcome = await body(db)
            self.commands[name] = (COMMANDS.count - before) / len(self.events)
            if isinstance(outcome, tuple):
                outcome, lost = outcome
                self.dead_lettered += lost
            self.results[name].append(outcome)
            await verify(db, self.expected)
        finally:
            await client.close()


async def in_rounds(measured: Measured, producer: AIOKafkaProducer, settings: Settings, rounds: int) -> None:
    """Rounds alternate eventshop and baseline (each on a fresh read model, the Kafka ones with a new consumer group
    reading the same events); the best round of each is reported."""
    events, measure = measured.events, measured.measure
    for n in range(rounds):
        group = f"bench-projector-{measured.env.run_id}-{n}"
        await measure("direct", lambda db: direct_eventshop(db, producer, settings, events))
        await measure("direct_baseline", lambda db: direct_baseline(db, events))
        await measure(
            "kafka",
            functools.partial(kafka_eventshop, producer=producer, settings=settings, total=len(events), group=group),
        )
        await measure(
            "kafka_baseline",
            functools.partial(kafka_baseline, settings=settings, total=len(events), group=f"raw-{group}"),
        )


async def run(env: BenchEnv, scale: float = 1.0, rounds: int = 3) -> list[Figure]:
    users, products, orders = max(2, int(20 * scale)), max(4, int(60 * scale)), max(4, int(80 * scale))
    events = projection_stream(users, products, orders)
    expected = {
        UserView.collection: (users, 2),
        ProductView.collection: (products, 3),
        OrderView.collection: (orders, 2),
    }
    settings = env.namespace("projector")
    await env.create_topics(settings)
    COMMANDS.database = settings.mongo_database
    measured = Measured(env, events, expected)
    producer = make_producer(settings)
    await producer.start()
    try:
        await produce(producer, settings, events)
        await in_rounds(measured, producer, settings, rounds)
    finally:
        await producer.stop()
    return figures(measured, f"{len(events)} events: {users} users x2, {products} products x3, {orders} orders x2")


def figures(measured: Measured, mix: str) -> list[Figure]:
    results, commands, dead_lettered, events = (
        measured.results, measured.commands, measured.dead_lettered, len(measured.events)
    )  # fmt: skip
    note = f"MongoDB commands/event: eventshop {{es:.2f}}, baseline {{bl:.2f}} (bulk of {BULK_BATCH})"
    return [
        Figure(
            "projector",
            f"projector, ProjectionRunner.handle in order, direct ({mix})",
            "events/s",
            max(results["direct"]),
            max(results["direct_baseline"]),
            "PyMongo update command of the same version-gated upserts (what bulk_write sends), 50 per batch",
            note=note.format(es=commands["direct"], bl=commands["direct_baseline"]),
            details={"commands_per_event": commands, "events": events, "rounds": dict(results)},
        ),
        Figure(
            "projector",
            "projector via Kafka: build_projection_runner, fresh group, to last commit",
            "events/s",
            max(results["kafka"]),
            max(results["kafka_baseline"]),
            "bare AIOKafkaConsumer + json + bulk upserts per batch + commit",
            note=note.format(es=commands["kafka"], bl=commands["kafka_baseline"])
            + (f"; {dead_lettered} DEAD-LETTERED" if dead_lettered else ""),
            details={
                "commands_per_event": commands,
                "events": events,
                "dead_lettered": dead_lettered,
                "rounds": dict(results),
            },
        ),
    ]
