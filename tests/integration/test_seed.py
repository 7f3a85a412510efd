"""Seeding a shop: `eventshop seed` writes a realistic data set through the real command handlers.

The stories: an empty shop is seeded with customers, a catalogue and orders, and the relay and the stock
worker do the rest (reservations), then the seed pays, ships and cancels; every row has its events. A
second run finds everything there and writes nothing. A run stopped halfway, or asked for fewer orders
first, is continued by the next one. A shop with a real customer is refused until the operator says --force.

The seed runs on a lab of its own (database, topic prefix, relay, stock worker, projector), emptied before each
story: it refuses the shared test database, where other tests' customers are data it did not make.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from typer.testing import Result

from command.handlers.create_user import CreateUser, create_user
from eventshop.ops.seed import SeedPlan, SeedRefused, SeedReport, only_seed, seed, wait_settled
from eventshop.ops.seed_data import ShopShape, customer
from shared.settings import Settings
from tests.conftest import WriteModelProbe
from tests.events import EventLog, WrittenEvent
from tests.labs import Lab, invoke, kill_sessions, lab_of, running_system

SMALL = SeedPlan(users=20, products=10, orders=50)
TABLES = (  # children first: the foreign keys
    "order_status_history",
    "order_items",
    "orders",
    "products",
    "users",
    "outbox",
    "processed_events",
    "idempotency_keys",
)
EVENT_OF_STATUS = {
    "CREATED": "order.created",
    "RESERVED": "order.reserved",
    "REJECTED": "order.rejected",
    "PAID": "order.paid",
    "PROCESSING": "order.updated",
    "SHIPPED": "order.updated",
    "DELIVERED": "order.updated",
    "CANCELED": "order.canceled",
}


@dataclass
class SeedLab(Lab):
    events: EventLog
    probe: WriteModelProbe

    async def count(self, table: str) -> int:
        return int(await self.probe.scalar(f"SELECT COUNT(*) FROM {table}"))

    async def counts(self) -> dict[str, int]:
        return {table: await self.count(table) for table in ("users", "products", "orders")}

    async def settled(self) -> None:
        """Until the relay and the stock worker have done everything the commands so far asked for."""
        left = await wait_settled(self.write_db, timeout=60)
        assert not left.total, f"still in flight after 60 s: {left}"


@pytest.fixture(scope="module")
async def seed_lab(settings: Settings) -> AsyncIterator[SeedLab]:
    async with lab_of(settings, "seed") as lab, running_system(lab.settings, lab.write_db, lab.mongo):
        events = EventLog(lab.settings, lab.write_db)
        await events.start()
        try:
            yield SeedLab(lab.settings, lab.write_db, lab.mongo, events, WriteModelProbe(lab.write_db, events))
        finally:
            await events.stop()


@pytest.fixture
async def shop(seed_lab: SeedLab) -> SeedLab:
    """An empty shop: what the previous story left has settled, then it is wiped."""
    await seed_lab.settled()
    async with seed_lab.write_db.engine.begin() as conn:
        for table in TABLES:
            await conn.exec_driver_sql(f"DELETE FROM {table}")
    return seed_lab


async def seed_cli(lab: SeedLab, *args: str) -> Result:
    """`eventshop seed <args>` in-process, on the lab's database and topics."""
    return await invoke(lab.settings, "seed", *args)


def nothing_new(report: SeedReport) -> bool:
    return all(phase.created == 0 and not phase.refused for phase in report.phases.values())


def events_by_aggregate(written: list[WrittenEvent], kind: str) -> dict[int, list[str]]:
    """Topics of each aggregate's events, in the order its versions were written."""
    mine: dict[int, list[WrittenEvent]] = {}
    for event in written:
        if event.aggregate_type == kind:
            mine.setdefault(event.aggregate_id, []).append(event)
    return {
        aggregate_id: [e.topic for e in sorted(events, key=lambda e: int(e.envelope["aggregate_version"]))]
        for aggregate_id, events in mine.items()
    }


async def assert_orders_tell_their_history(lab: SeedLab, written: list[WrittenEvent], planned: int) -> None:
    """Every planned order placed once, with 1 to 5 distinct lines; the events of each order are exactly its
    status history; each product's stock is what it was created with minus what orders still hold."""
    keys = await lab.rows("SELECT `key` FROM idempotency_keys WHERE operation = 'createOrder'")
    assert sorted(int(key.rsplit(":", 1)[1]) for (key,) in keys) == list(range(planned))
    lines = Counter(order_id for (order_id,) in await lab.rows("SELECT order_id FROM order_items"))
    assert not await lab.rows("SELECT order_id FROM order_items GROUP BY order_id, product_id HAVING COUNT(*) > 1")
    assert set(lines) == {int(i) for (i,) in await lab.rows("SELECT id FROM orders")} and len(lines) == planned
    assert all(1 <= n <= 5 for n in lines.values())
    history: dict[int, list[str]] = {}
    for order_id, status in await lab.rows("SELECT order_id, status FROM order_status_history ORDER BY id"):
        history.setdefault(int(order_id), []).append(status)
    order_events = events_by_aggregate(written, "order")
    assert set(order_events) == set(history) == set(lines)
    for order_id, statuses in history.items():
        assert order_events[order_id] == [EVENT_OF_STATUS[s] for s in statuses], (order_id, statuses)
    created_with = {e.aggregate_id: e.data["stock"] for e in written if e.topic == "product.created"}
    held: Counter[int] = Counter()
    for product_id, quantity in await lab.rows(
        "SELECT i.product_id, i.quantity FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.stock_held"
    ):
        held[int(product_id)] += int(quantity)
    stock = {int(p): int(n) for p, n in await lab.rows("SELECT id, stock FROM products")}
    assert stock == {p: created_with[p] - held[p] for p in stock}


async def test_a_shop_is_seeded_through_the_write_path_and_a_second_run_adds_nothing(shop: SeedLab) -> None:
    before = await shop.events.mark()

    report = await seed(shop.write_db, SMALL, concurrency=4)
    await shop.settled()

    assert await shop.counts() == {"users": 20, "products": 10, "orders": 50}
    assert {label: phase.created for label, phase in report.phases.items() if label != "follow-ups"} == {
        "users": 20,
        "products": 10,
        "orders": 50,
    }
    written = await shop.events.since(before)

    # Customers: unique, deterministic from the seed, at the seed's own domain.
    users = {int(i): (name, email) for i, name, email in await shop.rows("SELECT id, name, email FROM users")}
    expected = {(c.name, c.email) for c in (customer(1, i) for i in range(20))}
    assert set(users.values()) == expected and len({email for _, email in users.values()}) == 20
    assert all(email.endswith("@s1.seed.eventshop.test") for _, email in users.values())
    assert set(events_by_aggregate(written, "user")) == set(users)
    assert all(topics == ["user.created"] for topics in (events_by_aggregate(written, "user")).values())

    # The catalogue: realistic prices, stock enough that every order reserved.
    products = {int(i): (price, stock) for i, price, stock in await shop.rows("SELECT id, price, stock FROM products")}
    assert all(Decimal("0.99") <= price <= Decimal("1300") for price, _ in products.values())
    product_events = events_by_aggregate(written, "product")
    assert set(product_events) == set(products)
    assert all(topics[0] == "product.created" for topics in product_events.values())

    # Orders: 1 to 5 distinct lines, each order's events tell exactly its status history; stock adds up.
    await assert_orders_tell_their_history(shop, written, planned=50)

    # A share paid and moved on, some canceled, some left reserved; none rejected.
    final = Counter(status for (status,) in await shop.rows("SELECT status FROM orders"))
    assert final == report.statuses and sum(final.values()) == 50
    assert final["CANCELED"] and final["RESERVED"] and final["DELIVERED"] and "REJECTED" not in final
    assert final["PAID"] + final["PROCESSING"] + final["SHIPPED"] + final["DELIVERED"] > 25

    # The same arguments again: everything is there, nothing is written.
    high_water, mark = await shop.probe.high_water(), await shop.events.mark()
    again = await seed(shop.write_db, SMALL, concurrency=4)
    await shop.settled()
    assert nothing_new(again)
    assert {label: phase.existing for label, phase in again.phases.items()} == {
        "users": 20,
        "products": 10,
        "orders": 50,
        "follow-ups": report.phases["follow-ups"].planned,
    }
    assert await shop.probe.high_water() == high_water
    assert await shop.events.since(mark) == []


class PullThePlug(Exception):
    pass


class StopAfterOrders:
    """Progress that stops the seed once `count` orders were placed, as Ctrl-C in the middle of a run would."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.placed = 0

    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, label: str, amount: int) -> None:
        if label == "orders":
            self.placed += amount
            if self.placed >= self.count:
                raise PullThePlug


async def test_a_seed_stopped_halfway_continues_where_it_stopped(shop: SeedLab) -> None:
    before = await shop.events.mark()
    with pytest.raises(PullThePlug):
        await seed(shop.write_db, SMALL, progress=StopAfterOrders(17), concurrency=4)
    placed_first = await shop.count("orders")
    assert 17 <= placed_first < 50  # the orders in flight when it stopped either committed or not at all
    assert await shop.count("users") == 20 and await shop.count("products") == 10

    report = await seed(shop.write_db, SMALL, concurrency=4)
    await shop.settled()

    assert report.phases["orders"].existing == placed_first
    assert report.phases["orders"].created == 50 - placed_first
    assert await shop.counts() == {"users": 20, "products": 10, "orders": 50}
    await assert_orders_tell_their_history(shop, await shop.events.since(before), planned=50)
    # Each order has the basket the plan gave it, whichever run placed it.
    index_of = {
        int(product_id): int(description.rsplit("#", 1)[1].rstrip("]"))
        for product_id, description in await shop.rows("SELECT id, description FROM products")
    }
    shape = ShopShape.of(1, 20, 10)
    keys = await shop.rows(
        "SELECT `key`, JSON_UNQUOTE(JSON_EXTRACT(response, '$.id')) FROM idempotency_keys "
        "WHERE operation = 'createOrder'"
    )
    for key, order_id in keys:
        items = await shop.rows("SELECT product_id, quantity FROM order_items WHERE order_id = %s", int(order_id))
        basket = sorted((index_of[int(p)], int(q)) for p, q in items)
        assert basket == sorted(shape.order(int(key.rsplit(":", 1)[1])).lines)
    assert not await shop.rows("SELECT id FROM orders WHERE status IN ('CREATED', 'REJECTED')")


class CutConnections:
    """Progress that, once a few products and then a few orders are written, kills every MySQL session on the
    lab's database, as a MariaDB restart would (the relay and the stock worker wait it out, as in production)."""

    def __init__(self, lab: SeedLab) -> None:
        self.lab = lab
        self.done: Counter[str] = Counter()
        self.cuts: list[asyncio.Task[int]] = []

    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, label: str, amount: int) -> None:
        self.done[label] += amount
        if (label, self.done[label]) in (("products", 4), ("orders", 12), ("follow-ups", 5)):
            self.cuts.append(asyncio.ensure_future(self.cut()))

    async def cut(self) -> int:
        return await kill_sessions(self.lab.write_db)


async def test_a_seed_outlives_lost_connections_without_writing_anything_twice(shop: SeedLab) -> None:
    before = await shop.events.mark()
    cutter = CutConnections(shop)

    report = await seed(shop.write_db, SMALL, progress=cutter, concurrency=4)
    await shop.settled()

    assert len(cutter.cuts) == 3 and all(await asyncio.gather(*cutter.cuts))  # sessions were killed each time
    assert await shop.counts() == {"users": 20, "products": 10, "orders": 50}
    assert not any(phase.refused for phase in report.phases.values())
    written = await shop.events.since(before)
    assert sorted(e.aggregate_id for e in written if e.topic == "product.created") == sorted(
        int(i) for (i,) in await shop.rows("SELECT id FROM products")
    )
    await assert_orders_tell_their_history(shop, written, planned=50)


async def test_a_seed_asked_for_more_orders_adds_only_the_new_ones(shop: SeedLab) -> None:
    first = await seed_cli(shop, "--users", "20", "--products", "10", "--orders", "20")
    assert first.exit_code == 0, first.output
    earlier = {int(i) for (i,) in await shop.rows("SELECT id FROM orders")}
    assert len(earlier) == 20

    more = await seed_cli(shop, "--users", "20", "--products", "10", "--orders", "50", "--wait")

    assert more.exit_code == 0, more.output
    assert await shop.counts() == {"users": 20, "products": 10, "orders": 50}
    assert earlier < {int(i) for (i,) in await shop.rows("SELECT id FROM orders")}
    assert "orders" in more.output and "follow-ups" in more.output


async def test_a_shop_with_data_the_seed_did_not_make_is_refused_unless_forced(shop: SeedLab) -> None:
    rita = await create_user(shop.write_db, CreateUser("Rita Realcustomer", "rita@example.com"))
    await shop.settled()
    high_water, mark = await shop.probe.high_water(), await shop.events.mark()

    refused = await seed_cli(shop, "--users", "5", "--products", "3", "--orders", "5")

    assert refused.exit_code == 1, refused.output
    assert "refusing to seed" in refused.output and "1 user" in refused.output and "--force" in refused.output
    assert await shop.probe.high_water() == high_water
    assert await shop.events.since(mark) == []

    forced = await seed_cli(shop, "--users", "5", "--products", "3", "--orders", "5", "--force", "--wait")

    assert forced.exit_code == 0, forced.output
    assert await shop.counts() == {"users": 6, "products": 3, "orders": 5}
    assert await shop.rows("SELECT id FROM orders WHERE user_id = %s", rita.id) == []
    assert await shop.rows("SELECT version FROM users WHERE id = %s", rita.id) == [(1,)]

    # Another seed's shop is data this one did not make either.
    other = await seed_cli(shop, "--users", "5", "--products", "3", "--orders", "5", "--seed", "2")
    assert other.exit_code == 1 and "6 users, 3 products and 5 orders" in other.output, other.output


async def test_only_one_seed_runs_against_a_database_at_a_time(shop: SeedLab) -> None:
    async with only_seed(shop.write_db):
        with pytest.raises(SeedRefused, match="another `eventshop seed` is running"):
            await seed(shop.write_db, SeedPlan(users=1, products=1, orders=1))
    assert await shop.counts() == {"users": 0, "products": 0, "orders": 0}
