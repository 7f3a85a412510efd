"""Faults on the real services and processes, under load: nothing is lost and nothing is applied twice.

Each scenario runs the relay, the projector and the stock worker as real `eventshop` processes on a
database pair and topic prefix of its own, keeps customers shopping while something breaks, then
checks that the read model equals the write model (`eventshop verify`'s comparison) and that the
stock adds up exactly: initial stock = stock on the shelf + stock held by orders.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.engine import make_url

from command.db import WriteDatabase
from command.handlers.cancel_order import CancelOrder, cancel_order
from command.handlers.create_order import CreateOrder, OrderLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.pay_order import PayOrder, pay_order
from command.models import PaymentMethod
from devstack import start_service, stop_service
from eventshop.ops.verify import differences
from projection.store import connect_read_model
from shared.errors import DomainError
from shared.kafka import ensure_topics, make_producer
from shared.settings import Settings
from tests.conftest import (
    ROOT,
    GraphQLClient,
    RunningSystem,
    WriteModelProbe,
    delete_topics,
    eventually,
    migrate,
    unique,
)

pytestmark = pytest.mark.slow
EVENTSHOP = str(Path(sys.executable).parent / "eventshop")

CREATE = "mutation($input: CreateUserInput!) { createUser(input: $input) { id version } }"
READ = "query($id: ID!) { user(id: $id) { id name version } }"


async def test_with_kafka_stopped_writes_succeed_and_reach_the_read_model_after_it_restarts(
    gql: GraphQLClient, system: RunningSystem, settings: Settings, probe: WriteModelProbe
) -> None:
    await asyncio.to_thread(stop_service, settings, "kafka")
    try:
        created = await gql.data(CREATE, input={"name": "Outage Olga", "email": f"{unique('olga')}@example.com"})
        user_id = int(created["createUser"]["id"])
        waiting = await probe.scalar(
            "SELECT COUNT(*) FROM outbox WHERE aggregate_id = %s AND topic = 'user.created' AND published_at IS NULL",
            user_id,
        )
        assert waiting == 1  # committed, waiting in the outbox
    finally:
        await asyncio.to_thread(start_service, settings, "kafka")

    async def projected() -> bool:
        return (await gql.data(READ, id=str(user_id)))["user"] is not None

    await eventually(projected, timeout=90)


@dataclass
class Components:
    """The relay, projector and stock worker as separate processes, each killable on its own."""

    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *, instance: str | None = None) -> None:
        """Start `eventshop <name>`; `instance` names a second process of the same command."""
        key = instance or name
        log = (self.log_dir / f"{key}.log").open("a")
        self.procs[key] = subprocess.Popen([EVENTSHOP, name], env=self.env, cwd=ROOT, stdout=log, stderr=log)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, exactly like a crashed machine."""
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}: {self.log(name)}"

    def log(self, name: str, chars: int | None = 3000) -> str:
        text = (self.log_dir / f"{name}.log").read_text()
        return text if chars is None else text[-chars:]


@dataclass
class Shop:
    """Customers who keep ordering, paying and canceling while something breaks."""

    db: WriteDatabase
    users: list[int] = field(default_factory=list)
    initial_stock: dict[int, int] = field(default_factory=dict)
    orders: list[int] = field(default_factory=list)
    refused: int = 0
    unavailable: int = 0

    async def open(self, products: int = 4, stock: int = 40) -> None:
        for _ in range(4):
            user = await create_user(self.db, CreateUser("Fault Customer", f"{unique('fault')}@example.com"))
            self.users.append(user.id)  # type: ignore[arg-type]
        for i in range(products):
            product = await create_product(self.db, CreateProduct(f"Fault item {i}", Decimal("9.90"), stock))
            self.initial_stock[product.id] = stock  # type: ignore[index]

    async def trade(self, orders: int, rng: random.Random) -> None:
        for _ in range(orders):
            try:
                await self._one(rng)
            except DomainError:
                self.refused += 1  # out of stock, already decided: the rules doing their job
            except Exception:
                self.unavailable += 1  # the database is restarting: the client would retry
                await asyncio.sleep(0.2)

    async def _one(self, rng: random.Random) -> None:
        products = rng.sample(sorted(self.initial_stock), k=rng.choice((1, 2)))
        lines = tuple(OrderLine(p, rng.randint(1, 3)) for p in products)
        order = await create_order(self.db, CreateOrder(rng.choice(self.users), lines))
        self.orders.append(order["id"])
        earlier = rng.choice(self.orders)
        action = rng.random()
        if action < 0.25:
            await cancel_order(self.db, CancelOrder(earlier, "changed my mind"))
        elif action < 0.6:
            await pay_order(self.db, PayOrder(earlier, PaymentMethod.PIX))


@dataclass
class FaultLab:
    settings: Settings
    write_db: WriteDatabase
    read_db: Any
    components: Components

    async def settled(self, shop: Shop, timeout: float = 120.0) -> None:
        """Every event published, every order decided, every view equal to the write model."""

        async def quiet() -> list[Any] | None:
            self.components.alive()
            async with self.write_db.engine.connect() as conn:
                pending = (
                    await conn.exec_driver_sql(
                        "SELECT (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL) + "
                        "(SELECT COUNT(*) FROM orders WHERE status = 'CREATED')"
                    )
                ).scalar()
            if pending:
                return None
            return ["settled"] if not await differences(self.write_db, self.read_db) else None

        try:
            await eventually(quiet, timeout=timeout, interval=0.5)
        except AssertionError:
            found = await differences(self.write_db, self.read_db)
            raise AssertionError(
                f"not settled; differences: {found[:10]}\nprojector: {self.components.log('projector')}"
            ) from None
        await self.stock_adds_up(shop)

    async def stock_adds_up(self, shop: Shop) -> None:
        """Nothing reserved twice, released twice or leaked."""
        async with self.write_db.engine.connect() as conn:
            rows = (
                await conn.exec_driver_sql(
                    "SELECT p.id, p.stock, COALESCE(SUM(CASE WHEN o.stock_held THEN i.quantity END), 0) AS held "
                    "FROM products p LEFT JOIN order_items i ON i.product_id = p.id "
                    "LEFT JOIN orders o ON o.id = i.order_id GROUP BY p.id, p.stock"
                )
            ).all()
            accounted = {r.id: r.stock + int(r.held) for r in rows if r.id in shop.initial_stock}
            processed = (
                await conn.exec_driver_sql("SELECT COUNT(*) FROM processed_events WHERE consumer = 'stock-worker'")
            ).scalar()
        assert accounted == shop.initial_stock
        assert all(r.stock >= 0 for r in rows)
        assert processed >= len(shop.orders)  # every order.created was handled (plus the cancellations)


@pytest.fixture(scope="module")
def fault_settings(settings: Settings) -> Settings:
    run = uuid.uuid4().hex[:6]
    url = make_url(settings.mysql_dsn)
    return settings.model_copy(
        update={
            "mysql_dsn": url.set(database=f"{url.database}_faults").render_as_string(hide_password=False),
            "mongo_uri": settings.mongo_uri.rsplit("/", 1)[0] + f"/{settings.mongo_database}_faults_{run}",
            "kafka_topic_prefix": f"faults-{run}.",
            "consumer_retries": 5,
            "consumer_retry_initial": 0.2,
            "consumer_retry_max": 2.0,
        }
    )


@pytest.fixture(scope="module")
async def lab(fault_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultLab]:
    s = fault_settings
    url = make_url(s.mysql_dsn)
    server = WriteDatabase(url.set(database="").render_as_string(hide_password=False))
    async with server.engine.begin() as conn:
        await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{url.database}`")
        await conn.exec_driver_sql(f"CREATE DATABASE `{url.database}`")
    await server.dispose()
    await asyncio.to_thread(migrate, s)
    await ensure_topics(s)
    write_db = WriteDatabase(s.mysql_dsn)
    mongo, read_db = await connect_read_model(s.mongo_uri, s.mongo_database)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "MONGO_", "KAFKA_", "CONSUMER_"))}
    env.update(
        MYSQL_DSN=s.mysql_dsn,
        MONGO_URI=s.mongo_uri,
        KAFKA_BROKERS=s.kafka_brokers,
        KAFKA_TOPIC_PREFIX=s.kafka_topic_prefix,
        CONSUMER_RETRIES=str(s.consumer_retries),
        CONSUMER_RETRY_INITIAL=str(s.consumer_retry_initial),
        CONSUMER_RETRY_MAX=str(s.consumer_retry_max),
        PROJECTOR_GROUP=f"faults-projector-{uuid.uuid4().hex[:6]}",
        STOCK_WORKER_GROUP=f"faults-stock-{uuid.uuid4().hex[:6]}",
    )
    components = Components(env, tmp_path_factory.mktemp("fault-logs"))
    for name in ("relay", "projector", "stock-worker"):
        components.start(name)
    try:
        yield FaultLab(s, write_db, read_db, components)
    finally:
        components.stop_all()
        await write_db.dispose()
        await mongo.drop_database(s.mongo_database)
        await mongo.close()
        await delete_topics(s)


@pytest.fixture
def rng() -> Iterator[random.Random]:
    seed = random.randrange(10**6)
    print(f"fault scenario seed {seed}")
    yield random.Random(seed)


async def under_load(lab: FaultLab, rng: random.Random, fault: Any, orders: int = 40) -> Shop:
    """Shop while `fault()` runs in the middle of the trading, then wait for everything to settle."""
    shop = Shop(lab.write_db)
    await shop.open()
    trading = asyncio.create_task(shop.trade(orders, rng))
    await eventually(lambda: _at_least(shop, orders // 4), timeout=60)
    await fault()
    await trading
    assert shop.orders, "no order was placed"
    await lab.settled(shop)
    return shop


async def _at_least(shop: Shop, count: int) -> bool:
    return len(shop.orders) >= count


async def test_relay_killed_with_sigkill_mid_batch(lab: FaultLab, rng: random.Random) -> None:
    async def fault() -> None:
        lab.components.kill("relay")
        lab.components.start("relay")

    await under_load(lab, rng, fault)


async def test_projector_and_stock_worker_killed_mid_batch(lab: FaultLab, rng: random.Random) -> None:
    async def fault() -> None:
        lab.components.kill("projector")
        lab.components.kill("stock-worker")
        lab.components.start("stock-worker")
        lab.components.start("projector")

    await under_load(lab, rng, fault)


async def test_kafka_stopped_and_restarted_under_load(lab: FaultLab, rng: random.Random) -> None:
    async def fault() -> None:
        await asyncio.to_thread(stop_service, lab.settings, "kafka", True)
        await asyncio.to_thread(start_service, lab.settings, "kafka")

    await under_load(lab, rng, fault)


async def test_mariadb_restarted_under_load(lab: FaultLab, rng: random.Random) -> None:
    async def fault() -> None:
        await asyncio.to_thread(stop_service, lab.settings, "mariadb")
        await asyncio.to_thread(start_service, lab.settings, "mariadb")

    shop = await under_load(lab, rng, fault)
    print(f"orders placed {len(shop.orders)}, refused while the database restarted {shop.unavailable}")


async def test_ferretdb_restarted_under_load(lab: FaultLab, rng: random.Random) -> None:
    async def fault() -> None:
        await asyncio.to_thread(stop_service, lab.settings, "ferretdb")
        await asyncio.to_thread(start_service, lab.settings, "ferretdb")

    await under_load(lab, rng, fault)


async def test_postgresql_restarted_under_load(lab: FaultLab, rng: random.Random) -> None:
    """FerretDB's storage goes away for longer than a message's retries last and comes back: the projector
    waits for it (a message dead-lettered meanwhile would leave the read model short)."""
    waited = lab.components.log("projector", chars=None).count("consumer.waiting_for_infrastructure")

    async def fault() -> None:
        await eventually(lab.read_db["orders"].find_one)  # the projector is at work
        await asyncio.to_thread(stop_service, lab.settings, "postgresql")
        try:

            async def waited_past_the_retries() -> bool:
                log = lab.components.log("projector", chars=None)
                return log.count("consumer.waiting_for_infrastructure") - waited > lab.settings.consumer_retries

            await eventually(waited_past_the_retries, timeout=60, interval=0.5)
        finally:
            await asyncio.to_thread(start_service, lab.settings, "postgresql")

    await under_load(lab, rng, fault)


async def group_members(settings: Settings, group: str) -> list[set[str]]:
    """The topics each member of a consumer group is assigned right now."""
    from aiokafka.protocol.group import MemberAssignment

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (described,) = response.groups  # (error, group, state, protocol type, protocol, members)
    members = []
    for *_, assignment in described[5]:  # (member id, client id, host, metadata, assignment)
        decoded = MemberAssignment.decode(assignment) if assignment else None
        members.append({topic for topic, _ in decoded.assignment} if decoded else set())
    return members


ORDER_TOPICS = ("order.created", "order.reserved", "order.paid", "order.canceled")


async def test_two_projector_processes_in_one_group_lose_no_update(lab: FaultLab, rng: random.Random) -> None:
    """A second projector joins while customers shop: the partitions of one order's topics (and of the
    products' stock topics) are shared by both processes, so both write the same views at the same time. The
    store's version gate must hold across processes: the read model ends equal to the write model."""
    group = lab.components.env["PROJECTOR_GROUP"]

    async def fault() -> None:
        lab.components.start("projector", instance="projector-2")

        async def both_assigned() -> bool:
            members = await group_members(lab.settings, group)
            return len(members) == 2 and all(m & {lab.settings.topic(t) for t in ORDER_TOPICS} for m in members)

        await eventually(both_assigned, timeout=60, interval=0.5)

    try:
        await under_load(lab, rng, fault, orders=80)
        assert len(await group_members(lab.settings, group)) == 2  # both stayed in to the end
    finally:
        lab.components.procs.pop("projector-2").terminate()


async def test_a_poison_message_in_the_middle_of_a_busy_partition(lab: FaultLab, rng: random.Random) -> None:
    async def fault() -> None:
        producer = make_producer(lab.settings)
        await producer.start()
        try:
            for key in (b"1", b"2", b"3"):  # one per partition, in the middle of the traffic
                await producer.send_and_wait(lab.settings.topic("order.created"), b"\x00 not an event", key=key)
        finally:
            await producer.stop()

    await under_load(lab, rng, fault)
