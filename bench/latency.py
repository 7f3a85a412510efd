"""End-to-end latency: from a createOrder response to the change in the read model and on a subscription.

A real `eventshop all` process (subprocess, free port, bench databases, this run's topics). Each client is
a customer with its own `orderUpdates(userId)` WebSocket subscription (graphql-transport-ws). In a closed
loop it sends createOrder over HTTP, notes when the response arrived, and waits until its subscription has
shown the order RESERVED (the stock saga) before the next order. Per order:
- read model: the Kafka timestamp of the projector's `views.changed` message for the order's version 1,
  which the projector sends right after the MongoDB write returned (a tail of the topic in this process);
- subscription: when the first message for the order arrived on the client's WebSocket;
- saga: when the subscription showed the order RESERVED (order.created -> stock worker -> order.reserved).
Light load is one client; moderate load is MODERATE_CLIENTS clients at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from aiokafka import AIOKafkaConsumer

from bench.env import BenchEnv, Process
from bench.stats import Figure, latency_summary
from gateway.auth import Role
from shared.events import Topic, decode_view_change
from shared.settings import Settings

MODERATE_CLIENTS = 8
GOAL_P50_MS = 30.0
GOAL_P99_MS = 150.0
WAIT = 15.0  # seconds an order may take to show up before it counts as lost

CREATE_USER = "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }"
CREATE_PRODUCT = "mutation($i: CreateProductInput!) { createProduct(input: $i) { id } }"
CREATE_ORDER = (
    "mutation($i: CreateOrderInput!) { createOrder(input: $i) { id version status totalAmount "
    "items { productId quantity unitPrice } } }"
)
ORDER_UPDATES = "subscription($u: ID) { orderUpdates(userId: $u) { id version status } }"


@dataclass
class Sample:
    order_id: int
    responded: float  # wall clock (time.time()) when the createOrder response arrived
    mutation: float  # request -> response, seconds
    seen: float | None = None  # first subscription message for the order
    reserved: float | None = None  # subscription shows RESERVED


@dataclass
class Tail:
    """`order.created` and `views.changed` read from their end: (what, id) -> Kafka timestamp (seconds,
    ms resolution) of the first record, stamped by its producer: the relay when it sent the order's event,
    the projector when it announced the written view (version 1, or a later one when it skipped 1 as stale)."""

    created_topic: str
    views_topic: str
    brokers: list[str]
    stamps: dict[tuple[str, int], float] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, ready: asyncio.Event, stopping: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.created_topic,
            self.views_topic,
            bootstrap_servers=self.brokers,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while len(consumer.assignment()) < 2:  # every partition of both, no group: once metadata arrived
                await consumer.getmany(timeout_ms=100)
            for tp in consumer.assignment():
                await consumer.position(tp)  # resolve "latest" now: nothing published later is missed
            ready.set()
            while not stopping.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for record in records:
                        if record.topic == self.views_topic:
                            message = decode_view_change(record.value or b"")
                            key = (f"view:{message['kind']}", int(message["id"]))
                        else:
                            key = ("created", int(record.key or b"0"))
                        self.stamps.setdefault(key, record.timestamp / 1000)
                        self.arrived.set()
        finally:
            await consumer.stop()


class Customer:
    """One client: a customer token, an HTTP client and an orderUpdates subscription."""

    def __init__(self, url: str, user_id: int, token: str, products: list[int], seed: int) -> None:
        self.url = url
        self.user_id = user_id
        self.token = token
        self.products = products
        self.rng = random.Random(seed)
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.first_seen: dict[int, float] = {}
        self.reserved_at: dict[int, float] = {}
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribed(self) -> AsyncIterator[None]:
        ws_url = self.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {self.token}"}}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"subscription refused: {ack}")
            payload = {"query": ORDER_UPDATES, "variables": {"u": str(self.user_id)}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            self.reader = asyncio.create_task(self._read(ws))
            try:
                yield
            finally:
                self.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.reader

    async def _read(self, ws: Any) -> None:
        try:
            await self._receive(ws)
        finally:
            self.changed.set()  # wake a waiting client: it sees that the subscription ended

    async def _receive(self, ws: Any) -> None:
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next":
                order = (message["payload"].get("data") or {}).get("orderUpdates")
                if order is None:
                    raise RuntimeError(f"subscription error: {message['payload']}")
                oid = int(order["id"])
                self.first_seen.setdefault(oid, now)
                if order["status"] == "RESERVED":
                    self.reserved_at.setdefault(oid, now)
                self.changed.set()
            elif message["type"] in ("error", "complete"):
                raise RuntimeError(f"subscription ended: {message}")

    async def place_order(self) -> Sample:
        items = [{"productId": str(p), "quantity": self.rng.randint(1, 3)} for p in self.rng.sample(self.products, 2)]
        t0 = time.perf_counter()
        response = await self.http.post(
            "/graphql", json={"query": CREATE_ORDER, "variables": {"i": {"userId": str(self.user_id), "items": items}}}
        )
        responded = time.time()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"createOrder failed: {body['errors']}")
        return Sample(int(body["data"]["createOrder"]["id"]), responded, time.perf_counter() - t0)

    async def until_reserved(self, sample: Sample, timeout: float = WAIT) -> Sample:
        try:
            async with asyncio.timeout(timeout):
                while sample.order_id not in self.reserved_at:
                    if self.reader is not None and self.reader.done():
                        self.reader.result()  # raises what ended the subscription
                        raise RuntimeError("the subscription ended")
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            pass
        sample.seen = self.first_seen.get(sample.order_id)
        sample.reserved = self.reserved_at.get(sample.order_id)
        return sample

    async def session(self, orders: int, warmup: int) -> list[Sample]:
        """Place `warmup` + `orders` orders one after the other; samples of the measured ones."""
        for _ in range(warmup):
            await self.until_reserved(await self.place_order())
        return [await self.until_reserved(await self.place_order()) for _ in range(orders)]


async def seed_customers(url: str, admin: dict[str, str], users: int, products: int) -> tuple[list[int], list[int]]:
    """`users` customers and `products` products with ample stock, created through the gateway's mutations."""
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as http:

        async def call(query: str, **variables: Any) -> dict[str, Any]:
            body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
            if body.get("errors"):
                raise RuntimeError(f"seeding failed: {body['errors']}")
            return body["data"]  # type: ignore[no-any-return]

        tag = str(int(time.time()))
        user_ids = [
            int(
                (await call(CREATE_USER, i={"name": f"Latency {n}", "email": f"lat{n}-{tag}@bench.example.com"}))[
                    "createUser"
                ]["id"]
            )
            for n in range(users)
        ]
        product_ids = [
            int(
                (
                    await call(
                        CREATE_PRODUCT, i={"name": f"Latency product {n}", "price": f"{5 + n}.90", "stock": 100_000_000}
                    )
                )["createProduct"]["id"]
            )
            for n in range(products)
        ]
    return user_ids, product_ids


def _phase(name: str, samples: list[Sample], tail: Tail, placed: int, seconds: float, goal: bool) -> list[Figure]:
    return [
        *_delays(name, samples, tail, goal),
        _breakdown(name, samples, tail),
        Figure(
            "latency",
            f"{name}: orders placed and reserved per second",
            "orders/s",
            placed / seconds,
            note="closed loop: each client waits for RESERVED before its next order",
        ),
    ]


def _delays(name: str, samples: list[Sample], tail: Tail, goal: bool) -> list[Figure]:
    """p50 / p95 / p99 from a createOrder response to the read model, the subscription and the reservation, and of
    the HTTP round trip; the first two against the goal when `goal`."""
    lost = sum(1 for s in samples if s.reserved is None)
    figures = []
    for label, values in (
        ("createOrder response -> read model (views.changed stamp)", read_model_delays(samples, tail)),
        ("createOrder response -> subscription message", [s.seen - s.responded for s in samples if s.seen is not None]),
        (
            "createOrder response -> RESERVED on the subscription (stock saga)",
            [s.reserved - s.responded for s in samples if s.reserved is not None],
        ),
        ("createOrder request -> response (HTTP round trip)", [s.mutation for s in samples]),
    ):
        summary = latency_summary(values)
        met = None
        if goal and "saga" not in label and "round trip" not in label:
            met = summary["p50"] < GOAL_P50_MS and summary["p99"] < GOAL_P99_MS
        figures.append(
            Figure(
                "latency",
                f"{name}: {label}",
                "ms",
                summary["p50"],
                display=f"{summary['p50']:.1f} / {summary['p95']:.1f} / {summary['p99']:.1f} ms",
                goal=f"goal p50 < {GOAL_P50_MS:g} ms, p99 < {GOAL_P99_MS:g} ms" if met is not None else "",
                goal_met=met,
                higher_is_better=False,
                note=f"p50 / p95 / p99 of {int(summary['n'])} orders" + (f"; {lost} not seen in time" if lost else ""),
                details=summary,
            )
        )
    return figures


def _breakdown(name: str, samples: list[Sample], tail: Tail) -> Figure:
    """Where an order's time goes: the relay, the projector and the gateway's feed, from the stamps the tail read."""
    relay, projector, feed = [], [], []
    for s in samples:
        created, view = tail.stamps.get(("created", s.order_id)), tail.stamps.get(("view:order", s.order_id))
        if created is not None and view is not None:
            relay.append(created - s.responded)
            projector.append(view - created)
            if s.seen is not None:
                feed.append(s.seen - view)
    parts = {"relay": latency_summary(relay), "projector": latency_summary(projector), "feed": latency_summary(feed)}
    return Figure(
        "latency",
        f"{name}: where the time goes (p50 / p99)",
        "ms",
        None,
        display=" | ".join(f"{k} {v['p50']:.0f} / {v['p99']:.0f}" for k, v in parts.items()),
        note="relay: response -> order.created sent to Kafka; projector: -> view written and announced; "
        "feed: -> subscription message (gateway feed + WebSocket)",
        details=parts,
    )


def read_model_delays(samples: list[Sample], tail: Tail) -> list[float]:
    """Seconds from each createOrder response to the projector's announcement of the written order view."""
    return [tail.stamps[("view:order", s.order_id)] - s.responded for s in samples if _stamped_view(tail, s)]


def _stamped_view(tail: Tail, sample: Sample) -> bool:
    return ("view:order", sample.order_id) in tail.stamps


async def _stamped(tail: Tail, samples: list[Sample], timeout: float = 5.0) -> None:
    """Until the tail has read the views.changed message of every sample (bounded)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not all(_stamped_view(tail, s) for s in samples):
                tail.arrived.clear()
                await tail.arrived.wait()


@dataclass
class LiveSystem:
    """A running `eventshop all` and the tail of its order.created and views.changed topics."""

    process: Process
    tail: Tail
    exit_code: int | None = None  # set when it stopped


@contextlib.asynccontextmanager
async def live_system(env: BenchEnv, settings: Settings, log: Path, **process_env: str) -> AsyncIterator[LiveSystem]:
    """`eventshop all` on `settings` (extra environment in `process_env`), ready, with its tail reading."""
    process = Process.eventshop(["all"], env.process_env(settings, **process_env), log)
    tail = Tail(settings.topic(Topic.ORDER_CREATED), settings.topic(Topic.VIEWS_CHANGED), settings.kafka_bootstrap)
    stopping, tail_ready = asyncio.Event(), asyncio.Event()
    tailing = asyncio.create_task(tail.run(tail_ready, stopping))
    system = LiveSystem(process, tail)
    try:
        await process.wait_ready()
        ready = asyncio.ensure_future(tail_ready.wait())
        await asyncio.wait({ready, tailing}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if tailing.done():
            tailing.result()  # raises what stopped the tail
        if not tail_ready.is_set():
            raise RuntimeError("the views.changed tail did not start within 30 s")
        yield system
    finally:
        stopping.set()
        system.exit_code = process.stop()  # first: the process must not outlive a failed run
        (tail_outcome,) = await asyncio.gather(tailing, return_exceptions=True)
    if isinstance(tail_outcome, BaseException):
        raise tail_outcome


@contextlib.asynccontextmanager
async def connected(url: str, env: BenchEnv, users: list[int], products: list[int]) -> AsyncIterator[list[Customer]]:
    """One Customer per user id, each subscribed to its orderUpdates."""
    customers = [Customer(url, uid, env.token(Role.CUSTOMER, uid), products, seed=n) for n, uid in enumerate(users)]
    async with contextlib.AsyncExitStack() as stack:
        for c in customers:
            stack.push_async_callback(c.http.aclose)
            await stack.enter_async_context(c.subscribed())
        yield customers


async def light_load(customers: list[Customer], tail: Tail, orders: int) -> tuple[list[Sample], float]:
    """The first customer alone, `orders` orders one after the other (after a warm-up); samples, seconds."""
    await customers[0].session(0, warmup=5)
    t0 = time.perf_counter()
    samples = await customers[0].session(max(1, orders), warmup=0)
    await _stamped(tail, samples)
    return samples, time.perf_counter() - t0


async def moderate_load(customers: list[Customer], tail: Tail, per_client: int) -> tuple[list[Sample], float]:
    """Every customer at once, `per_client` orders each (after a warm-up); samples, seconds."""
    await asyncio.gather(*(c.session(0, warmup=2) for c in customers))
    t0 = time.perf_counter()
    sessions = await asyncio.gather(*(c.session(max(1, per_client), warmup=0) for c in customers))
    elapsed = time.perf_counter() - t0
    samples = [s for session in sessions for s in session]
    await _stamped(tail, samples)
    return samples, elapsed


async def run(env: BenchEnv, light: int = 60, per_client: int = 25) -> list[Figure]:
    settings = env.settings
    await env.reset_write_model()  # no outbox rows left by earlier benchmarks for this relay to publish
    client, _ = await env.reset_read_model()
    await client.close()
    figures: list[Figure] = []
    async with live_system(env, settings, env.log_dir / "latency-all.log") as system:
        url, tail = system.process.url, system.tail
        users, products = await seed_customers(url, env.headers(Role.ADMIN), MODERATE_CLIENTS, 20)
        async with connected(url, env, users, products) as customers:
            samples, seconds = await light_load(customers, tail, light)
            figures += _phase("light (1 client, sequential)", samples, tail, len(samples), seconds, goal=True)
            samples, seconds = await moderate_load(customers, tail, per_client)
            figures += _phase(
                f"moderate ({MODERATE_CLIENTS} clients)", samples, tail, len(samples), seconds, goal=False
            )
    if system.exit_code != 0:
        figures.append(
            Figure("latency", "eventshop all exit code", "", float(system.exit_code or 0), note="NOT a clean shutdown")
        )
    return figures
