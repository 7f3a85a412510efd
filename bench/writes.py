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
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.env import BenchEnv
from bench.stats import Figure, latency_summary, rate
from command.db import WriteDatabase
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.pay_order import PayOrder, pay_order
from command.models import db_now
from command.stock_worker import handle_order_events
from gateway.app import create_app
from gateway.auth import Role
from gateway.feed import ViewFeed
from projection.queries import ReadModel
from projection.store import connect_read_model
from shared.events import Event, OrderCreated, OrderPaid, OrderSnapshot, PaymentMethod

CONCURRENCY = 8
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
        user = (
            await conn.exec_driver_sql(
                "SELECT id, name, email, version FROM users WHERE id = %s AND deleted_at IS NULL", (user_id,)
            )
        ).one()
        ids = [pid for pid, _ in lines]
        placeholders = ", ".join(["%s"] * len(ids))
        products = {
            r.id: r
            for r in await conn.exec_driver_sql(
                f"SELECT id, name, price, stock FROM products WHERE id IN ({placeholders}) AND deleted_at IS NULL",
                tuple(ids),
            )
        }
        items = []
        for pid, quantity in lines:
            p = products[pid]
            assert quantity <= p.stock
            items.append((pid, p.name, quantity, p.price, p.price * quantity))
        total = sum((i[4] for i in items), Decimal("0.00"))
        result = await conn.exec_driver_sql(
            "INSERT INTO orders (user_id, status, total_amount, stock_held, version, created_at, updated_at) "
            "VALUES (%s, 'CREATED', %s, 0, 1, %s, %s)",
            (user_id, total, now, now),
        )
        order_id = result.lastrowid
        values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(items))
        await conn.exec_driver_sql(
            f"INSERT INTO order_items (order_id, product_id, product_name, quantity, unit_price, subtotal) "
            f"VALUES {values}",
            tuple(v for item in items for v in (order_id, *item)),
        )
        await conn.exec_driver_sql(
            "INSERT INTO order_status_history (order_id, status, at) VALUES (%s, 'CREATED', %s)", (order_id, now)
        )
        stamp = now.isoformat() + "+00:00"
        snapshot = {
            "id": order_id,
            "user_id": user_id,
            "user": {"id": user.id, "name": user.name, "email": user.email, "version": user.version},
            "items": [
                {
                    "product_id": i[0],
                    "product_name": i[1],
                    "quantity": i[2],
                    "unit_price": str(i[3]),
                    "subtotal": str(i[4]),
                }
                for i in items
            ],
            "total_amount": str(total),
            "status": "CREATED",
            "payment_method": None,
            "cancel_reason": None,
            "reject_reason": None,
            "history": [{"status": "CREATED", "at": stamp, "reason": None}],
            "version": 1,
            "created_at": stamp,
            "updated_at": stamp,
            "paid_at": None,
            "canceled_at": None,
            "deleted_at": None,
        }
        envelope = OrderCreated.of(OrderSnapshot.model_validate(snapshot))
        await _insert_outbox_row(conn, envelope, now)


async def _insert_outbox_row(conn: Any, event: Event, now: Any) -> None:
    """The event's outbox row, written by hand as the baselines write everything."""
    await conn.exec_driver_sql(
        "INSERT INTO outbox (event_id, topic, `key`, aggregate_type, aggregate_id, aggregate_version, payload, "
        "headers, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            str(event.event_id),
            event.event_type.value,
            str(event.aggregate_id),
            event.aggregate_type.value,
            event.aggregate_id,
            event.aggregate_version,
            event.model_dump_json(),
            json.dumps({k: v.decode() for k, v in event.kafka_headers()}),
            now,
        ),
    )


def _stamp(value: Any) -> str | None:
    return None if value is None else value.isoformat() + "+00:00"


async def raw_pay_order(db: WriteDatabase, order_id: int) -> None:
    """The floor of payOrder: lock the order, read what its event carries, move it to PAID, one transaction."""
    now = db_now()
    async with db.engine.begin() as conn:
        order = (
            await conn.exec_driver_sql(
                "SELECT id, user_id, status, total_amount, payment_method, cancel_reason, reject_reason, version, "
                "created_at, updated_at, paid_at, canceled_at, deleted_at FROM orders WHERE id = %s FOR UPDATE",
                (order_id,),
            )
        ).one()
        assert order.status == "RESERVED" and order.deleted_at is None
        items = (
            await conn.exec_driver_sql(
                "SELECT product_id, product_name, quantity, unit_price, subtotal FROM order_items "
                "WHERE order_id = %s ORDER BY id",
                (order_id,),
            )
        ).all()
        history = (
            await conn.exec_driver_sql(
                "SELECT status, reason, at FROM order_status_history WHERE order_id = %s ORDER BY id", (order_id,)
            )
        ).all()
        user = (
            await conn.exec_driver_sql("SELECT id, name, email, version FROM users WHERE id = %s", (order.user_id,))
        ).one()
        version = order.version + 1
        await conn.exec_driver_sql(
            "UPDATE orders SET status = 'PAID', payment_method = 'PIX', paid_at = %s, updated_at = %s, version = %s "
            "WHERE id = %s",
            (now, now, version, order_id),
        )
        await conn.exec_driver_sql(
            "INSERT INTO order_status_history (order_id, status, at) VALUES (%s, 'PAID', %s)", (order_id, now)
        )
        snapshot = {
            "id": order_id,
            "user_id": order.user_id,
            "user": {"id": user.id, "name": user.name, "email": user.email, "version": user.version},
            "items": [
                {
                    "product_id": i.product_id,
                    "product_name": i.product_name,
                    "quantity": i.quantity,
                    "unit_price": str(i.unit_price),
                    "subtotal": str(i.subtotal),
                }
                for i in items
            ],
            "total_amount": str(order.total_amount),
            "status": "PAID",
            "payment_method": "PIX",
            "cancel_reason": None,
            "reject_reason": None,
            "history": [
                *({"status": h.status, "at": _stamp(h.at), "reason": h.reason} for h in history),
                {"status": "PAID", "at": _stamp(now), "reason": None},
            ],
            "version": version,
            "created_at": _stamp(order.created_at),
            "updated_at": _stamp(now),
            "paid_at": _stamp(now),
            "canceled_at": None,
            "deleted_at": None,
        }
        envelope = OrderPaid.of(OrderSnapshot.model_validate(snapshot))
        await _insert_outbox_row(conn, envelope, now)


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


async def run(env: BenchEnv, orders: int = 240) -> list[Figure]:
    settings = env.settings
    db = WriteDatabase(settings.mysql_dsn)
    counter = StatementCounter(db.engine)
    mongo, read_db = await connect_read_model(settings.mongo_uri, settings.mongo_database)
    rng = random.Random(3)
    try:
        users = [
            (await create_user(db, CreateUser(f"Writer {i}", f"writer{i}-{uuid.uuid4().hex[:6]}@bench.example.com"))).id
            for i in range(CONCURRENCY)
        ]
        products: list[int] = [
            (await create_product(db, CreateProduct(f"Write bench {i}", Decimal("12.50") + i, 10_000_000))).id
            for i in range(20)
        ]

        def lines() -> list[tuple[int, int]]:
            return [(pid, rng.randint(1, 3)) for pid in rng.sample(products, 2)]

        app = create_app(
            write_db=db, read_model=ReadModel(read_db), feed=ViewFeed(settings), settings=settings, readiness={}
        )
        tokens = {u: env.headers(Role.CUSTOMER, u) for u in users}  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=30) as http:

            async def via_gateway(i: int, idempotent: bool = False) -> None:
                user = users[i % len(users)]
                variables = {
                    "input": {"userId": str(user), "items": [{"productId": str(p), "quantity": q} for p, q in lines()]},
                    "key": uuid.uuid4().hex if idempotent else None,
                }
                body = (
                    await http.post(
                        "/graphql", json={"query": CREATE_ORDER, "variables": variables}, headers=tokens[user]
                    )
                ).json()
                if body.get("errors"):
                    raise RuntimeError(f"createOrder failed: {body['errors']}")

            async def via_handler(i: int) -> None:
                user = users[i % len(users)]
                await create_order(db, CreateOrder(user, tuple(RequestedLine(p, q) for p, q in lines())))  # type: ignore[arg-type]

            async def via_sql(i: int) -> None:
                await raw_create_order(db, users[i % len(users)], lines())  # type: ignore[arg-type]

            async def idempotent(i: int) -> None:
                await via_gateway(i, idempotent=True)

            warm = CONCURRENCY * 2
            payable, per_reservation = await reserved_orders(db, counter, users, lines, 2 * (orders + warm))
            by_handler, by_sql = payable[: orders + warm], payable[orders + warm :]

            async def pay_via_handler(i: int) -> None:
                await pay_order(db, PayOrder(by_handler[i], PaymentMethod.PIX))

            async def pay_via_sql(i: int) -> None:
                await raw_pay_order(db, by_sql[i])

            # Warm every path (pool, statement caches, schema) outside the counts.
            for call in (via_gateway, via_handler, via_sql, idempotent):
                await concurrently(warm, call)
            for pay in (pay_via_handler, pay_via_sql):  # the last `warm` orders of each list
                await concurrently(warm, lambda i, pay=pay: pay(orders + i))  # type: ignore[misc]
            measured = await in_rounds(
                counter,
                (
                    ("gateway", via_gateway, orders),
                    ("handler", via_handler, orders),
                    ("sql", via_sql, orders),
                    ("gateway_idempotent", idempotent, orders // 2),
                    ("pay_handler", pay_via_handler, orders),
                    ("pay_sql", pay_via_sql, orders),
                ),
            )
    finally:
        await mongo.close()
        await db.dispose()

    g, h, s, i = (measured[k] for k in ("gateway", "handler", "sql", "gateway_idempotent"))
    ph, ps = measured["pay_handler"], measured["pay_sql"]

    def kinds(m: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in sorted(m["statement_kinds_per_command"].items()))

    conc = f"{CONCURRENCY} concurrent clients"
    return [
        Figure(
            "writes",
            f"createOrder through the gateway (in-process ASGI, {conc}, {orders} orders)",
            "orders/s",
            g["orders_per_second"],
            s["orders_per_second"],
            "hand-written SQL, same rows, same concurrency",
            note=f"p50 {g['latency_ms']['p50']:.1f} ms, p99 {g['latency_ms']['p99']:.1f} ms",
            details=measured,
        ),
        Figure(
            "writes",
            f"create_order handler called directly ({conc})",
            "orders/s",
            h["orders_per_second"],
            s["orders_per_second"],
            "hand-written SQL",
            note=f"p50 {h['latency_ms']['p50']:.1f} ms, p99 {h['latency_ms']['p99']:.1f} ms",
        ),
        Figure(
            "writes",
            "SQL statements per createOrder",
            "stmts",
            g["statements_per_command"],
            s["statements_per_command"],
            "hand-written SQL",
            higher_is_better=False,
            note=kinds(g),
        ),
        Figure(
            "writes",
            "SQL statements per createOrder with idempotencyKey",
            "stmts",
            i["statements_per_command"],
            s["statements_per_command"],
            "hand-written SQL (no key)",
            higher_is_better=False,
            note=f"{i['orders_per_second']:.0f} orders/s; " + kinds(i),
        ),
        Figure(
            "writes",
            f"pay_order handler called directly ({conc})",
            "payments/s",
            ph["orders_per_second"],
            ps["orders_per_second"],
            "hand-written SQL, same rows",
            note=f"p50 {ph['latency_ms']['p50']:.1f} ms, p99 {ph['latency_ms']['p99']:.1f} ms",
        ),
        Figure(
            "writes",
            "SQL statements per payOrder",
            "stmts",
            ph["statements_per_command"],
            ps["statements_per_command"],
            "hand-written SQL",
            higher_is_better=False,
            note=kinds(ph),
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
        Figure(
            "writes",
            "commits per createOrder",
            "commits",
            g["commits_per_command"],
            s["commits_per_command"],
            "hand-written SQL",
            higher_is_better=False,
        ),
    ]
