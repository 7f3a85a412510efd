"""Labs: environments of a test's own on the shared services, and the pipeline that runs on them.

A lab is a MySQL database, a read model and a topic prefix (so consumer groups too) that no other test,
session or developer sees: a test that wipes tables, rebuilds views, kills processes or counts every event can
do so without disturbing anyone. The write side's workers run either in-process (`running_system`) or as the
real `eventshop` processes (`process_env`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from alembic import command as alembic_command
from alembic.config import Config
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner, Result

from command.db import WriteDatabase
from command.relay import OutboxRelay
from command.stock_worker import StockWorker
from projection.queries import ReadModel
from projection.runner import ProjectionRunner, build_projection_runner
from projection.store import connect_read_model
from shared.events import ALL_TOPICS
from shared.kafka.producer import make_producer
from shared.kafka.topics import ensure_topics
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry

ROOT = Path(__file__).resolve().parent.parent
EVENTSHOP = str(Path(sys.executable).parent / "eventshop")


def migrate(settings: Settings) -> None:
    """Alembic upgrade to head of the database in `settings` (synchronous: run it in a thread from async code)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", settings.mysql_dsn.replace("%", "%%"))
    alembic_command.upgrade(config, "head")


@asynccontextmanager
async def kafka_admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client of the environment's broker for the duration."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def delete_topics(settings: Settings) -> None:
    """Delete every catalog topic (and DLQ twin) of an environment a test made for itself."""
    async with kafka_admin(settings) as admin:
        await admin.delete_topics([settings.topic(t) for t in ALL_TOPICS])


def own_settings(settings: Settings, name: str, **overrides: Any) -> Settings:
    """`settings` moved to an environment of its own, named `name` and a fresh run id: database
    `<db>_<name>_<run>`, read model `<read db>_<name>_<run>`, topics `<prefix><name>-<run>.*` (and the
    consumer groups, named after the prefix)."""
    run = uuid.uuid4().hex[:8]
    url = make_url(settings.mysql_dsn)
    return settings.model_copy(
        update={
            "mysql_dsn": url.set(database=f"{url.database}_{name}_{run}").render_as_string(hide_password=False),
            "mongo_uri": settings.mongo_uri.rsplit("/", 1)[0] + f"/{settings.mongo_database}_{name}_{run}",
            "kafka_topic_prefix": f"{settings.kafka_topic_prefix}{name}-{run}.",
            **overrides,
        }
    )


@dataclass
class Lab:
    """A migrated database, a read model and topics that only this lab's test module uses."""

    settings: Settings
    write_db: WriteDatabase
    mongo: AsyncDatabase[Any]

    @property
    def read_model(self) -> ReadModel:
        return ReadModel(self.mongo)

    async def rows(self, sql: str, *params: Any) -> list[Any]:
        async with self.write_db.engine.connect() as conn:
            return list(await conn.exec_driver_sql(sql, params))


@asynccontextmanager
async def own_database(settings: Settings, *, pool_size: int = 10) -> AsyncIterator[WriteDatabase]:
    """The MySQL database `settings` names (see `own_settings`), created and migrated from nothing to head, and
    dropped when the block ends."""
    url = make_url(settings.mysql_dsn)
    server = WriteDatabase(url.set(database="").render_as_string(hide_password=False), pool_size=1)
    async with server.engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE DATABASE `{url.database}`")
    write_db = WriteDatabase(settings.mysql_dsn, pool_size=pool_size)
    try:
        await asyncio.to_thread(migrate, settings)
        yield write_db
    finally:
        await write_db.dispose()
        async with server.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{url.database}`")
        await server.dispose()


@asynccontextmanager
async def lab_of(settings: Settings, name: str, **overrides: Any) -> AsyncIterator[Lab]:
    """A lab made from `settings` (see `own_settings`), removed again when the block ends: database, read model
    and topics."""
    own = own_settings(settings, name, **overrides)
    async with own_database(own) as write_db:
        await ensure_topics(own)
        client, mongo = await connect_read_model(own.mongo_uri, own.mongo_database)
        try:
            yield Lab(own, write_db, mongo)
        finally:
            await client.drop_database(own.mongo_database)
            await client.close()
            await delete_topics(own)


@dataclass
class RunningSystem:
    relay: OutboxRelay
    projection: ProjectionRunner
    stock_worker: StockWorker


@asynccontextmanager
async def running_system(
    settings: Settings,
    write_db: WriteDatabase,
    mongo: AsyncDatabase[Any],
    *,
    offsets: str = "earliest",
    telemetry: Telemetry = OFF,
) -> AsyncIterator[RunningSystem]:
    """The relay, the projector and the stock worker in-process on the environment of `settings` (consumer groups
    included), traced by `telemetry`, until the block ends; it begins once every consumer has its partitions
    (`offsets`: where a new group starts).

    The relay and the stock worker run on pools of their own, as in their own processes: a test that holds the
    connections of `write_db` must not starve them (nor they it). The commits of the test and of the stock worker
    wake the relay at once, as in one `eventshop all` process: with the stock worker's events left to the relay's
    polling, test_operations' Kafka rebuild now and then misses a product's last stock event (a timing it should
    not depend on: to be looked into in eventshop/ops/rebuild.py)."""
    producer = make_producer(settings)
    await producer.start()
    relay_db = WriteDatabase(settings.mysql_dsn, signal=write_db.signal, pool_size=4)
    stock_db = WriteDatabase(settings.mysql_dsn, signal=write_db.signal, pool_size=4)
    system = RunningSystem(
        OutboxRelay(relay_db, producer, settings, telemetry=telemetry),
        build_projection_runner(mongo, producer, settings, auto_offset_reset=offsets, telemetry=telemetry),
        StockWorker(stock_db, producer, settings, auto_offset_reset=offsets, telemetry=telemetry),
    )
    consumers = (system.projection.loop, system.stock_worker.loop)
    for loop in consumers:
        await loop.start()
    stopping = asyncio.Event()
    tasks = [
        asyncio.create_task(system.relay.run(stopping)),
        asyncio.create_task(system.projection.run(stopping)),
        asyncio.create_task(system.stock_worker.run(stopping)),
    ]
    try:
        await asyncio.gather(*(loop.wait_ready() for loop in consumers))
        yield system
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await producer.stop()
        for db in (relay_db, stock_db):
            await db.dispose()


def service_env(settings: Settings) -> dict[str, str]:
    """The variables that put an `eventshop` command on the services, names and retries of `settings`."""
    return {
        "MYSQL_DSN": settings.mysql_dsn,
        "MONGO_URI": settings.mongo_uri,
        "KAFKA_BROKERS": settings.kafka_brokers,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "PROJECTOR_GROUP": settings.projector_group,
        "STOCK_WORKER_GROUP": settings.stock_worker_group,
        "CONSUMER_RETRIES": str(settings.consumer_retries),
        "CONSUMER_RETRY_INITIAL": str(settings.consumer_retry_initial),
        "CONSUMER_RETRY_MAX": str(settings.consumer_retry_max),
    }


# What a developer's shell may set that would move a test's process elsewhere (or change how it answers).
_OWN_VARIABLES = (
    "MYSQL_",
    "MONGO_",
    "KAFKA_",
    "CONSUMER_",
    "PROJECTOR_",
    "STOCK_WORKER_",
    "ORDER_",
    "JWT_",
    "AUTH_",
    "METRICS_",
)


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The whole environment of an `eventshop` process on `settings`: this one's, without any of the variables
    above that `service_env` and `extra` do not set again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_VARIABLES)}
    return {**env, **service_env(settings), **extra}


async def invoke(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    """`eventshop <args>` in-process on `settings` (the commands run their own event loop, hence the thread)."""
    from eventshop.cli import app  # the whole CLI: only for the tests that run it

    env = {**service_env(settings), "COLUMNS": "250"}  # rich tables unabridged
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), input=stdin, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


async def kill_sessions(db: WriteDatabase) -> int:
    """KILL every other session on the database, as a MariaDB restart or a network cut does to them; how many."""
    async with db.engine.connect() as conn:
        sessions = await conn.exec_driver_sql(
            "SELECT id FROM information_schema.PROCESSLIST WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
        killed = 0
        for (session,) in list(sessions):
            with contextlib.suppress(DBAPIError):  # it ended on its own meanwhile
                await conn.exec_driver_sql(f"KILL CONNECTION {int(session)}")
                killed += 1
    return killed


def scenario_rng(label: str) -> random.Random:
    """A random scenario's generator, its seed printed (shown with a failure) so the run can be repeated."""
    seed = random.randrange(10**6)
    print(f"{label} scenario seed {seed}")
    return random.Random(seed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ConsumerGroup:
    """A consumer group as the broker describes it: its state, and the topics each member is assigned."""

    state: str
    members: dict[str, set[str]]


async def consumer_group(settings: Settings, group_id: str) -> ConsumerGroup:
    from aiokafka.protocol.group import MemberAssignment

    async with kafka_admin(settings) as admin:
        (response,) = await admin.describe_consumer_groups([group_id])
    (group,) = response.groups  # (error, group, state, protocol type, protocol, members)
    error_code, _, state, _, _, described = group[:6]
    assert error_code == 0, group
    members = {}
    for member_id, *_, assignment in described:  # (member id, client id, host, metadata, assignment)
        decoded = MemberAssignment.decode(assignment) if assignment else None
        members[member_id] = {topic for topic, _ in decoded.assignment} if decoded else set()
    return ConsumerGroup(state, members)
