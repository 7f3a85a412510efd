"""Every hot statement of the write side uses the index meant for it (MariaDB's EXPLAIN), on a database with
enough rows that a scan would not be chosen by accident: the relay's read and completions, the three retention
purges, the row locks of users, products and orders, an order's items and history, the idempotency key, the
stock worker's processed_events claim, and the expirer's due orders with the relay's count of them.

The SQL is the code's own: the relay's statement strings and the purge statements as the relay builds them,
and for the store, the idempotency keys and the stock worker, the statements their functions send (caught on
the engine as they run), so a changed query is checked as it now is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from command import store
from command.db import WriteDatabase
from command.idempotency import Idempotency, recall
from command.models import db_now
from command.relay.housekeeping import OUTBOX, Housekeeping, purge_statement, retentions
from command.relay.publishing import OutboxStatements
from command.stock_worker import handle_order_events
from shared.events import OrderCreated
from shared.settings import Settings
from tests.labs import own_database, own_settings

USERS, PRODUCTS, ORDERS = 20_000, 5_000, 50_000
OUTBOX_ROWS = 60_000  # one a minute over ~42 days: about a third past the 7 days of retention
PROCESSED = 60_000  # one a minute over ~42 days: past the 30 days of retention, a quarter of them
KEYS = 20_000  # expiring one a minute, half of them already expired
BATCH = 1_000
SCANS = {"ALL", "index"}  # a whole table or a whole index read


@dataclass(frozen=True)
class Step:
    """One table access of a plan: EXPLAIN's row."""

    table: str
    type: str
    key: str | None
    rows: int | None
    extra: str

    @property
    def sorts(self) -> bool:
        return "filesort" in self.extra


@dataclass(frozen=True)
class KeyedRequest:
    """What a keyed call hashes (any dataclass)."""

    order_id: int


async def fill(db: WriteDatabase) -> None:
    """A shop in bulk from MariaDB's sequence engine: users, products, orders with two items and a history line,
    published and unpublished outbox rows, processed events and idempotency keys spread over weeks."""
    statements = [
        "INSERT INTO users (name, email, created_at, updated_at) SELECT CONCAT('u', seq), CONCAT('u', seq, '@plans'),"
        f" UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM seq_1_to_{USERS}",
        "INSERT INTO products (name, description, price, stock, created_at, updated_at) SELECT CONCAT('p', seq), '',"
        f" 10.00, 1000000, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM seq_1_to_{PRODUCTS}",
        "INSERT INTO orders (user_id, status, total_amount, created_at, updated_at) SELECT 1 + MOD(seq, {u}),"
        f" 'CREATED', 20.00, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM seq_1_to_{ORDERS}".replace("{u}", str(USERS)),
        *(
            "INSERT INTO order_items (order_id, product_id, product_name, quantity, unit_price, subtotal)"
            f" SELECT id, 1 + MOD(id + {line}, {PRODUCTS}), 'p', 1, 10.00, 10.00 FROM orders"
            for line in (0, 1)
        ),
        "INSERT INTO order_status_history (order_id, status, at) SELECT id, 'CREATED', created_at FROM orders",
        "INSERT INTO outbox (event_id, topic, `key`, aggregate_type, aggregate_id, aggregate_version, payload,"
        " headers, created_at, published_at) SELECT UUID(), 'order.created', seq, 'order', seq, 1, '{}', '{}',"
        " UTC_TIMESTAMP(6) - INTERVAL seq MINUTE, IF(seq <= 500, NULL, UTC_TIMESTAMP(6) - INTERVAL seq MINUTE)"
        f" FROM seq_1_to_{OUTBOX_ROWS}",
        "INSERT INTO processed_events (consumer, event_id, processed_at) SELECT 'stock-worker', UUID(),"
        f" UTC_TIMESTAMP(6) - INTERVAL seq MINUTE FROM seq_1_to_{PROCESSED}",
        "INSERT INTO idempotency_keys (operation, `key`, request_hash, response, created_at, expires_at)"
        " SELECT 'createOrder', CONCAT('k', seq), 'h', '{}', UTC_TIMESTAMP(6),"
        f" UTC_TIMESTAMP(6) + INTERVAL (CAST(seq AS SIGNED) - {KEYS // 2}) MINUTE FROM seq_1_to_{KEYS}",
    ]
    async with db.engine.begin() as conn:
        for statement in statements:
            await conn.exec_driver_sql(statement)
        for table in ("users", "products", "orders", "order_items", "order_status_history", "outbox"):
            await conn.exec_driver_sql(f"ANALYZE TABLE {table}")
        await conn.exec_driver_sql("ANALYZE TABLE processed_events, idempotency_keys")


@pytest.fixture(scope="module")
async def shop_db(settings: Settings) -> AsyncIterator[WriteDatabase]:
    """A database of its own, migrated to head and filled (the shared test database holds a few rows only)."""
    async with own_database(own_settings(settings, "plans"), pool_size=2) as db:
        await fill(db)
        yield db


async def explain(db: WriteDatabase, sql: str, parameters: Any = None) -> list[Step]:
    async with db.engine.connect() as conn:
        result = await conn.exec_driver_sql(f"EXPLAIN {sql}", parameters or ())
        return [
            Step(row.table, row.type, row.key, None if row.rows is None else int(row.rows), row.Extra or "")
            for row in result
        ]


@contextmanager
def statements_sent(db: WriteDatabase) -> Iterator[list[tuple[str, Any]]]:
    """Every statement (and its parameters) the code sends on this engine while the block runs."""
    sent: list[tuple[str, Any]] = []

    def caught(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", caught)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", caught)


def on(plan: list[Step], table: str) -> Step:
    steps = [step for step in plan if step.table == table]
    assert len(steps) == 1, f"one access of {table} expected: {plan}"
    return steps[0]


def assert_uses(plan: list[Step], table: str, key: str, *, sorts: bool = False) -> Step:
    step = on(plan, table)
    assert step.type not in SCANS and step.key == key, f"{table} by {key} expected: {step}"
    assert step.sorts == sorts, f"{table}: {'a' if sorts else 'no'} sort expected: {step}"
    return step


# --- the relay -------------------------------------------------------------------------------------------


async def test_the_outbox_has_the_row_format_that_marks_rows_in_place(shop_db: WriteDatabase) -> None:
    """REDUNDANT, as the model says (`OutboxRow`): a mark rewrites `published_at` in the record."""
    async with shop_db.engine.connect() as conn:
        stored = await conn.execute(
            text(
                "SELECT row_format FROM information_schema.tables WHERE table_schema = DATABASE()"
                " AND table_name = 'outbox'"
            )
        )
        assert stored.scalar_one().upper() == OUTBOX.kwargs["mysql_row_format"] == "REDUNDANT"


async def test_the_relay_reads_unpublished_rows_in_id_order_from_the_published_at_index(
    shop_db: WriteDatabase,
) -> None:
    statements = OutboxStatements.of_model()
    plan = await explain(shop_db, statements.pending.format(excluded="1,2,3", limit=500))
    step = assert_uses(plan, "outbox", "ix_outbox_published_at")
    assert step.type == "ref"  # the NULL entries only, already in id order: no published row is read


async def test_the_relay_marks_and_deletes_rows_by_primary_key(shop_db: WriteDatabase) -> None:
    statements = OutboxStatements.of_model()
    ids = ",".join(str(i) for i in range(100, 600))
    for sql in (statements.mark.format(ids=ids), statements.delete.format(ids=ids)):
        step = assert_uses(await explain(shop_db, sql), "outbox", "PRIMARY")
        assert step.rows is not None and step.rows <= 500


async def test_every_purge_batch_walks_its_age_index_to_the_batch_size(shop_db: WriteDatabase) -> None:
    """An index walk that stops at the batch, never a sort of every expired row (which `ORDER BY id` on the
    (published_at, id) index was: `Using filesort` over the expired third of the outbox)."""
    cutoff = (db_now() - timedelta(days=7)).isoformat(sep=" ")
    for retention in retentions():
        statement = purge_statement(retention.index, BATCH)
        plan = await explain(shop_db, statement.text.replace(":cutoff", f"'{cutoff}'"))
        step = assert_uses(plan, retention.index.table.name, str(retention.index.name))
        assert step.rows is not None and step.rows <= BATCH, f"{retention.name} reads past its batch: {step}"


async def test_a_purge_statement_of_the_old_order_would_sort_and_is_seen_to(shop_db: WriteDatabase) -> None:
    """The check can fail: the outbox purge as it was (`ORDER BY id`) sorts every expired row."""
    cutoff = (db_now() - timedelta(days=7)).isoformat(sep=" ")
    plan = await explain(shop_db, f"DELETE FROM outbox WHERE published_at < '{cutoff}' ORDER BY id LIMIT {BATCH}")
    assert on(plan, "outbox").sorts and (on(plan, "outbox").rows or 0) > BATCH


# --- what the handlers and the stock worker send -----------------------------------------------------------


async def plans_of(db: WriteDatabase, sent: list[tuple[str, Any]]) -> list[tuple[str, list[Step]]]:
    """The plan of every read, update and delete sent (inserts have none to check)."""
    reads = [(sql, params) for sql, params in sent if sql.lstrip().split(None, 1)[0].upper() in ("SELECT", "UPDATE")]
    return [(sql, await explain(db, sql, params)) for sql, params in reads]


def assert_no_scan_anywhere(plans: list[tuple[str, list[Step]]]) -> None:
    for sql, plan in plans:
        for step in plan:
            assert step.type not in SCANS and step.key is not None, f"a scan: {step}\n{sql}"


def by_table(plans: list[tuple[str, list[Step]]], table: str) -> list[Step]:
    return [step for _, plan in plans for step in plan if step.table == table]


async def test_row_locks_of_users_products_and_orders_and_an_orders_items_and_history_use_their_keys(
    shop_db: WriteDatabase,
) -> None:
    with statements_sent(shop_db) as sent:
        async with shop_db.transaction() as tx:
            await store.lock_user(tx, 42)
            await store.lock_products(tx, [7, 3, 4000])
            order = await store.find_order(tx, 1234)
    assert order is not None
    plans = await plans_of(shop_db, sent)
    assert_no_scan_anywhere(plans)
    for table in ("users", "products", "orders"):
        assert by_table(plans, table) and all(s.key == "PRIMARY" and not s.sorts for s in by_table(plans, table))
    # The history is in (order_id, id) order in its index; the items' unique key is (order_id, product_id), so
    # an order's own few lines (at most the order's line limit) are sorted by id: a sort of nothing that grows.
    assert [(s.key, s.sorts) for s in by_table(plans, "order_status_history")] == [("fk_history_order", False)]
    assert [s.key for s in by_table(plans, "order_items")] == ["uq_items_order_product"]
    assert all((s.rows or 0) <= 10 for s in by_table(plans, "order_items"))


async def test_an_idempotency_key_is_found_and_taken_over_by_its_primary_key(shop_db: WriteDatabase) -> None:
    """Keys that exist, one expired and one live: the claim meets each, the stored row is read by (operation,
    key), and the expired one taken over by the same key: one row each time."""
    request = KeyedRequest(order_id=1)
    for key in (f"k{KEYS // 4}", f"k{KEYS - 1}"):
        idem = Idempotency.of("createOrder", key, request, 3600)
        assert idem is not None
        with statements_sent(shop_db) as sent:
            async with shop_db.transaction() as tx:
                await _recalled(tx, idem)
        plans = await plans_of(shop_db, sent)
        assert_no_scan_anywhere(plans)
        steps = by_table(plans, "idempotency_keys")
        assert steps and all(s.key == "PRIMARY" and (s.rows or 0) <= 1 for s in steps), steps


async def _recalled(tx: Any, idem: Idempotency) -> None:
    try:
        await recall(tx, idem)
    except Exception as exc:  # noqa: BLE001 - a key of another request is a CONFLICT: its statements ran
        assert "idempotencyKey" in str(exc)


async def test_the_stock_worker_claims_an_event_on_the_primary_key_and_locks_by_key(
    shop_db: WriteDatabase,
) -> None:
    async with shop_db.transaction() as tx:
        order = await store.find_order(tx, 4321)
    assert order is not None
    with statements_sent(shop_db) as sent:
        await handle_order_events(shop_db, [OrderCreated.of(order.state)])
    claims = [sql for sql, _ in sent if "processed_events" in sql]
    assert claims and all(sql.lstrip().upper().startswith("INSERT IGNORE") for sql in claims)
    async with shop_db.engine.connect() as conn:
        primary = await conn.execute(
            text(
                "SELECT column_name FROM information_schema.statistics WHERE table_schema = DATABASE()"
                " AND table_name = 'processed_events' AND index_name = 'PRIMARY' ORDER BY seq_in_index"
            )
        )
        # The claim's duplicate check is a probe of this key: (consumer, event_id), what the claim inserts.
        assert [row[0] for row in primary] == ["consumer", "event_id"]
    plans = await plans_of(shop_db, sent)
    assert_no_scan_anywhere(plans)
    for table in ("orders", "products"):  # read, locked and written back by id
        assert by_table(plans, table) and all(s.key == "PRIMARY" for s in by_table(plans, table))


# --- the expirer and its metrics (last: they make some orders RESERVED) ------------------------------------------

RESERVED, DUE = 30_000, 2_000


async def reservations_coming_due(db: WriteDatabase) -> None:
    """30,000 of the orders RESERVED, one deadline a second, the first 2,000 of them passed."""
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE orders SET status = 'RESERVED',"
            f" reserved_until = UTC_TIMESTAMP(6) + INTERVAL (CAST(id AS SIGNED) - {10_000 + DUE}) SECOND"
            f" WHERE id BETWEEN 10001 AND {10_000 + RESERVED}"
        )
        await conn.exec_driver_sql("ANALYZE TABLE orders")


async def test_the_expirer_reads_the_due_reservations_only_in_deadline_order(shop_db: WriteDatabase) -> None:
    """The due orders are one range of the (status, reserved_until) index, walked in deadline order (no sort) up to
    the batch: what is not due, and every order in another status, is never read."""
    await reservations_coming_due(shop_db)
    with statements_sent(shop_db) as sent:
        async with shop_db.transaction() as tx:
            due = await store.lock_due_orders(tx, store.clock(), 100)
    assert len(due) == 100 and due == sorted(due)  # the earliest deadlines first: the lowest ids here
    (plan,) = [plan for _, plan in await plans_of(shop_db, sent)]
    step = assert_uses(plan, "orders", "ix_orders_status_reserved_until")
    assert step.type == "range" and step.rows is not None and step.rows <= 2 * DUE, step


async def test_the_overdue_metrics_count_the_due_range_of_the_same_index(shop_db: WriteDatabase) -> None:
    """What the relay counts each second: the overdue reservations, however many orders there are."""
    with statements_sent(shop_db) as sent:
        await Housekeeping(shop_db.engine, Settings()).measure_backlog()
    (overdue,) = [(sql, params) for sql, params in sent if "reserved_until" in sql]
    step = assert_uses(await explain(shop_db, *overdue), "orders", "ix_orders_status_reserved_until")
    assert step.rows is not None and step.rows <= 2 * DUE, step
