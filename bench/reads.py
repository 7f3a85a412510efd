"""GraphQL read throughput: `products(first: 20)` and `order(id)` through the real gateway vs a bare schema.

Both servers are uvicorn subprocesses with the same Config on free loopback ports: `eventshop gateway` on
the bench databases, and `python -m bench.bare` (the gateway's types answering from memory, see bare.py),
loaded with the very documents the gateway reads. The same httpx client drives both with CONCURRENCY
keep-alive connections for a fixed time; the first answer of each server is compared, so both serve
identical data. `order(id)` is asked by the order's owner (a customer token: the access policy looks the
owner up in MySQL) and by an admin (no lookup).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx

from bench.env import BenchEnv, Process, free_port
from bench.stats import Figure, latency_summary, rate
from command.db import WriteDatabase
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from gateway.auth import Role
from projection.documents import OrderView, ProductView
from projection.queries import Page, ProductOrder, ReadModel
from projection.store import connect_read_model

CONCURRENCY = 8
PRODUCTS_PAGE = (
    "query { products(first: 20) { nodes { id name description price stock version createdAt updatedAt } "
    "pageInfo { hasNextPage endCursor } } }"
)
PRODUCTS = PRODUCTS_PAGE.replace("endCursor } } }", "endCursor } totalCount } }")  # and the total
ORDER = (
    "query($id: ID!) { order(id: $id) { id userId user { id name email } "
    "items { productId productName quantity unitPrice subtotal } totalAmount status paymentMethod cancelReason "
    "rejectReason history { status at reason } version createdAt updatedAt paidAt canceledAt } }"
)
Request = tuple[str, dict[str, Any], dict[str, str]]  # query, variables, headers
ALL_PRODUCTS: dict[str, Any] = {  # what `products(first: 20)` asks the read model
    "search": None,
    "in_stock": None,
    "min_price": None,
    "max_price": None,
    "order": ProductOrder.ID_ASC,
}


async def seed(env: BenchEnv, products: int = 60, orders: int = 50) -> dict[int, int]:
    """Products and orders written by the real handlers, their views written as the projectors would.
    Returns order id -> owner."""
    db = WriteDatabase(env.settings.mysql_dsn)
    try:
        users = [
            (await create_user(db, CreateUser(f"Reader {i}", f"reader{i}-{uuid.uuid4().hex[:6]}@bench.example.com"))).id
            for i in range(5)
        ]
        made = [
            await create_product(db, CreateProduct(f"Read bench {i:03d}", Decimal("3.99") + i, 1_000_000, "x" * 80))
            for i in range(products)
        ]
        rng = random.Random(5)
        snapshots = []
        for i in range(orders):
            lines = tuple(RequestedLine(p.id, 1 + i % 3) for p in rng.sample(made, 3))  # type: ignore[arg-type]
            snapshots.append(await create_order(db, CreateOrder(users[i % len(users)], lines)))  # type: ignore[arg-type]
    finally:
        await db.dispose()
    client, read_db = await env.reset_read_model()
    try:
        product_docs = [ProductView.of(p).stored() for p in made]
        order_docs = [OrderView.of(s).stored() for s in snapshots]
        for name, docs in ((ProductView.collection, product_docs), (OrderView.collection, order_docs)):
            for start in range(0, len(docs), 50):
                await read_db[name].insert_many(docs[start : start + 50])
    finally:
        await client.close()
    return {s.id: s.user_id for s in snapshots}


async def drive(url: str, next_request: Callable[[], Request], seconds: float) -> tuple[float, list[float]]:
    """CONCURRENCY clients in a closed loop for `seconds` (after a short warm-up); (requests/s, latencies)."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def one() -> float:
            query, variables, headers = next_request()
            t0 = time.perf_counter()
            response = await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
            took = time.perf_counter() - t0
            body = response.json()
            if response.status_code != 200 or body.get("errors") or not body.get("data"):
                raise RuntimeError(f"{url}: {response.status_code} {str(body)[:500]}")
            return took

        async def worker(until: float, took: list[float]) -> None:
            while time.perf_counter() < until:
                took.append(await one())

        warm: list[float] = []
        await asyncio.gather(*(worker(time.perf_counter() + min(0.5, seconds / 4), warm) for _ in range(CONCURRENCY)))
        took: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds, took) for _ in range(CONCURRENCY)))
        return rate(len(took), time.perf_counter() - started), took


async def drive_reads(read: Callable[[], Awaitable[Any]], seconds: float) -> float:
    """The same MongoDB reads the resolvers make (ReadModel), CONCURRENCY workers, no HTTP or GraphQL:
    the ceiling the read model's server sets for any gateway in front of it."""

    async def worker(until: float) -> int:
        done = 0
        while time.perf_counter() < until:
            await read()
            done += 1
        return done

    await asyncio.gather(*(worker(time.perf_counter() + min(0.5, seconds / 4)) for _ in range(CONCURRENCY)))
    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(started + seconds) for _ in range(CONCURRENCY)))
    return rate(sum(counts), time.perf_counter() - started)


async def total_of(page: Awaitable[Page[Any]]) -> int:
    """The page and then its total, as the resolver reads them when `totalCount` is selected."""
    return await (await page).count()


async def answer(url: str, request: Request) -> Any:
    query, variables, headers = request
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return (await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)).json()


class Requests:
    """The four requests the bench drives, each drawn anew per call (a random order, asked by its owner or an admin)."""

    def __init__(self, env: BenchEnv, owners: dict[int, int], rng: random.Random) -> None:
        self.owners, self.order_ids, self.rng = owners, sorted(owners), rng
        self.customer = {uid: env.headers(Role.CUSTOMER, uid) for uid in set(owners.values())}
        self.admin = env.headers(Role.ADMIN)

    def products(self) -> Request:
        return PRODUCTS, {}, {}

    def products_page(self) -> Request:
        return PRODUCTS_PAGE, {}, {}

    def order_as_owner(self) -> Request:
        oid = self.rng.choice(self.order_ids)
        return ORDER, {"id": str(oid)}, self.customer[self.owners[oid]]

    def order_as_admin(self) -> Request:
        return ORDER, {"id": str(self.rng.choice(self.order_ids))}, self.admin

    def named(self) -> tuple[tuple[str, Callable[[], Request]], ...]:
        return (
            ("products(first: 20) with totalCount, anonymous", self.products),
            ("products(first: 20) without totalCount, anonymous", self.products_page),
            ("order(id) as its owner (customer token)", self.order_as_owner),
            ("order(id) as admin", self.order_as_admin),
        )


def servers(env: BenchEnv) -> tuple[Process, Process]:
    """`eventshop gateway` and the bare schema on the bench's read model, not started yet."""
    settings, logs = env.settings, env.log_dir
    gateway = Process.eventshop(["gateway"], env.process_env(settings), logs / "reads-gateway.log")
    port = free_port()
    bare = Process(
        [sys.executable, "-m", "bench.bare", "--port", str(port), "--mongo-uri", settings.mongo_uri,
         "--database", settings.mongo_database],
        dict(os.environ),
        logs / "reads-bare.log",
        port,
    )  # fmt: skip
    return gateway, bare


async def versus_bare(gateway: Process, bare: Process, requests: Requests, seconds: float) -> list[Figure]:
    """Each request through the gateway against the bare schema, after checking both answer the same."""
    figures = []
    for name, make in requests.named():
        sample = make()
        same = (await answer(gateway.url, sample)).get("data") == (await answer(bare.url, sample)).get("data")
        es_rate, es_took = await drive(gateway.url, make, seconds)
        bl_rate, bl_took = await drive(bare.url, make, seconds)
        es, bl = latency_summary(es_took), latency_summary(bl_took)
        figures.append(
            Figure(
                "reads",
                f"GraphQL {name}, {CONCURRENCY} clients",
                "req/s",
                es_rate,
                bl_rate,
                "bare Strawberry schema, same types, objects in memory, same uvicorn setup",
                note=f"p50 {es['p50']:.1f} vs {bl['p50']:.1f} ms, p99 {es['p99']:.1f} vs {bl['p99']:.1f} ms"
                + ("" if same else "; ANSWERS DIFFER"),
                details={"eventshop_latency_ms": es, "baseline_latency_ms": bl, "same_answer": same},
            )
        )
    return figures


async def versus_reads(env: BenchEnv, over_http: list[Figure], requests: Requests, seconds: float) -> list[Figure]:
    """The gateway's products page with its total and its order(id) as admin (figures of `versus_bare`) against the
    MongoDB reads their resolvers make."""
    settings = env.settings
    mongo, read_db = await connect_read_model(settings.mongo_uri, settings.mongo_database)
    try:
        read_model = ReadModel(read_db)
        figures = []
        for name, read, gateway_rate in (
            (
                "products(first: 20) with totalCount",
                lambda: total_of(read_model.list_products(20, None, **ALL_PRODUCTS)),
                over_http[0],
            ),
            ("order(id)", lambda: read_model.order(requests.rng.choice(requests.order_ids)), over_http[3]),
        ):
            figures.append(
                Figure(
                    "reads",
                    f"GraphQL {name} (as above) vs its MongoDB reads alone, {CONCURRENCY} workers",
                    "req/s",
                    gateway_rate.eventshop,
                    await drive_reads(read, seconds),
                    "the resolver's ReadModel calls without HTTP or GraphQL: the read model's ceiling",
                )
            )
        return figures
    finally:
        await mongo.close()


async def run(env: BenchEnv, seconds: float = 3.0) -> list[Figure]:
    requests = Requests(env, await seed(env), random.Random(9))
    gateway, bare = servers(env)
    try:
        await asyncio.gather(gateway.wait_ready(), bare.wait_ready())
        over_http = await versus_bare(gateway, bare, requests, seconds)
        return over_http + await versus_reads(env, over_http, requests, seconds)
    finally:
        gateway.stop()
        bare.stop()
