"""Fixtures on the real services (MariaDB, Kafka, FerretDB) started by `eventshop devstack up`.

Tests use their own databases (`<name>_test`) and their own consumer groups, so they never touch
the data of a running development system.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from command.db import WriteDatabase
from gateway.app import create_app
from gateway.auth import Role, issue_token
from gateway.feed import ViewFeed
from gateway.limits import Caller
from projection.queries import ReadModel
from projection.store import connect_read_model
from shared.kafka.topics import ensure_topics
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry
from tests.events import EventLog, Mark, WrittenEvent
from tests.labs import RunningSystem, kafka_admin, migrate, running_system

T = TypeVar("T")
TEST_JWT_SECRET = "eventshop-test-secret-0123456789abcdef0123456789"


SESSION = uuid.uuid4().hex[:8]


def make_test_settings(**overrides: Any) -> Settings:
    base = Settings()
    url = make_url(base.mysql_dsn)
    db_name = url.database if (url.database or "").endswith("_test") else f"{url.database}_test"
    # A read model of its own per session: FerretDB scans grow with every document, and concurrent sessions
    # (several developers, CI) must not project into each other's views. Dropped when the session ends.
    mongo_db = f"{base.mongo_database}_test_{SESSION}"
    mongo_uri = base.mongo_uri.rsplit("/", 1)[0] + f"/{mongo_db}"
    values: dict[str, Any] = {
        "mysql_dsn": url.set(database=db_name).render_as_string(hide_password=False),
        "mongo_uri": mongo_uri,
        "consumer_retries": 2,
        "consumer_retry_initial": 0.05,
        "consumer_retry_max": 0.2,
        "outbox_poll_interval": 0.2,
        # Topics of their own: a development system on the same Kafka never sees test events.
        "kafka_topic_prefix": base.kafka_topic_prefix or "test.",
        # Authentication stays on in tests: clients send tokens signed with the test secret.
        "env": "test",
        "auth_enabled": True,
        "jwt_secret": SecretStr(TEST_JWT_SECRET),
        "jwt_public_key_file": None,
        "jwt_jwks_file": None,
        "jwt_algorithms": "HS256,RS256,ES256",
        "jwt_issuer": "eventshop",
        "jwt_audience": "eventshop",
        "graphql_introspection": True,
        # The suites act as one admin for hundreds of mutations; the limits have tests of their own.
        "mutation_rate": 10_000.0,
        "mutation_burst": 10_000,
        **caller_budgets_unset(),
    }
    values.update(overrides)
    return base.model_copy(update=values)


def caller_budgets_unset() -> dict[str, None]:
    """No kind of caller with a budget of its own: each falls back to MUTATION_RATE and MUTATION_BURST (admins and
    services: unlimited), whatever `.env` says."""
    return {f"{caller}_mutation_{part}": None for caller in Caller for part in ("rate", "burst")}


def token_for(settings: Settings, role: Role = Role.ADMIN, user_id: int | str | None = None) -> str:
    """A bearer token the test gateway accepts (customers: `user_id` is their user id)."""
    return issue_token(settings, role, "test-admin" if role is Role.ADMIN else str(user_id), 3600)


def bearer(settings: Settings, role: Role = Role.ADMIN, user_id: int | str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(settings, role, user_id)}"}


async def eventually(probe: Callable[[], Awaitable[T]], *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Poll `probe` until it returns a truthy value; fail with its last result after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_test_settings()


@pytest.fixture(scope="session", autouse=True)
async def topics(settings: Settings) -> None:
    await ensure_topics(settings)


@pytest.fixture(scope="session", autouse=True)
def migrated(settings: Settings) -> None:
    migrate(settings)


@pytest.fixture(scope="session")
async def write_db(settings: Settings) -> AsyncIterator[WriteDatabase]:
    db = WriteDatabase(settings.mysql_dsn)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def mongo(settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client, db = await connect_read_model(settings.mongo_uri, settings.mongo_database)
    yield db
    await client.drop_database(settings.mongo_database)
    await client.close()


@pytest.fixture(scope="session")
def read_model(mongo: AsyncDatabase[dict[str, Any]]) -> ReadModel:
    return ReadModel(mongo)


@pytest.fixture(scope="session")
async def system(
    settings: Settings, write_db: WriteDatabase, mongo: AsyncDatabase[dict[str, Any]]
) -> AsyncIterator[RunningSystem]:
    """Relay, projector and stock worker running in-process for the whole session.

    Consumer groups are new per session (sessions of one environment share its topics, and must not share
    its partitions) and start at the latest offsets, so events of earlier runs are not replayed."""
    run_id = uuid.uuid4().hex[:8]
    groups = {"projector_group": f"test-projector-{run_id}", "stock_worker_group": f"test-stock-{run_id}"}
    async with running_system(settings.model_copy(update=groups), write_db, mongo, offsets="latest") as system:
        yield system


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        return response.json()  # type: ignore[no-any-return]

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The data of a query that must succeed."""
        body = await self.execute(query, **variables)
        assert not body.get("errors"), body
        return body["data"]  # type: ignore[no-any-return]

    async def error_code(self, query: str, **variables: Any) -> str:
        """The single error code of a query that must fail."""
        body = await self.execute(query, **variables)
        assert body.get("errors"), body
        return body["errors"][0]["extensions"]["code"]  # type: ignore[no-any-return]


def gateway_app(
    settings: Settings,
    write_db: WriteDatabase,
    read_model: ReadModel,
    *,
    readiness: dict[str, Callable[[], Awaitable[None]]] | None = None,
    **overrides: Any,
) -> Starlette:
    """The gateway app with these settings changed; its feed is not started (for what waits on no view change)."""
    changed = settings.model_copy(update=overrides)
    return create_app(
        write_db=write_db, read_model=read_model, feed=ViewFeed(changed), settings=changed, readiness=readiness or {}
    )


def asgi_http(app: Starlette, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """An HTTP client of `app` in this process (httpx's ASGI transport, no server)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway", headers=headers)


@asynccontextmanager
async def fed_gateway(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, *, telemetry: Telemetry = OFF
) -> AsyncIterator[tuple[Starlette, ViewFeed]]:
    """The gateway app (traced by `telemetry`) with its own `views.changed` feed, running and assigned its
    partitions (so no change announced from now on is missed) for the duration."""
    feed = ViewFeed(settings)
    stopping = asyncio.Event()
    feeding = asyncio.create_task(feed.run(stopping))
    try:
        await asyncio.wait_for(feed.ready.wait(), 30)
        app = create_app(
            write_db=write_db, read_model=read_model, feed=feed, settings=settings, readiness={}, telemetry=telemetry
        )
        yield app, feed
    finally:
        stopping.set()
        await feeding


@asynccontextmanager
async def in_process_admin(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, *, telemetry: Telemetry = OFF
) -> AsyncIterator[GraphQLClient]:
    """An admin's client of the fed gateway app in-process (no server); real services behind it."""
    async with fed_gateway(settings, write_db, read_model, telemetry=telemetry) as (app, _):
        async with asgi_http(app, bearer(settings)) as http:
            yield GraphQLClient(http)


@pytest.fixture(scope="session")
async def gql(settings: Settings, write_db: WriteDatabase, read_model: ReadModel) -> AsyncIterator[GraphQLClient]:
    async with in_process_admin(settings, write_db, read_model) as admin:
        yield admin


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class WriteModelProbe:
    """Proves what a command wrote, or that a failed one wrote nothing: no new entity row, no new event
    (neither waiting in the outbox nor already published to Kafka, see EventLog)."""

    TABLES = ("users", "products", "orders", "order_items", "order_status_history")

    def __init__(self, db: WriteDatabase, events: EventLog | None = None) -> None:
        self.db = db
        self._events = events

    @property
    def events(self) -> EventLog:
        assert self._events is not None, "this probe reads rows only: give it the session's event_log"
        return self._events

    async def high_water(self) -> HighWater:
        async with self.db.engine.connect() as conn:
            marks: dict[str, int] = {}
            for table in self.TABLES:
                marks[table] = (await conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one()
        return HighWater(marks, await self.events.mark() if self._events else Mark(0))

    async def events_since(self, since: HighWater) -> list[WrittenEvent]:
        return await self.events.since(since.events)

    async def events_of(self, since: HighWater, aggregate_type: str, aggregate_id: int | str) -> list[WrittenEvent]:
        return await self.events.of(since.events, aggregate_type, aggregate_id)

    async def new_events(self, since: HighWater, topics: tuple[str, ...]) -> list[str]:
        return [e.topic for e in await self.events_since(since) if e.topic in topics]

    async def scalar(self, sql: str, *params: Any) -> Any:
        async with self.db.engine.connect() as conn:
            return (await conn.exec_driver_sql(sql, params)).scalar()


class HighWater(dict[str, int]):
    """The highest id of each entity table, and the point reached in the event history."""

    def __init__(self, tables: dict[str, int], events: Mark) -> None:
        super().__init__(tables)
        self.events = events


@pytest.fixture(scope="session")
async def event_log(settings: Settings, write_db: WriteDatabase, topics: None) -> AsyncIterator[EventLog]:
    log = EventLog(settings, write_db)
    await log.start()
    yield log
    await log.stop()


@pytest.fixture
def probe(write_db: WriteDatabase, event_log: EventLog) -> WriteModelProbe:
    return WriteModelProbe(write_db, event_log)


class TopicTail:
    """Reads what was appended to a topic after the moment it was created (no consumer group)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = settings.topic(topic)
        self.start: dict[Any, int] = {}

    async def __aenter__(self) -> TopicTail:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async with kafka_admin(self.settings) as admin:
            (description,) = await admin.describe_topics([self.topic])
        partitions = sorted(p["partition"] for p in description["partitions"])
        assert partitions, f"topic {self.topic} has no partitions"
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
        await self.consumer.start()
        self.consumer.assign(tps)
        self.start = await self.consumer.end_offsets(tps)
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)
        self.read_to = dict(self.start)
        self.records: list[Any] = []
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def collect(self, done: Callable[[list[Any]], bool], timeout: float = 20.0) -> list[Any]:
        """Every record appended since entering, read until `done(records)` holds."""
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: condition not met within {timeout}s ({len(self.records)} read)")
            await self._read_some()
        return self.records

    async def collect_to_end(self, timeout: float = 20.0) -> list[Any]:
        """Every record appended since entering, up to the end the topic has now (late duplicates too)."""
        ends = await self.consumer.end_offsets(list(self.read_to))
        deadline = time.monotonic() + timeout
        while any(self.read_to[tp] < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: not read to its end within {timeout}s")
            await self._read_some()
        return self.records

    async def _read_some(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            self.records.extend(records)
            self.read_to[tp] = records[-1].offset + 1


@pytest.fixture(scope="session")
def relay_settings(settings: Settings) -> Settings:
    """A database of its own, so relay tests control which relay leads (the lock is per database)."""
    url = make_url(settings.mysql_dsn)
    return settings.model_copy(
        update={"mysql_dsn": url.set(database=f"{url.database}_relay").render_as_string(hide_password=False)}
    )


@pytest.fixture(scope="session")
async def relay_db(relay_settings: Settings) -> AsyncIterator[WriteDatabase]:
    url = make_url(relay_settings.mysql_dsn)
    server = WriteDatabase(url.set(database="").render_as_string(hide_password=False))
    async with server.engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
    await server.dispose()
    await asyncio.to_thread(migrate, relay_settings)
    db = WriteDatabase(relay_settings.mysql_dsn)
    async with db.engine.begin() as conn:  # start every session with an empty outbox
        await conn.exec_driver_sql("DELETE FROM outbox")
    yield db
    await db.dispose()
