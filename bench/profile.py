"""Profiles of the hot paths, for finding what to tune: `python -m bench.profile all|relay|projector|reads|writes`.

Needs pyinstrument, which `make bench` does not (install it into the venv by hand: pip install pyinstrument).
Each target runs the same code as its benchmark, in-process on the bench databases and this run's topics,
and writes an HTML and a text profile under bench/results/profiles/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from bench import projector, reads, relay, writes
from bench.env import RESULTS, BenchEnv
from bench.samples import projection_stream
from command.db import WriteDatabase
from gateway.app import create_app
from gateway.auth import Role
from gateway.feed import ViewFeed
from projection.queries import ReadModel
from projection.runner import build_projection_runner
from projection.store import connect_read_model
from shared.kafka.producer import make_producer
from shared.logging import configure_logging

OUT = RESULTS / "profiles"


@contextlib.asynccontextmanager
async def profiled(name: str) -> AsyncIterator[None]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="enabled")
    profiler.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        profiler.stop()
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{name}.html").write_text(profiler.output_html())
        session = profiler.last_session
        assert session is not None
        session.save(str(OUT / f"{name}.pyisession"))  # re-render: pyinstrument --load=... -r text --show-all
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        (OUT / f"{name}.txt").write_text(text)
        print(f"{name}: {time.perf_counter() - started:.2f} s profiled -> {OUT / name}.html / .txt")


async def profile_relay(env: BenchEnv) -> None:
    settings = env.namespace("relay")
    await env.create_topics(settings)
    db = WriteDatabase(settings.mysql_dsn)
    producer = make_producer(settings)
    await producer.start()
    try:
        await relay.fill_outbox(db, 20_000)
        outbox = relay.OutboxRelay(db, producer, settings)
        assert await outbox.hold_leadership()
        async with profiled("relay"):
            while await outbox.publish_batch():
                pass
        await outbox.release_leadership()
    finally:
        await producer.stop()
        await db.dispose()


async def profile_projector(env: BenchEnv) -> None:
    settings = env.namespace("projector")
    await env.create_topics(settings)
    events = projection_stream(20, 60, 80)
    producer = make_producer(settings)
    await producer.start()
    client, db = await env.reset_read_model()
    try:
        runner = build_projection_runner(db, producer, settings, group_id="bench-unused")
        records = [projector.record_for(settings, e, i) for i, e in enumerate(events)]
        async with profiled("projector"):
            for event, record in zip(events, records, strict=True):
                await runner.handle(event, record)
            await runner.flush()
    finally:
        await producer.stop()
        await client.close()


@contextlib.asynccontextmanager
async def in_process_gateway(env: BenchEnv) -> AsyncIterator[tuple[httpx.AsyncClient, WriteDatabase]]:
    db = WriteDatabase(env.settings.mysql_dsn)
    mongo, read_db = await connect_read_model(env.settings.mongo_uri, env.settings.mongo_database)
    app = create_app(
        write_db=db, read_model=ReadModel(read_db), feed=ViewFeed(env.settings), settings=env.settings, readiness={}
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
            yield http, db
    finally:
        await mongo.close()
        await db.dispose()


async def _sequential(count: int, call: Callable[[], Awaitable[Any]]) -> None:
    for _ in range(count):
        await call()


async def profile_reads(env: BenchEnv) -> None:
    owners = await reads.seed(env)
    order_ids = sorted(owners)
    rng = random.Random(1)
    admin = env.headers(Role.ADMIN)
    async with in_process_gateway(env) as (http, _):

        async def products() -> None:
            r = await http.post("/graphql", json={"query": reads.PRODUCTS})
            assert not r.json().get("errors"), r.text

        async def order() -> None:
            oid = rng.choice(order_ids)
            r = await http.post(
                "/graphql",
                json={"query": reads.ORDER, "variables": {"id": str(oid)}},
                headers=env.headers(Role.CUSTOMER, owners[oid]),
            )
            assert not r.json().get("errors"), r.text

        async def order_admin() -> None:
            r = await http.post(
                "/graphql", json={"query": reads.ORDER, "variables": {"id": str(rng.choice(order_ids))}}, headers=admin
            )
            assert not r.json().get("errors"), r.text

        for name, call in (("reads-products", products), ("reads-order", order), ("reads-order-admin", order_admin)):
            await _sequential(20, call)
            async with profiled(name):
                await _sequential(300, call)


async def profile_writes(env: BenchEnv) -> None:
    from decimal import Decimal

    from command.handlers.create_order import CreateOrder, RequestedLine, create_order
    from command.handlers.create_product import CreateProduct, create_product
    from command.handlers.create_user import CreateUser, create_user

    async with in_process_gateway(env) as (http, db):
        user = (await create_user(db, CreateUser("Profiled", f"profiled-{time.time_ns()}@bench.example.com"))).id
        products = [(await create_product(db, CreateProduct(f"P{i}", Decimal("9.99"), 10**7))).id for i in range(4)]
        headers = env.headers(Role.CUSTOMER, user)  # type: ignore[arg-type]

        async def place() -> None:
            items = [{"productId": str(p), "quantity": 1} for p in random.sample(products, 2)]
            variables = {"input": {"userId": str(user), "items": items}, "key": None}
            r = await http.post(
                "/graphql", json={"query": writes.CREATE_ORDER, "variables": variables}, headers=headers
            )
            assert not r.json().get("errors"), r.text

        async def place_directly() -> None:
            lines = tuple(RequestedLine(p, 1) for p in random.sample(products, 2))
            await create_order(db, CreateOrder(user, lines))

        for name, call in (("writes-create-order", place), ("writes-create-order-handler", place_directly)):
            await _sequential(20, call)
            async with profiled(name):
                await _sequential(200, call)


async def profile_all(env: BenchEnv) -> None:
    """The latency benchmark with its `eventshop all` process run under pyinstrument (wall clock, all threads)."""
    import os

    from bench import latency

    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["BENCH_PROFILE_DIR"] = str(OUT)
    try:
        for figure in await latency.run(env, light=30, per_client=10):
            print(f"{figure.name}: {figure.display or figure.eventshop}")
    finally:
        del os.environ["BENCH_PROFILE_DIR"]
    session = OUT / "latency-all.pyisession"
    print(f"all: profile of the eventshop all process -> {session} (view: pyinstrument --load={session} -r text)")


TARGETS = {
    "all": profile_all,
    "relay": profile_relay,
    "projector": profile_projector,
    "reads": profile_reads,
    "writes": profile_writes,
}


async def main(names: list[str]) -> None:
    env = BenchEnv()
    await env.reset_write_model()
    await env.create_topics(env.settings)
    try:
        for name in names:
            await TARGETS[name](env)
    finally:
        await env.delete_topics()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    targets = parser.parse_args().targets or list(TARGETS)
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets {sorted(unknown)}")
    configure_logging("WARNING")
    for noisy in ("aiokafka", "asyncmy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    asyncio.run(main(targets))
