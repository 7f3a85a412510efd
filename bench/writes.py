"""createOrder throughput and write amplification (SQL statements per command).

Three ways to place the same two-line orders with the same concurrency, on `<db>_bench`, each counted by
a SQLAlchemy `before_cursor_execute` listener on the engine (plus the `commit` event):
- through the gateway: the real Starlette/Strawberry app in-process (httpx.ASGITransport), customer tokens;
- the `create_order` handler called directly (no GraphQL), to split gateway cost from handler cost;
- the baseline: the same rows written by hand-written SQL in one transaction (SELECT the user, SELECT the
  products, INSERT the order, its items (one multi-row INSERT), its history line and its outbox row).
payOrder the same way: the `pay_order` handler against hand-written SQL (lock the order, read its items, history
and user, UPDATE it, INSERT its history line and outbox row), on orders the stock worker's reservation (run
in-process, `handle_order_events`, whose statements are counted too) made RESERVED.
The paths run in interleaved rounds (`in_rounds`), so a drift of the machine's load meets them all alike.
The relay does not run here: the outbox only grows.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from bench.env import BenchEnv
from bench.stats import Figure, latency_summary, rate
from command.db import WriteDatabase
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.pay_order import PayOrder, pay_order
from command.models import OrderItemRow, OrderRow, StatusChangeRow, db_now
from command.stock_worker import handle_order_events
from gateway.app import create_app
from gateway.auth import Role
from gateway.feed import ViewFeed
from projection.queries import ReadModel
from projection.store import connect_read_model
from shared.events import (
    Event,
    OrderCreated,
    OrderPaid,
    OrderSnapshot,
    OrderUser,
    PaymentMethod,
    StatusChange,
)
from shared.events import (
    OrderLine as LineSnapshot,
)

CONCURRENCY = 8
CONCURRENT = f"{CONCURRENCY} concurrent clients"
ROUNDS = 4
CREATE_ORDER = """
mutation($input: CreateOrderInput!, $key: String) {
  createOrder(input: $input, idempotencyKey: $key) {
    id userId user { id name email } items { productId productName quantity unitPrice subtotal }
    totalAmount status version createdAt
  }
}
"""
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+`?(\w+)`?", re.IGNORECASE)


def columns_of(table: type[SQLModel], *keys: str) -> tuple[str, ...]:
    """A write model table's columns, as its SQLModel class declares them, without these keys."""
    return tuple(name for name in table.__table__.columns.keys() if name not in keys)  # type: ignore[attr-defined]


ORDER_COLUMNS = columns_of(OrderRow)
LINE_COLUMNS = columns_of(OrderItemRow, "id", "order_id")
HISTORY_COLUMNS = columns_of(StatusChangeRow, "id", "order_id")
USER_COLUMNS = tuple(OrderUser.model_fields)  # the user as an order's event carries it
Row = Mapping[str, Any]


class StatementCounter:
    """Counts what the engine sends: cursor executions (by verb and table) and commits."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = 0
        self.commits = 0
        self.kinds: Counter[str] = Counter()
        event.listen(engine.sync_engine, "before_cursor_execute", self._execute)
        event.listen(engine.sync_engine, "commit", self._commit)

    def _execute(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        self.statements += 1
        verb = statement.lstrip().split(None, 1)[0].upper()
        table = _TABLE.search(statement)
        self.kinds[f"{verb} {table.group(1) if table else ''}".strip() + (" (executemany)" if many else "")] += 1

    def _commit(self, conn: Any) -> None:
        self.commits += 1

    def mark(self) -> tuple[int, int, Counter[str]]:
        return self.statements, self.commits, Counter(self.kinds)


async def concurrently(total: int, call: Callable[[int], Awaitable[None]], start: int = 0) -> tuple[float, list[float]]:
    """Run `call(i)` for i in range(start, start + total) on CONCURRENCY workers; (orders/s, per-call seconds)."""
    queue = list(range(start, start + total))
    took: list[float] = []

    async def worker() -> None:
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            await call(i)
            took.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return rate(total, time.perf_counter() - started), took


async def raw_create_order(db: WriteDatabase, user_id: int, lines: list[tuple[int, int]]) -> None:
    """The floor: the same rows and the same outbox event, in plain SQL, one transaction."""
    now = db_now()
    async with db.engine.begin() as conn:
        (user,) = await _select(conn, USER_COLUMNS, "FROM users WHERE id = %s AND deleted_at IS NULL", user_id)
        items = await _priced_lines(conn, lines)
        total = sum((item["subtotal"] for item in items), Decimal("0.00"))
        order: dict[str, Any] = {
            "user_id": user_id, "status": "CREATED", "total_amount": total, "stock_held": 0, "version": 1,
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        order["id"] = (await _insert(conn, "orders", [order])).lastrowid
        await _insert(conn, "order_items", [{"order_id": order["id"], **item} for item in items])
        created = {"status": "CREATED", "at": now, "reason": None}
        await _insert(conn, "order_status_history", [{"order_id": order["id"], **created}])
        await _insert_outbox_row(conn, OrderCreated.of(order_snapshot(order, user, items, [created])), now)


async def raw_pay_order(db: WriteDatabase, order_id: int) -> None:
    """The floor of payOrder: lock the order, read what its event carries, move it to PAID, one transaction."""
    now = db_now()
    async with db.engine.begin() as conn:
        (order,) = await _select(conn, ORDER_COLUMNS, "FROM orders WHERE id = %s FOR UPDATE", order_id)
        assert order["status"] == "RESERVED" and order["deleted_at"] is None
        items = await _select(conn, LINE_COLUMNS, "FROM order_items WHERE order_id = %s ORDER BY id", order_id)
        history = await _select(
            conn, HISTORY_COLUMNS, "FROM order_status_history WHERE order_id = %s ORDER BY id", order_id
        )
        (user,) = await _select(conn, USER_COLUMNS, "FROM users WHERE id = %s", order["user_id"])
        paid = {
            "status": "PAID", "payment_method": "PIX", "paid_at": now, "updated_at": now, "reserved_until": None,
            "version": order["version"] + 1,
        }  # fmt: skip
        await _update(conn, "orders", order_id, paid)
        change = {"status": "PAID", "at": now, "reason": None}
        await _insert(conn, "order_status_history", [{"order_id": order_id, **change}])
        snapshot = order_snapshot({**order, **paid}, user, items, [*history, change])
        await _insert_outbox_row(conn, OrderPaid.of(snapshot), now)


def order_snapshot(order: Row, user: Row, items: Iterable[Row], history: Iterable[Row]) -> OrderSnapshot:
    """The event's snapshot from rows as MySQL has them: of each row, the columns its part of the snapshot has."""
    return OrderSnapshot.model_validate(
        {
            **_fields(order, OrderSnapshot),
            "user": _fields(user, OrderUser),
            "items": [_fields(item, LineSnapshot) for item in items],
            "history": [_fields(change, StatusChange) for change in history],
        }
    )


def _fields(row: Row, model: type[BaseModel]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name in model.model_fields}


async def _select(conn: Any, columns: Iterable[str], rest: str, *params: Any) -> list[Row]:
    """The rows of `SELECT <columns> <rest>`, by column name."""
    return list((await conn.exec_driver_sql(f"SELECT {', '.join(columns)} {rest}", params)).mappings().all())


async def _priced_lines(conn: Any, lines: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The requested lines priced from their products (one SELECT), as `order_items` rows without their keys."""
    placeholders = ", ".join(["%s"] * len(lines))
    products = {
        r.id: r
        for r in await conn.exec_driver_sql(
            f"SELECT id, name, price, stock FROM products WHERE id IN ({placeholders}) AND deleted_at IS NULL",
            tuple(pid for pid, _ in lines),
        )
    }
    items = []
    for pid, quantity in lines:
        p = products[pid]
        assert quantity <= p.stock
        items.append(
            {"product_id": pid, "product_name": p.name, "quantity": quantity, "unit_price": p.price,
             "subtotal": p.price * quantity}
        )  # fmt: skip
    return items


async def _insert(conn: Any, table: str, rows: list[dict[str, Any]]) -> Any:
    """One INSERT of these rows (each with the columns of the first), as the baselines write everything."""
    columns = list(rows[0])
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    return await conn.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(f'`{c}`' for c in columns)}) VALUES {', '.join([row] * len(rows))}",
        tuple(values[c] for values in rows for c in columns),
    )


async def _update(conn: Any, table: str, row_id: int, changes: dict[str, Any]) -> None:
    assignments = ", ".join(f"`{c}` = %s" for c in changes)
    await conn.exec_driver_sql(f"UPDATE {table} SET {assignments} WHERE id = %s", (*changes.values(), row_id))


async def _insert_outbox_row(conn: Any, event: Event, now: Any) -> None:
    """The event's outbox row, written by hand as the baselines write everything."""
    row = {
        "event_id": str(event.event_id),
        "topic": event.event_type.value,
        "key": str(event.aggregate_id),
        "aggregate_type": event.aggregate_type.value,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "payload": event.model_dump_json(),
        "headers": json.dumps({k: v.decode() for k, v in event.kafka_headers()}),
        "created_at": now,
    }
    await _insert(conn, "outbox", [row])


async def reserved_orders(
    db: WriteDatabase,
    counter: StatementCounter,
    users: list[int],
    lines: Callable[[], list[tuple[int, int]]],
    count: int,
) -> tuple[list[int], float]:
    """`count` orders placed by the handler and reserved by the stock worker's own code (as on `order.created`);
    their ids, and the statements each reservation took."""
    placed = [
        await create_order(db, CreateOrder(users[i % len(users)], tuple(RequestedLine(p, q) for p, q in lines())))
        for i in range(count)
    ]
    before, _, _ = counter.mark()
    for order in placed:
        await handle_order_events(db, [OrderCreated.of(order)])
    after, _, _ = counter.mark()
    return [order.id for order in placed], (after - before) / count


Path = tuple[str, Callable[[int], Awaitable[None]], int]


async def in_rounds(counter: StatementCounter, paths: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
    """Each path's rate, statements and latencies over ROUNDS interleaved rounds (path A, B, C, A, B, C, ...): the
    machine's load drifts while a bench runs (other processes, the database's own work), and interleaving
    makes every path meet the same drift, so the ratios between them hold from run to run."""
    seconds = dict.fromkeys((name for name, _, _ in paths), 0.0)
    took: dict[str, list[float]] = {name: [] for name, _, _ in paths}
    statements: Counter[str] = Counter()
    commits: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = {name: Counter() for name, _, _ in paths}
    for round_ in range(ROUNDS):
        for name, call, count in paths:
            share = count // ROUNDS
            before_statements, before_commits, before_kinds = counter.mark()
            started = time.perf_counter()
            _, latencies = await concurrently(share, call, start=round_ * share)
            seconds[name] += time.perf_counter() - started
            after_statements, after_commits, after_kinds = counter.mark()
            took[name] += latencies
            statements[name] += after_statements - before_statements
            commits[name] += after_commits - before_commits
            kinds[name] += after_kinds - before_kinds
    measured: dict[str, dict[str, Any]] = {}
    for name, _, count in paths:
        done = count // ROUNDS * ROUNDS
        measured[name] = {
            "orders_per_second": rate(done, seconds[name]),
            "statements_per_command": statements[name] / done,
            "commits_per_command": commits[name] / done,
            "statement_kinds_per_command": {k: v / done for k, v in kinds[name].items()},
            "latency_ms": latency_summary(took[name]),
        }
    return measured


@dataclass
class Paths:
    """The ways to place (and pay) the same orders, each a call of the order's number: the customers take turns,
    each order asks for two products drawn from a seeded sequence."""

    db: WriteDatabase
    http: httpx.AsyncClient
    tokens: dict[int, dict[str, str]]
    users: list[int]
    lines: Callable[[], list[tuple[int, int]]]
    by_handler: list[int] = field(default_factory=list)  # reserved orders the handler pays
    by_sql: list[int] = field(default_factory=list)  # reserved orders the hand-written SQL pays

    async def via_gateway(self, i: int, idempotent: bool = False) -> None:
        user = self.users[i % len(self.users)]
        variables = {
            "input": {"userId": str(user), "items": [{"productId": str(p), "quantity": q} for p, q in self.lines()]},
            "key": uuid.uuid4().hex if idempotent else None,
        }
        response = await self.http.post(
            "/graphql", json={"query": CREATE_ORDER, "variables": variables}, headers=self.tokens[user]
        )
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"createOrder failed: {body['errors']}")

    async def idempotent(self, i: int) -> None:
        await self.via_gateway(i, idempotent=True)

    async def via_handler(self, i: int) -> None:
        user = self.users[i % len(self.users)]
        await create_order(self.db, CreateOrder(user, tuple(RequestedLine(p, q) for p, q in self.lines())))

    async def via_sql(self, i: int) -> None:
        await raw_create_order(self.db, self.users[i % len(self.users)], self.lines())

    async def pay_via_handler(self, i: int) -> None:
        await pay_order(self.db, PayOrder(self.by_handler[i], PaymentMethod.PIX))

    async def pay_via_sql(self, i: int) -> None:
        await raw_pay_order(self.db, self.by_sql[i])

    async def reserve_payable(self, counter: StatementCounter, each: int) -> float:
        """`each` reserved orders for either way of paying; the statements one reservation took."""
        payable, per_reservation = await reserved_orders(self.db, counter, self.users, self.lines, 2 * each)
        self.by_handler, self.by_sql = payable[:each], payable[each:]
        return per_reservation

    async def warm(self, orders: int, warm: int) -> None:
        """Every path once over (pool, statement caches, schema), outside the counts; the payments take the last
        `warm` orders of their lists."""
        for call in (self.via_gateway, self.via_handler, self.via_sql, self.idempotent):
            await concurrently(warm, call)
        for pay in (self.pay_via_handler, self.pay_via_sql):
            await concurrently(warm, lambda i, pay=pay: pay(orders + i))  # type: ignore[misc]

    def timed(self, orders: int) -> tuple[Path, ...]:
        return (
            ("gateway", self.via_gateway, orders),
            ("handler", self.via_handler, orders),
            ("sql", self.via_sql, orders),
            ("gateway_idempotent", self.idempotent, orders // 2),
            ("pay_handler", self.pay_via_handler, orders),
            ("pay_sql", self.pay_via_sql, orders),
        )


async def customers_and_products(db: WriteDatabase) -> tuple[list[int], list[int]]:
    """CONCURRENCY customers and 20 products with stock for every order of the run."""
    users = [
        (await create_user(db, CreateUser(f"Writer {i}", f"writer{i}-{uuid.uuid4().hex[:6]}@bench.example.com"))).id
        for i in range(CONCURRENCY)
    ]
    products = [
        (await create_product(db, CreateProduct(f"Write bench {i}", Decimal("12.50") + i, 10_000_000))).id
        for i in range(20)
    ]
    return users, products  # type: ignore[return-value]


async def run(env: BenchEnv, orders: int = 240) -> list[Figure]:
    settings = env.settings
    db = WriteDatabase(settings.mysql_dsn)
    counter = StatementCounter(db.engine)
    mongo, read_db = await connect_read_model(settings.mongo_uri, settings.mongo_database)
    rng = random.Random(3)
    try:
        users, products = await customers_and_products(db)

        def lines() -> list[tuple[int, int]]:
            return [(pid, rng.randint(1, 3)) for pid in rng.sample(products, 2)]

        app = create_app(
            write_db=db, read_model=ReadModel(read_db), feed=ViewFeed(settings), settings=settings, readiness={}
        )
        tokens = {u: env.headers(Role.CUSTOMER, u) for u in users}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=30) as http:
            paths = Paths(db, http, tokens, users, lines)
            warm = CONCURRENCY * 2
            per_reservation = await paths.reserve_payable(counter, orders + warm)
            await paths.warm(orders, warm)
            measured = await in_rounds(counter, paths.timed(orders))
    finally:
        await mongo.close()
        await db.dispose()
    return [
        *order_figures(measured, orders),
        *payment_figures(measured, per_reservation),
        commit_figure(measured),
    ]


def _latencies(m: dict[str, Any]) -> str:
    return f"p50 {m['latency_ms']['p50']:.1f} ms, p99 {m['latency_ms']['p99']:.1f} ms"


def _kinds(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(m["statement_kinds_per_command"].items()))


def order_figures(measured: dict[str, dict[str, Any]], orders: int) -> list[Figure]:
    """createOrder's rate and statements by every path, against hand-written SQL."""
    g, h, s, i = (measured[k] for k in ("gateway", "handler", "sql", "gateway_idempotent"))
    return [
        Figure(
            "writes",
            f"createOrder through the gateway (in-process ASGI, {CONCURRENT}, {orders} orders)",
            "orders/s",
            g["orders_per_second"],
            s["orders_per_second"],
            "hand-written SQL, same rows, same concurrency",
            note=_latencies(g),
            details=measured,
        ),
        Figure(
            "writes",
            f"create_order handler called directly ({CONCURRENT})",
            "orders/s",
            h["orders_per_second"],
            s["orders_per_second"],
            "hand-written SQL",
            note=_latencies(h),
        ),
        Figure(
            "writes",
            "SQL statements per createOrder",
            "stmts",
            g["statements_per_command"],
            s["statements_per_command"],
            "hand-written SQL",
            higher_is_better=False,
            note=_kinds(g),
        ),
        Figure(
            "writes",
            "SQL statements per createOrder with idempotencyKey",
            "stmts",
            i["statements_per_command"],
            s["statements_per_command"],
            "hand-written SQL (no key)",
            higher_is_better=False,
            note=f"{i['orders_per_second']:.0f} orders/s; " + _kinds(i),
        ),
    ]


def payment_figures(measured: dict[str, dict[str, Any]], per_reservation: float) -> list[Figure]:
    """payOrder's rate and statements against hand-written SQL, and the statements of one stock reservation."""
    ph, ps = measured["pay_handler"], measured["pay_sql"]
    return [
        Figure(
            "writes",
            f"pay_order handler called directly ({CONCURRENT})",
            "payments/s",
            ph["orders_per_second"],
            ps["orders_per_second"],
            "hand-written SQL, same rows",
            note=_latencies(ph),
        ),
        Figure(
            "writes",
            "SQL statements per payOrder",
            "stmts",
            ph["statements_per_command"],
            ps["statements_per_command"],
            "hand-written SQL",
            higher_is_better=False,
            note=_kinds(ph),
        ),
        Figure(
            "writes",
            "SQL statements per stock reservation (two-line order)",
            "stmts",
            per_reservation,
            None,
            higher_is_better=False,
            note="the stock worker's transaction on order.created: claim, order, products, writes, outbox",
        ),
    ]


def commit_figure(measured: dict[str, dict[str, Any]]) -> Figure:
    g, s = measured["gateway"], measured["sql"]
    return Figure(
        "writes",
        "commits per createOrder",
        "commits",
        g["commits_per_command"],
        s["commits_per_command"],
        "hand-written SQL",
        higher_is_better=False,
    )
