"""Relay throughput: committed outbox rows -> acked in Kafka, vs a raw aiokafka producer with the same acks.

The outbox of `<db>_bench` is filled with N order events (as the write side writes them: `inserting_outbox`);
`OutboxRelay.publish_batch()` (holding leadership, as the running relay does) is then called until it
returns 0, once with each OUTBOX_COMPLETION (`mark`, the default, and `delete`). The baselines send the
same (topic, key, value, headers) from memory with a bare AIOKafkaProducer (acks=all, idempotence, the
same linger and batch size): once in batches of `outbox_batch_size` awaiting the acks of each batch (the
relay's flow), once as one pipeline. Rounds alternate eventshop and baseline; the best round of each is
reported.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from bench.env import BenchEnv
from bench.samples import relay_payloads
from bench.stats import Figure, rate
from command.db import WriteDatabase
from command.outbox import inserting_outbox, outbox_values
from command.relay import OutboxRelay
from shared.kafka.producer import make_producer
from shared.settings import Settings

Message = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def raw_producer(settings: Settings) -> AIOKafkaProducer:
    """What the relay's producer is, spelled out: acks=all, idempotence, the same linger and batch size."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
    )


async def fill_outbox(db: WriteDatabase, rows: int) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox"))
    events = relay_payloads(rows)
    for start in range(0, rows, 2000):
        async with db.engine.begin() as conn:
            await conn.execute(inserting_outbox(), [outbox_values(e) for e in events[start : start + 2000]])


async def outbox_messages(db: WriteDatabase, settings: Settings) -> list[Message]:
    """The rows as the relay will send them (read once, outside the timing)."""
    async with db.engine.connect() as conn:
        result = await conn.execute(text("SELECT topic, `key`, payload, headers FROM outbox ORDER BY id"))
        rows = result.all()
    import json

    messages = []
    for r in rows:
        headers = json.loads(r.headers) if isinstance(r.headers, str | bytes) else r.headers
        payload = r.payload.encode() if isinstance(r.payload, str) else r.payload
        messages.append(
            (settings.topic(r.topic), r.key.encode(), payload, [(k, str(v).encode()) for k, v in headers.items()])
        )
    return messages


async def unpublished(db: WriteDatabase) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL"))).scalar_one())


async def relay_round(db: WriteDatabase, relay: OutboxRelay, rows: int) -> float:
    await fill_outbox(db, rows)  # every round starts with the same unpublished rows
    assert await relay.hold_leadership(), "another relay leads the bench database"
    try:
        started = time.perf_counter()
        sent = 0
        while published := await relay.publish_batch():
            sent += published
        elapsed = time.perf_counter() - started
    finally:
        await relay.release_leadership()
    assert await unpublished(db) == 0, "the relay left rows unpublished"
    assert sent == rows, f"the relay sent {sent} messages for {rows} rows"
    return rate(sent, elapsed)


async def raw_round(producer: AIOKafkaProducer, messages: list[Message], batch: int | None) -> float:
    started = time.perf_counter()
    step = batch or len(messages)
    for start in range(0, len(messages), step):
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in messages[start : start + step]
        ]
        await asyncio.gather(*futures)
    return rate(len(messages), time.perf_counter() - started)


async def in_rounds(
    db: WriteDatabase,
    relays: dict[str, OutboxRelay],
    producers: tuple[AIOKafkaProducer, AIOKafkaProducer],
    settings: Settings,
    rows: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Each relay (by completion) and the raw producer's two ways over the same rows, `rounds` times, after a warm-up
    of both producers (the relays' and the baseline's: metadata, connections, idempotence ids) outside the timing;
    events/s of every round."""
    relay_producer, baseline = producers
    rates: dict[str, list[float]] = {"mark": [], "delete": [], "batched": [], "pipelined": []}
    await fill_outbox(db, rows)
    messages = await outbox_messages(db, settings)
    await raw_round(baseline, messages[:500], None)
    await raw_round(relay_producer, messages[:500], None)
    for _ in range(rounds):
        for completion, relay in relays.items():
            rates[completion].append(await relay_round(db, relay, rows))
        rates["batched"].append(await raw_round(baseline, messages, settings.outbox_batch_size))
        rates["pipelined"].append(await raw_round(baseline, messages, None))
    return rates


async def run(env: BenchEnv, rows: int = 20_000, rounds: int = 3) -> list[Figure]:
    settings = env.namespace("relay")
    await env.create_topics(settings)
    db = WriteDatabase(settings.mysql_dsn)
    relay_producer = make_producer(settings)
    baseline = raw_producer(settings)
    await relay_producer.start()
    await baseline.start()
    relays = {
        completion: OutboxRelay(db, relay_producer, settings.model_copy(update={"outbox_completion": completion}))
        for completion in ("mark", "delete")
    }
    try:
        rates = await in_rounds(db, relays, (relay_producer, baseline), settings, rows, rounds)
    finally:
        await relay_producer.stop()
        await baseline.stop()
        await db.dispose()
    return figures(rates, {"rows": rows, "rounds": rounds, "batch_size": settings.outbox_batch_size})


def figures(rates: dict[str, list[float]], details: dict[str, int]) -> list[Figure]:
    batched = "raw aiokafka producer, same batches, acks awaited per batch"
    return [
        *(
            Figure(
                "relay",
                f"relay, OUTBOX_COMPLETION={label}: {details['rows']} rows, batches of {details['batch_size']}",
                "events/s",
                max(rates[completion]),
                max(rates["batched"]),
                batched,
                details={**details, "relay_rounds": rates[completion], "baseline_rounds": rates["batched"]},
            )
            for completion, label in (("mark", "mark (default)"), ("delete", "delete"))
        ),
        Figure(
            "relay",
            "relay (mark) vs one unbatched producer pipeline",
            "events/s",
            max(rates["mark"]),
            max(rates["pipelined"]),
            "raw aiokafka producer, all sends then all acks",
            details={**details, "baseline_rounds": rates["pipelined"]},
        ),
    ]
