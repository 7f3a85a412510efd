"""Faults on the real services and processes, under load: nothing is lost and nothing is applied twice.

Each scenario runs the relay, the projector and the stock worker as real `eventshop` processes on a lab of its
own (database, read model, topic prefix), keeps customers shopping while something breaks and after it is
repaired, then checks that the fault hit trading (an order was in flight when it began; with MySQL gone, some
orders failed as unavailable, and nothing else failed), that trading went on (orders placed after the repair,
each in the read model), that the read model equals the write model (`eventshop verify`'s comparison, which also
finds no reservation past its deadline) and that the stock adds up exactly: initial stock = stock on the shelf +
stock held by orders. Reservations expire two seconds after they are made, so expiries, with their stock coming
back, go on through every fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from command.db import WriteDatabase
from command.handlers.cancel_order import CancelOrder, cancel_order
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.pay_order import PayOrder, pay_order
from command.models import PaymentMethod
from devstack import start_service, stop_service
from eventshop.ops.verify import differences
from shared.errors import DomainError, ErrorCode
from shared.kafka.producer import make_producer
from shared.outages import MYSQL_CONNECTION_ERRORS
from shared.settings import Settings
from tests.conftest import GraphQLClient, RunningSystem, WriteModelProbe, eventually, unique
from tests.labs import EVENTSHOP, ROOT, Lab, consumer_group, lab_of, process_env, scenario_rng

pytestmark = pytest.mark.slow

CREATE = "mutation($input: CreateUserInput!) { createUser(input: $input) { id version } }"
READ = "query($id: ID!) { user(id: $id) { id name version } }"


def mysql_unavailable(error: BaseException) -> bool:
    """MySQL cannot be reached, or the connection went away under a statement: what a client retries. Nothing
    else is: a bug's error, a rule's refusal or a full pool is not an outage."""
    if not isinstance(error, DBAPIError):
        return False
    code = getattr(error.orig, "args", (None,))[0]
    return error.connection_invalidated or (isinstance(error, OperationalError) and code in MYSQL_CONNECTION_ERRORS)


async def test_only_a_lost_mysql_server_counts_as_unavailable(settings: Settings, write_db: WriteDatabase) -> None:
    """The outage rule the scenarios below trade by, against real failures: no server on the port, a session
    killed under a transaction; and a wrong statement, which is not an outage."""
    nowhere = WriteDatabase(make_url(settings.mysql_dsn).set(port=1).render_as_string(hide_password=False), pool_size=1)
    victim = WriteDatabase(settings.mysql_dsn, pool_size=1)
    failures: dict[str, BaseException] = {}
    try:
        with pytest.raises(DBAPIError) as refused:
            async with nowhere.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        failures["no server"] = refused.value
        with pytest.raises(DBAPIError) as lost:
            async with victim.engine.begin() as conn:
                session = (await conn.exec_driver_sql("SELECT CONNECTION_ID()")).scalar_one()
                async with write_db.engine.connect() as other:
                    await other.exec_driver_sql(f"KILL CONNECTION {int(session)}")
                await conn.exec_driver_sql("SELECT 1")
        failures["session killed"] = lost.value
        with pytest.raises(ProgrammingError) as wrong:
            async with write_db.engine.connect() as conn:
                await conn.exec_driver_sql("SELEC 1")
    finally:
        await nowhere.dispose()
        await victim.dispose()
    assert {what: mysql_unavailable(error) for what, error in failures.items()} == {
        "no server": True,
        "session killed": True,
    }, failures
    assert not mysql_unavailable(wrong.value)
    assert not mysql_unavailable(ConnectionError("not from the database"))


async def test_with_kafka_stopped_writes_succeed_and_reach_the_read_model_after_it_restarts(
    gql: GraphQLClient, system: RunningSystem, settings: Settings, probe: WriteModelProbe
) -> None:
    async def sign_up(name: str) -> int:
        created = await gql.data(CREATE, input={"name": name, "email": f"{unique('olga')}@example.com"})
        return int(created["createUser"]["id"])

    assert await asyncio.to_thread(stop_service, settings, "kafka"), "Kafka is not devstack's: nothing was stopped"
    try:
        during = await sign_up("Outage Olga")  # any error fails: a write needs MySQL only
        waiting = await probe.scalar(
            "SELECT COUNT(*) FROM outbox WHERE aggregate_id = %s AND topic = 'user.created' AND published_at IS NULL",
            during,
        )
        assert waiting == 1  # committed, waiting in the outbox
    finally:
        await asyncio.to_thread(start_service, settings, "kafka")
    after = await sign_up("Olga Again")

    async def projected() -> bool:
        return all([(await gql.data(READ, id=str(user)))["user"] is not None for user in (during, after)])

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


class Outcome(StrEnum):
    DONE = "done"
    REFUSED = "refused"  # a rule said no: out of stock, or the order had moved on (paid, canceled, rejected)
    UNAVAILABLE = "unavailable"  # MySQL was gone: the client would retry


REFUSALS = frozenset({ErrorCode.INSUFFICIENT_STOCK, ErrorCode.INVALID_STATE})
THINK_TIME = 0.05  # between two commands: a steady load, and stock that lasts however long a fault takes
RETRY_AFTER = 0.2  # a client's pause after an outage error


@dataclass(frozen=True)
class Window:
    began: float
    ended: float


@dataclass(frozen=True)
class Attempt:
    """One command a customer sent: when it ran, how it ended, and the order it placed (if it placed one)."""

    began: float
    ended: float
    outcome: Outcome
    placed: int | None = None

    def during(self, window: Window) -> bool:
        return self.began <= window.ended and self.ended >= window.began


@dataclass
class Shop:
    """Customers who keep ordering, paying and canceling while something breaks, until the shop closes."""

    db: WriteDatabase
    users: list[int] = field(default_factory=list)
    initial_stock: dict[int, int] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    busy: asyncio.Event = field(default_factory=asyncio.Event)  # set while a command is in flight
    fault: Window | None = None  # from just before the fault struck to its repair

    async def open(self, products: int = 4, stock: int = 10_000) -> None:
        for _ in range(4):
            user = await create_user(self.db, CreateUser("Fault Customer", f"{unique('fault')}@example.com"))
            self.users.append(user.id)  # type: ignore[arg-type]
        for i in range(products):
            product = await create_product(self.db, CreateProduct(f"Fault item {i}", Decimal("9.90"), stock))
            self.initial_stock[product.id] = stock  # type: ignore[index]

    @property
    def unavailable(self) -> list[Attempt]:
        """The commands that met MySQL gone (a client would retry them)."""
        return [a for a in self.attempts if a.outcome is Outcome.UNAVAILABLE]

    @property
    def orders(self) -> list[int]:
        return [a.placed for a in self.attempts if a.placed is not None]

    def placed_after(self, moment: float) -> list[int]:
        return [a.placed for a in self.attempts if a.placed is not None and a.began > moment]

    async def trade(self, rng: random.Random, closing: asyncio.Event) -> None:
        """Place an order, then pay or cancel an earlier one now and then, until `closing` is set. Refusals and
        outages are recorded; any other error ends the trading (and fails the scenario)."""
        while not closing.is_set():
            placed = await self._attempt(self._place(rng))
            if placed and (action := rng.random()) < 0.6:
                earlier = rng.choice(self.orders)
                if action < 0.25:
                    await self._attempt(cancel_order(self.db, CancelOrder(earlier, "changed my mind")))
                else:
                    await self._attempt(pay_order(self.db, PayOrder(earlier, PaymentMethod.PIX)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), RETRY_AFTER if not placed else THINK_TIME)

    async def _place(self, rng: random.Random) -> int:
        products = rng.sample(sorted(self.initial_stock), k=rng.choice((1, 2)))
        lines = tuple(RequestedLine(p, rng.randint(1, 3)) for p in products)
        order = await create_order(self.db, CreateOrder(rng.choice(self.users), lines))
        return order.id

    async def _attempt(self, command: Awaitable[Any]) -> bool:
        """Run one command and record it; True if it went through."""
        began, placed = time.monotonic(), None
        self.busy.set()
        try:
            result = await command
            outcome, placed = Outcome.DONE, result if isinstance(result, int) else None
        except DomainError as refusal:
            if refusal.code not in REFUSALS:
                raise
            outcome = Outcome.REFUSED
        except DBAPIError as error:
            if not mysql_unavailable(error):
                raise
            outcome = Outcome.UNAVAILABLE
        finally:
            self.busy.clear()
        self.attempts.append(Attempt(began, time.monotonic(), outcome, placed))
        return outcome is Outcome.DONE

    def assert_hit_by(self, window: Window, *, mysql_down: bool) -> None:
        """The fault happened while customers were shopping; with MySQL down some of them were turned away as
        unavailable, otherwise the write side never noticed (no command failed as unavailable)."""
        during = [a for a in self.attempts if a.during(window)]
        assert during, f"no command was in flight during the fault {window}"
        unavailable = self.unavailable
        if mysql_down:
            assert any(a.during(window) for a in unavailable), f"no command failed while MySQL was down: {during}"
        else:
            assert not unavailable, f"MySQL was never down, yet commands failed as unavailable: {unavailable}"

    def assert_trading_went_on_after(self, window: Window) -> None:
        """Every command sent after the repair went through or was refused by a rule; none was unavailable."""
        after = [a for a in self.attempts if a.began > window.ended]
        assert [a for a in after if a.outcome is Outcome.UNAVAILABLE] == [], after
        assert self.placed_after(window.ended), "no order was placed after the fault"


@dataclass
class FaultLab(Lab):
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
            return ["settled"] if not await differences(self.write_db, self.mongo) else None

        try:
            await eventually(quiet, timeout=timeout, interval=0.5)
        except AssertionError:
            found = await differences(self.write_db, self.mongo)
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
            ).scalar_one()
        assert accounted == shop.initial_stock
        assert all(r.stock >= 0 for r in rows)
        assert processed >= len(shop.orders)  # every order.created was handled (plus the cancellations)

    async def projected(self, orders: list[int]) -> None:
        """Each of these orders is in the read model."""
        found = {doc["_id"] async for doc in self.mongo["orders"].find({"_id": {"$in": orders}}, {"_id": 1})}
        assert found == set(orders), f"not in the read model: {sorted(set(orders) - found)}"


PAYMENT_WINDOW = 2


@pytest.fixture(scope="module")
async def lab(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultLab]:
    """Slower retries than the other tests': a message must outlive a service's restart. Unpaid reservations expire
    after `PAYMENT_WINDOW` seconds."""
    retries = {"consumer_retries": 5, "consumer_retry_initial": 0.2, "consumer_retry_max": 2.0}
    async with lab_of(settings, "faults", **retries) as lab:
        expiring = {"ORDER_RESERVATION_TTL_SECONDS": str(PAYMENT_WINDOW), "ORDER_EXPIRY_POLL_INTERVAL": "0.2"}
        components = Components(process_env(lab.settings, **expiring), tmp_path_factory.mktemp("fault-logs"))
        for name in ("relay", "projector", "stock-worker"):
            components.start(name)
        try:
            yield FaultLab(lab.settings, lab.write_db, lab.mongo, components)
        finally:
            components.stop_all()


@pytest.fixture
def rng() -> random.Random:
    return scenario_rng("fault")


async def under_load(
    lab: FaultLab,
    rng: random.Random,
    fault: Callable[[], Awaitable[None]],
    *,
    mysql_down: bool = False,
    before: int = 10,
    after: int = 10,
) -> Shop:
    """Shop, break something with `fault()` while a command is in flight, shop on until `after` orders were placed
    after it; then prove the fault hit trading and trading went on, and wait for everything to settle."""
    shop = Shop(lab.write_db)
    await shop.open()
    closing = asyncio.Event()
    trading = asyncio.create_task(shop.trade(rng, closing))

    async def until(enough: Callable[[], bool]) -> None:
        async def reached() -> bool:
            if trading.done():
                trading.result()  # the error that ended the trading, if one did
                raise AssertionError("the trading stopped")
            return enough()

        await eventually(reached, timeout=120, interval=0.02)

    try:
        await until(lambda: len(shop.orders) >= before)
        await until(shop.busy.is_set)  # nothing awaited from here to the fault: that command is still in flight
        began = time.monotonic()
        await fault()
        window = shop.fault = Window(began, time.monotonic())
        await until(lambda: len(shop.placed_after(window.ended)) >= after)
    finally:
        closing.set()
        await trading
    shop.assert_hit_by(window, mysql_down=mysql_down)
    shop.assert_trading_went_on_after(window)
    await lab.settled(shop)
    await lab.projected(shop.placed_after(window.ended))
    return shop


async def restart(settings: Settings, service: str, *, kill: bool = False) -> None:
    """Stop a backing service (SIGKILL with `kill`) and start it again."""
    assert await asyncio.to_thread(stop_service, settings, service, kill), f"{service} is not devstack's"
    await asyncio.to_thread(start_service, settings, service)


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


async def test_stock_worker_killed_while_reservations_come_due(lab: FaultLab, rng: random.Random) -> None:
    """The expirer runs in the stock worker: SIGKILL it while reservations keep coming due, keep it down until some
    are past their deadline with nothing to expire them, start it again. Each of those ends EXPIRED (or PAID or
    CANCELED, when its customer came first), never twice, its stock back once (the settle's stock count)."""
    overdue: list[int] = []

    def reserved(deadline: str) -> Callable[[], Awaitable[list[int]]]:
        async def ids() -> list[int]:
            query = f"SELECT id FROM orders WHERE status = 'RESERVED' AND reserved_until {deadline} UTC_TIMESTAMP(6)"
            return [row.id for row in await lab.rows(query)]

        return ids

    async def fault() -> None:
        await eventually(reserved("> "), timeout=60, interval=0.1)  # the stock worker is reserving: deadlines ahead
        lab.components.kill("stock-worker")
        try:
            overdue.extend(await eventually(reserved("<"), timeout=PAYMENT_WINDOW + 30, interval=0.2))
        finally:
            lab.components.start("stock-worker")

    shop = await under_load(lab, rng, fault)
    marks = ", ".join(str(order) for order in overdue)
    ended = {row.id: row.status for row in await lab.rows(f"SELECT id, status FROM orders WHERE id IN ({marks})")}
    assert set(ended.values()) <= {"EXPIRED", "PAID", "CANCELED"} and "EXPIRED" in ended.values(), ended
    ends = await lab.rows(
        "SELECT aggregate_id, COUNT(*) AS ends FROM outbox WHERE aggregate_type = 'order'"
        " AND topic IN ('order.expired', 'order.paid', 'order.canceled') GROUP BY aggregate_id HAVING ends > 1"
    )
    assert ends == [], ends  # no order expired twice, nor expired and then paid or canceled
    expired = await lab.rows("SELECT COUNT(*) AS n FROM orders WHERE status = 'EXPIRED'")
    print(f"orders placed {len(shop.orders)}, overdue while no expirer ran {len(overdue)}, expired {expired[0].n}")


async def test_kafka_stopped_and_restarted_under_load(lab: FaultLab, rng: random.Random) -> None:
    await under_load(lab, rng, lambda: restart(lab.settings, "kafka", kill=True))


async def test_mariadb_restarted_under_load(lab: FaultLab, rng: random.Random) -> None:
    """Customers are turned away as unavailable while MariaDB restarts, and only then: every command that met the
    database gone was in flight between the moment it was stopped and its return."""
    shop = await under_load(lab, rng, lambda: restart(lab.settings, "mariadb"), mysql_down=True)
    assert shop.fault is not None
    while_restarting = [a for a in shop.unavailable if a.during(shop.fault)]
    assert while_restarting and while_restarting == shop.unavailable, (shop.fault, shop.unavailable)


async def test_ferretdb_restarted_under_load(lab: FaultLab, rng: random.Random) -> None:
    await under_load(lab, rng, lambda: restart(lab.settings, "ferretdb"))


async def test_postgresql_restarted_under_load(lab: FaultLab, rng: random.Random) -> None:
    """FerretDB's storage goes away for longer than a message's retries last and comes back: the projector
    waits for it (a message dead-lettered meanwhile would leave the read model short)."""
    waited = lab.components.log("projector", chars=None).count("consumer.waiting_for_infrastructure")

    async def fault() -> None:
        await eventually(lab.mongo["orders"].find_one)  # the projector is at work
        assert await asyncio.to_thread(stop_service, lab.settings, "postgresql"), "postgresql is not devstack's"
        try:

            async def waited_past_the_retries() -> bool:
                log = lab.components.log("projector", chars=None)
                return log.count("consumer.waiting_for_infrastructure") - waited > lab.settings.consumer_retries

            await eventually(waited_past_the_retries, timeout=60, interval=0.5)
        finally:
            await asyncio.to_thread(start_service, lab.settings, "postgresql")

    await under_load(lab, rng, fault)


ORDER_TOPICS = ("order.created", "order.reserved", "order.paid", "order.canceled")


async def test_two_projector_processes_in_one_group_lose_no_update(lab: FaultLab, rng: random.Random) -> None:
    """A second projector joins while customers shop: the partitions of one order's topics (and of the
    products' stock topics) are shared by both processes, so both write the same views at the same time. The
    store's version gate must hold across processes: the read model ends equal to the write model."""
    group = lab.settings.projector_group

    async def fault() -> None:
        lab.components.start("projector", instance="projector-2")

        async def both_assigned() -> bool:
            members = (await consumer_group(lab.settings, group)).members.values()
            return len(members) == 2 and all(m & {lab.settings.topic(t) for t in ORDER_TOPICS} for m in members)

        await eventually(both_assigned, timeout=60, interval=0.5)

    try:
        await under_load(lab, rng, fault, after=30)
        assert len((await consumer_group(lab.settings, group)).members) == 2  # both stayed in to the end
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
