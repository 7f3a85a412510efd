"""Process composition: open the shared resources once, run the chosen components, stop cleanly.

`eventshop all` runs every component in one process; each other command runs one of them. A process
without the gateway serves its Prometheus metrics on HOST:METRICS_PORT when that is set (the gateway
serves them on its own /metrics).
SIGINT/SIGTERM set one `stopping` event: the gateway stops accepting, consumers finish and commit
the batch in hand, the relay finishes its batch, then connections close.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from wsgiref.simple_server import WSGIServer

import uvicorn
from prometheus_client import start_http_server
from pymongo import AsyncMongoClient

from command.db import WriteDatabase
from command.relay import OutboxRelay
from command.stock_worker import StockWorker
from gateway.app import create_app
from gateway.auth import AuthConfigError
from gateway.feed import ViewFeed
from gateway.trusted import ManifestError, TrustedDocuments
from gateway.verifier import TokenVerifier
from projection.queries import ReadModel
from projection.runner import build_projection_runner
from projection.store import connect_read_model
from shared import metrics as process_metrics
from shared.kafka.producer import make_producer, start_with_retry
from shared.kafka.topics import warn_about_topic_settings
from shared.logging import get_logger
from shared.outages import when_available
from shared.settings import Settings, mask_dsn
from shared.telemetry import OFF, Telemetry

log = get_logger(__name__)


class Component(StrEnum):
    GATEWAY = "gateway"
    RELAY = "relay"
    STOCK_WORKER = "stock-worker"
    PROJECTOR = "projector"


@dataclass
class Resources:
    settings: Settings
    write_db: WriteDatabase
    mongo: AsyncMongoClient[dict[str, Any]]
    read_model: ReadModel
    # Named checks behind /readyz; each component adds its own when it runs in this process.
    readiness: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    # The gateway's socket when a supervisor bound it for several workers (eventshop/workers.py); else the
    # gateway binds HOST:PORT itself.
    listening: socket.socket | None = None
    # The process's tracing (one per process, started and shut down by `run`), handed to every component.
    telemetry: Telemetry = OFF

    @classmethod
    async def open(
        cls,
        settings: Settings,
        stopping: asyncio.Event,
        listening: socket.socket | None = None,
        *,
        telemetry: Telemetry = OFF,
    ) -> Resources | None:
        """None when asked to stop while the read model was still unreachable (it is waited for)."""
        connected = await when_available(
            lambda: connect_read_model(settings.mongo_uri, settings.mongo_database), stopping, what="read model"
        )
        if connected is None:
            return None
        mongo, db = connected
        return cls(
            settings, WriteDatabase(settings.mysql_dsn), mongo, ReadModel(db), listening=listening, telemetry=telemetry
        )

    async def close(self) -> None:
        await self.write_db.dispose()
        await self.mongo.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals belong to the runtime, which tells every component to stop


async def run_gateway(res: Resources, stopping: asyncio.Event) -> None:
    async def ping_mysql() -> None:
        async with res.write_db.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def ping_mongo() -> None:
        await res.mongo.admin.command("ping")

    async def ping_kafka() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=res.settings.kafka_bootstrap, request_timeout_ms=2000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    feed = ViewFeed(res.settings)  # its own consumer, no group: every process gets every views.changed message
    feeding = asyncio.create_task(feed.run(stopping))
    sharing = None
    if process_metrics.multiprocess_dir() is not None:
        sharing = asyncio.create_task(process_metrics.share_open_subscriptions(lambda: feed.listener_count, stopping))
    res.readiness.update(mysql=ping_mysql, mongodb=ping_mongo, kafka=ping_kafka, feed=_flag(feed.ready.is_set))
    app = create_app(
        write_db=res.write_db,
        read_model=res.read_model,
        feed=feed,
        settings=res.settings,
        readiness=res.readiness,
        telemetry=res.telemetry,
    )
    config = uvicorn.Config(
        app,
        host=res.settings.host,
        port=res.settings.port,
        log_level="warning",
        lifespan="off",
        ws="auto",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(None if res.listening is None else [res.listening]))
    await _first(stopping.wait(), serving)
    server.should_exit = True
    await serving
    await feeding
    if sharing is not None:
        await sharing


async def run_relay(res: Resources, stopping: asyncio.Event) -> None:
    producer = make_producer(res.settings)
    if not await start_with_retry(producer, stopping):
        return
    try:
        await OutboxRelay(res.write_db, producer, res.settings, telemetry=res.telemetry).run(stopping)
    finally:
        await producer.stop()


async def run_projector(res: Resources, stopping: asyncio.Event) -> None:
    producer = make_producer(res.settings)
    if not await start_with_retry(producer, stopping):
        return
    try:
        runner = build_projection_runner(
            res.read_model.db,
            producer,
            res.settings,
            auto_offset_reset=res.settings.consumer_offset_reset,
            telemetry=res.telemetry,
        )
        res.readiness["projector"] = _flag(lambda: runner.loop.ready)
        await runner.run(stopping)
    finally:
        await producer.stop()


async def run_stock_worker(res: Resources, stopping: asyncio.Event) -> None:
    producer = make_producer(res.settings)
    if not await start_with_retry(producer, stopping):
        return
    try:
        worker = StockWorker(
            res.write_db,
            producer,
            res.settings,
            auto_offset_reset=res.settings.consumer_offset_reset,
            telemetry=res.telemetry,
        )
        res.readiness["stock-worker"] = _flag(lambda: worker.loop.ready)
        await worker.run(stopping)
    finally:
        await producer.stop()


RUNNERS: dict[Component, Callable[[Resources, asyncio.Event], Coroutine[Any, Any, None]]] = {
    Component.GATEWAY: run_gateway,
    Component.RELAY: run_relay,
    Component.STOCK_WORKER: run_stock_worker,
    Component.PROJECTOR: run_projector,
}


async def run(components: list[Component], settings: Settings, listening: socket.socket | None = None) -> bool:
    """Run until SIGINT/SIGTERM or a component fails; True when every component ended cleanly.

    `listening`: the gateway's socket, already bound (a worker of several); else it binds HOST:PORT."""
    if Component.GATEWAY in components and not gateway_may_start(settings):
        return False
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    tracing_of_process = Telemetry.start(settings, service_name(components))
    try:
        return await _run_components(components, settings, stopping, listening, tracing_of_process)
    finally:
        await asyncio.to_thread(tracing_of_process.shutdown)  # exports the spans still buffered


async def _run_components(
    components: list[Component],
    settings: Settings,
    stopping: asyncio.Event,
    listening: socket.socket | None,
    telemetry: Telemetry,
) -> bool:
    try:
        metrics = MetricsEndpoint.start(settings, components)
    except OSError as exc:
        log.error("metrics.port_unavailable", host=settings.host, port=settings.metrics_port, error=repr(exc))
        return False
    res = await Resources.open(settings, stopping, listening, telemetry=telemetry)
    if res is None:
        metrics.stop()
        return True
    failed: list[asyncio.Task[None]] = []
    log.info(
        "eventshop.started",
        components=[c.value for c in components],
        port=settings.port,
        mysql=mask_dsn(settings.mysql_dsn),
        mongodb=mask_dsn(settings.mongo_uri),
    )
    tasks = [asyncio.create_task(RUNNERS[c](res, stopping), name=c.value) for c in components]
    checking = asyncio.create_task(warn_about_topic_settings(settings))  # a warning per differing topic
    try:
        done, _ = await asyncio.wait(
            {*tasks, asyncio.create_task(stopping.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        stopping.set()
        await asyncio.wait(tasks, timeout=30)
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
        for task in failed:
            log.error(
                "eventshop.component_failed",
                component=task.get_name(),
                error=mask_dsn(repr(task.exception())),
                exc_info=task.exception(),
            )
    finally:
        for task in [*tasks, checking]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await res.close()
        metrics.stop()
        log.info("eventshop.stopped")
    return not failed


@dataclass
class MetricsEndpoint:
    """/metrics of a relay, stock worker or projector process (prometheus_client's server, in a thread): those
    processes serve no other HTTP. Off when METRICS_PORT is 0, and when the gateway runs in the process."""

    server: WSGIServer | None = None
    thread: threading.Thread | None = None

    @classmethod
    def start(cls, settings: Settings, components: list[Component]) -> MetricsEndpoint:
        if Component.GATEWAY in components or settings.metrics_port == 0:
            return cls()
        server, thread = start_http_server(settings.metrics_port, addr=settings.host)
        log.info("metrics.serving", host=settings.host, port=server.server_port)
        return cls(server, thread)

    @property
    def port(self) -> int | None:
        return None if self.server is None else int(self.server.server_port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.server = self.thread = None


def service_name(components: list[Component]) -> str:
    """OpenTelemetry's default `service.name`: the component, or `eventshop` for several in one process."""
    return components[0].value if len(components) == 1 else "eventshop"


def gateway_may_start(settings: Settings) -> bool:
    """Refuse an unsafe security configuration before anything opens; warn about a merely risky one."""
    try:
        TokenVerifier.from_settings(settings)
        if settings.trusted_documents is not None:
            TrustedDocuments.load(settings.trusted_documents)
    except (AuthConfigError, ManifestError) as exc:
        log.error("gateway.refused_to_start", reason=str(exc))
        return False
    if not settings.auth_enabled:
        log.warning(
            "gateway.auth_disabled", detail="AUTH_ENABLED=false: every caller acts as admin; never in production"
        )
    elif settings.is_production and settings.graphql_introspection:
        log.warning("gateway.introspection_enabled", detail="set GRAPHQL_INTROSPECTION=false in production")
    if settings.is_production and settings.trusted_documents is None:
        log.warning("gateway.any_document_runs", detail="set TRUSTED_DOCUMENTS to the clients' manifest in production")
    return True


async def _first(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if not task.done():
            task.cancel()


def _flag(is_ready: Callable[[], bool]) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        if not is_ready():
            raise RuntimeError("not ready yet")

    return check
