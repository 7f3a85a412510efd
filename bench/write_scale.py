"""The write model at size: what createOrder, payOrder, the stock worker's reservation, the relay and the purge
cost when MySQL holds 10k, 100k and 1M orders, against the same operation at the smallest size.

`<db>_bench` is grown in place, size after size, with server-side `INSERT ... SELECT` from MariaDB's sequence
engine (`seq_1_to_N`): each order RESERVED with two items, two history lines, its `order.reserved` outbox row,
published and kept for retention, as a shop that runs with `OUTBOX_COMPLETION=mark` keeps them, and the stock
worker's `processed_events` row of its `order.created`. At each size,
through the real code:
- createOrder: the handler, CONCURRENCY at once (the gateway's share is the `writes` benchmark's);
- payOrder: grown RESERVED orders, picked at random over the whole table;
- the reservation: the stock worker's handler on the `order.created` events of the orders just placed;
- the relay: `OutboxRelay` publishing RELAY_ROWS new rows to Kafka among the rows kept (best of RELAY_ROUNDS);
- the purge: the same rows, and as many processed events, their retention over, removed by the relay's purge in
  its bounded batches among everything kept; its longest batch (statement) is how long it held its locks.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from bench.env import BenchEnv
from bench.stats import Figure, latency_summary, rate
from bench.writes import concurrently
from command.db import WriteDatabase
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.pay_order import PayOrder, pay_order
from command.relay import OutboxRelay
from command.stock_worker import CONSUMER, StockWorker
from shared.events import OrderCreated, PaymentMethod
from shared.kafka.producer import make_producer
from shared.settings import Settings

SIZES = (10_000, 100_000, 1_000_000)
CUSTOMERS = 200
PRODUCTS = 50
SAMPLES = 200
RELAY_ROWS = 5_000
RELAY_ROUNDS = 3
"""Relay rounds of RELAY_ROWS at each size, the best reported (as in the relay benchmark): one round is a
tenth of a second, which another process's burst on the same two cores can halve."""
GROW_CHUNK = 100_000
PAYLOAD = (
    '{"event_type": "order.reserved", "aggregate_type": "order", "schema_version": 2, "data": {"status": '
    '"RESERVED", "items": [{"product_id": 1, "product_name": "Write scale product", "quantity": 1, '
    '"unit_price": "12.50", "subtotal": "12.50"}, {"product_id": 2, "product_name": "Write scale product", '
    '"quantity": 1, "unit_price": "13.50", "subtotal": "13.50"}], "total_amount": "26.00", "history": '
    '[{"status": "CREATED", "reason": null}, {"status": "RESERVED", "reason": null}]}}'
)
"""An outbox payload of a typical order event's size; the rows kept are read by nothing but the purge."""


class Shop:
    """The bench's write model: a few customers and products made by the handlers, orders grown in bulk."""

    def __init__(self, db: WriteDatabase) -> None:
        self.db = db
        self.customers: list[int] = []
        self.products: list[int] = []
        self.orders = 0

    async def open(self) -> None:
        tag = uuid.uuid4().hex[:6]
        for i in range(CUSTOMERS):
            customer = await create_user(self.db, CreateUser(f"Scale {i}", f"s{i}-{tag}@bench.example"))
            self.customers.append(int(customer.id))  # type: ignore[arg-type]
        for i in range(PRODUCTS):
            made = await create_product(self.db, CreateProduct(f"Write scale {i}", Decimal("12.50") + i, 100_000_000))
            self.products.append(int(made.id))  # type: ignore[arg-type]

    async def grow(self, size: int) -> float:
        """Orders (with items, history and a published outbox row) up to `size`; seconds taken."""
        started = time.perf_counter()
        while self.orders < size:
            count = min(GROW_CHUNK, size - self.orders)
            await self._grow_by(count)
            self.orders += count
        async with self.db.engine.begin() as conn:
            for table in ("orders", "order_items", "order_status_history", "outbox", "processed_events"):
                await conn.exec_driver_sql(f"ANALYZE TABLE {table}")
        return time.perf_counter() - started

    async def reserved_among(self, candidates: list[int]) -> list[int]:
        """SAMPLES of these orders that are still RESERVED (earlier sizes paid some), in the given order."""
        listed = ", ".join(str(int(i)) for i in candidates)
        async with self.db.engine.connect() as conn:
            reserved = {
                int(i)
                for (i,) in await conn.exec_driver_sql(
                    f"SELECT id FROM orders WHERE id IN ({listed}) AND status = 'RESERVED'"
                )
            }
        picked = [i for i in candidates if i in reserved][:SAMPLES]
        assert len(picked) == SAMPLES, "too few RESERVED orders to pay"
        return picked

    async def _grow_by(self, count: int) -> None:
        u0, p0 = self.customers[0], self.products[0]
        async with self.db.engine.begin() as conn:
            first = (await conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM orders")).scalar_one()
            await conn.exec_driver_sql(
                "INSERT INTO orders (user_id, status, total_amount, stock_held, version, created_at, updated_at) "
                f"SELECT {u0} + MOD(seq, {CUSTOMERS}), 'RESERVED', 26.00, 1, 2, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) "
                f"FROM seq_1_to_{count}"
            )
            grown = f"FROM orders o WHERE o.id > {int(first)}"
            for offset in (0, 1):
                await conn.exec_driver_sql(
                    "INSERT INTO order_items (order_id, product_id, product_name, quantity, unit_price, subtotal) "
                    f"SELECT o.id, {p0} + MOD(o.id + {offset}, {PRODUCTS}), 'Write scale product', 1, 13.00, 13.00 "
                    + grown
                )
            for status in ("CREATED", "RESERVED"):
                await conn.exec_driver_sql(
                    f"INSERT INTO order_status_history (order_id, status, at) SELECT o.id, '{status}', o.created_at "
                    + grown
                )
            await conn.exec_driver_sql(
                "INSERT INTO outbox (event_id, topic, `key`, aggregate_type, aggregate_id, aggregate_version, "
                "payload, headers, created_at, published_at) "
                f"SELECT UUID(), 'order.reserved', o.id, 'order', o.id, 2, '{PAYLOAD}', '{{}}', o.created_at, "
                "o.created_at " + grown
            )
            await conn.exec_driver_sql(
                "INSERT INTO processed_events (consumer, event_id, processed_at) "
                f"SELECT '{CONSUMER}', UUID(), o.created_at " + grown
            )


async def timed(count: int, call: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    per_second, took = await concurrently(count, call)
    return {"per_second": per_second, **latency_summary(took)}


async def measure(shop: Shop, settings: Settings, relay: OutboxRelay, worker: StockWorker) -> dict[str, Any]:
    """Every operation once at the current size."""
    rng = random.Random(shop.orders)
    placed: list[OrderCreated] = []

    async def place(i: int) -> None:
        lines = tuple(RequestedLine(p, 1) for p in rng.sample(shop.products, 2))
        snapshot = await create_order(shop.db, CreateOrder(shop.customers[i % CUSTOMERS], lines))
        placed.append(OrderCreated.of(snapshot))

    to_pay = await shop.reserved_among(rng.sample(range(1, shop.orders + 1), 2 * SAMPLES))

    async def pay(i: int) -> None:
        await pay_order(shop.db, PayOrder(to_pay[i], PaymentMethod.PIX))

    async def reserve(i: int) -> None:
        await worker.handle(placed[i], None)  # type: ignore[arg-type]

    figures = {"create_order": await timed(SAMPLES, place), "pay_order": await timed(SAMPLES, pay)}
    figures["reservation"] = await timed(len(placed), reserve)
    figures["relay"] = await publish_new_rows(shop, relay)
    figures["purge"] = await purge_published(shop, relay, settings)
    return figures


async def publish_new_rows(shop: Shop, relay: OutboxRelay) -> dict[str, Any]:
    """RELAY_ROUNDS times RELAY_ROWS unpublished rows among those kept, published by the relay; the best rows/s."""
    rounds = [await relay_round(shop, relay) for _ in range(RELAY_ROUNDS)]
    return {"per_second": max(rounds), "rounds": rounds, "rows": float(RELAY_ROWS)}


async def relay_round(shop: Shop, relay: OutboxRelay) -> float:
    """RELAY_ROWS new unpublished rows among those kept, published by the relay; rows/s."""
    async with shop.db.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE outbox SET published_at = UTC_TIMESTAMP(6) WHERE published_at IS NULL")
        await conn.exec_driver_sql(
            "INSERT INTO outbox (event_id, topic, `key`, aggregate_type, aggregate_id, aggregate_version, payload, "
            f"headers, created_at) SELECT UUID(), 'order.reserved', seq, 'order', seq, 2, '{PAYLOAD}', '{{}}', "
            f"UTC_TIMESTAMP(6) FROM seq_1_to_{RELAY_ROWS}"
        )
    assert await relay.hold_leadership(), "the bench's relay must lead"
    started, published = time.perf_counter(), 0
    while sent := await relay.publish_batch():
        published += sent
    seconds = time.perf_counter() - started
    await relay.release_leadership()
    assert published == RELAY_ROWS, f"the relay published {published} of {RELAY_ROWS} rows"
    return rate(published, seconds)


async def purge_published(shop: Shop, relay: OutboxRelay, settings: Settings) -> dict[str, float]:
    """The rows the relay just published and as many processed events (all of them at the smallest size), their
    retention over, purged among the rows still kept; rows/s over both tables, and the longest batch."""
    outbox_back = int(settings.outbox_retention_seconds) + 3600
    processed_back = int(settings.processed_events_retention_seconds) + 3600
    async with shop.db.engine.begin() as conn:
        handled = (await conn.exec_driver_sql("SELECT COUNT(*) FROM processed_events")).scalar_one()
        await conn.exec_driver_sql(
            f"UPDATE outbox SET published_at = published_at - INTERVAL {outbox_back} SECOND "
            f"ORDER BY id DESC LIMIT {RELAY_ROWS}"
        )
        await conn.exec_driver_sql(
            f"UPDATE processed_events SET processed_at = processed_at - INTERVAL {processed_back} SECOND "
            f"ORDER BY processed_at DESC LIMIT {min(RELAY_ROWS, int(handled))}"
        )
    started = time.perf_counter()
    purged = await relay.purge()
    seconds = time.perf_counter() - started
    due = {"outbox": RELAY_ROWS, "processed_events": min(RELAY_ROWS, int(handled))}
    assert {name: purged.rows[name] for name in due} == due, f"purged {purged.rows}, {due} were due"
    removed = sum(due.values())
    return {
        "per_second": rate(removed, seconds),
        "seconds": seconds,
        "longest_batch_ms": purged.longest_batch_seconds * 1000,
    }


async def run(env: BenchEnv, scale: float = 1.0) -> list[Figure]:
    await env.reset_write_model()
    settings = env.namespace("write-scale")
    await env.create_topics(settings)
    db = WriteDatabase(settings.mysql_dsn)
    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay(db, producer, settings)
    worker = StockWorker(db, producer, settings)
    shop = Shop(db)
    sizes = [max(1_000, int(size * scale)) for size in SIZES]
    results: dict[int, dict[str, Any]] = {}
    try:
        await shop.open()
        empty = await publish_new_rows(shop, relay)  # the relay's baseline: nothing kept in the outbox yet
        for size in sizes:
            grown = await shop.grow(size)
            results[size] = await measure(shop, settings, relay, worker)
            results[size]["grow_seconds"] = grown
    finally:
        await producer.stop()
        await db.dispose()
    return figures(results, empty, settings)


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1_000}k"


def figures(results: dict[int, dict[str, Any]], empty: dict[str, float], settings: Settings) -> list[Figure]:
    smallest, *_, largest = sorted(results)
    low, high = results[smallest], results[largest]
    return [
        *command_figures(low, high, f"{_size(largest)} orders vs {_size(smallest)}", _size(smallest)),
        Figure(
            "write-scale",
            f"relay with {_size(largest)} published outbox rows kept vs an empty outbox",
            "rows/s",
            high["relay"]["per_second"],
            empty["per_second"],
            "the same on an empty outbox",
            goal="at least 0.8x",
            goal_met=high["relay"]["per_second"] >= 0.8 * empty["per_second"],
        ),
        *purge_figures(results, settings),
    ]


def command_figures(low: dict[str, Any], high: dict[str, Any], at: str, smallest: str) -> list[Figure]:
    """Each write's p50 on the largest table against the smallest (createOrder and payOrder within 1.5x)."""
    return [
        Figure(
            "write-scale",
            f"{label} p50 with {at}",
            "ms",
            high[op]["p50"],
            low[op]["p50"],
            f"the same with {smallest} orders",
            higher_is_better=False,
            goal="at most 1.5x" if op != "reservation" else "",
            goal_met=(high[op]["p50"] <= 1.5 * low[op]["p50"]) if op != "reservation" else None,
            note=f"p99 {high[op]['p99']:.1f} ms vs {low[op]['p99']:.1f} ms",
        )
        for op, label in (("create_order", "createOrder"), ("pay_order", "payOrder"), ("reservation", "reservation"))
    ]


def purge_figures(results: dict[int, dict[str, Any]], settings: Settings) -> list[Figure]:
    """The purge's rate and its longest batch among the most rows kept against the fewest; every size's figures."""
    smallest, *_, largest = sorted(results)
    low, high = results[smallest], results[largest]
    growth = "; ".join(
        f"{_size(n)}: "
        + ", ".join(f"{op} p50 {r[op]['p50']:.1f} ms" for op in ("create_order", "pay_order", "reservation"))
        + f", relay {r['relay']['per_second']:.0f}/s, purge {r['purge']['per_second']:.0f}/s"
        + f" (longest batch {r['purge']['longest_batch_ms']:.0f} ms)"
        for n, r in sorted(results.items())
    )
    return [
        Figure(
            "write-scale",
            f"purge of {RELAY_ROWS} expired outbox rows and {RELAY_ROWS} processed events among {_size(largest)} "
            f"kept vs {_size(smallest)}",
            "rows/s",
            high["purge"]["per_second"],
            low["purge"]["per_second"],
            f"the same among {_size(smallest)}",
            note=growth,
            details={str(n): r for n, r in results.items()},
        ),
        Figure(
            "write-scale",
            f"longest purge batch ({settings.outbox_purge_batch} rows, one statement) among {_size(largest)} kept"
            f" vs {_size(smallest)}",
            "ms",
            high["purge"]["longest_batch_ms"],
            low["purge"]["longest_batch_ms"],
            f"the same among {_size(smallest)}",
            higher_is_better=False,
        ),
    ]
