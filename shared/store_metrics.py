"""The stores as a client sees them: connections in use and waiting, commands per second and their latency.

MySQL through SQLAlchemy's engine and pool events, MongoDB through pymongo's command and pool listeners, Kafka's
producer in the relay (`KAFKA_SEND_SECONDS`, `KAFKA_SEND_ERRORS`). When the pipeline falls behind, these say which
store is slow or starved of connections; the stores' own exporters (docker-compose.yml) say why.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from pymongo import monitoring
from sqlalchemy import event
from sqlalchemy.engine import Engine

STATEMENTS_KEPT = 1000
"""Statement texts whose histogram a listener remembers (the code sends a few dozen; IN lists make more)."""
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

STORE_COMMANDS = Histogram(
    "eventshop_store_command_duration_seconds",
    "Statements (MySQL) and commands (MongoDB) sent, by store and command, with their latency",
    ["store", "command"],
    buckets=LATENCY_BUCKETS,
)
STORE_ERRORS = Counter(
    "eventshop_store_command_errors_total", "Statements and commands that failed", ["store", "command"]
)
STORE_CONNECTIONS = Gauge(
    "eventshop_store_connections",
    "Pooled connections to a store: in use, or waited for by a caller",
    ["store", "state"],
    multiprocess_mode="livesum",
)
KAFKA_SEND_SECONDS = Histogram(
    "eventshop_kafka_send_duration_seconds",
    "From a relay batch's first send to its last ack (acks=all)",
    buckets=LATENCY_BUCKETS,
)
KAFKA_SEND_ERRORS = Counter("eventshop_kafka_send_errors_total", "Relay batches whose sends failed or timed out")


def instrument_engine(engine: Engine, store: str = "mysql") -> None:
    """Statement latency and pool use of a (sync, or an async engine's `sync_engine`) SQLAlchemy engine."""
    in_use = STORE_CONNECTIONS.labels(store=store, state="in_use")
    STORE_CONNECTIONS.labels(store=store, state="waiting")  # shown at 0 from the start
    by_statement: dict[str, Any] = {}  # the histogram of each statement's verb, found once per statement text

    @event.listens_for(engine, "before_cursor_execute")
    def _started(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        conn.info["eventshop.started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _done(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        started = conn.info.pop("eventshop.started", None)
        if started is not None:
            histogram = by_statement.get(statement)
            if histogram is None:
                if len(by_statement) >= STATEMENTS_KEPT:
                    by_statement.clear()
                histogram = by_statement[statement] = STORE_COMMANDS.labels(store, _verb(statement))
            histogram.observe(time.perf_counter() - started)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        statement_failed(store, context.statement or "")

    @event.listens_for(engine.pool, "checkout")
    def _checkout(*_: Any) -> None:
        in_use.inc()

    @event.listens_for(engine.pool, "checkin")
    def _checkin(*_: Any) -> None:
        in_use.dec()


def statement_failed(store: str, statement: str) -> None:
    """A statement that failed (the engine's listener, and statements run on the driver: command/driver.py)."""
    STORE_ERRORS.labels(store, _verb(statement)).inc()


@contextlib.contextmanager
def waiting_for_connection(store: str) -> Iterator[None]:
    """Counts the callers waiting for a pooled connection (SQLAlchemy's pool has no event for a wait)."""
    waiting = STORE_CONNECTIONS.labels(store=store, state="waiting")
    waiting.inc()
    try:
        yield
    finally:
        waiting.dec()


def _verb(statement: str) -> str:
    word = statement.lstrip().split(None, 1)
    return word[0].upper() if word else "?"


class MongoMetrics(monitoring.CommandListener, monitoring.ConnectionPoolListener):  # type: ignore[misc]
    """pymongo's listener for command latency and pool use (AsyncMongoClient(event_listeners=[...]))."""

    def __init__(self, store: str = "mongodb") -> None:
        self.store = store
        self.in_use = STORE_CONNECTIONS.labels(store=store, state="in_use")
        self.waiting = STORE_CONNECTIONS.labels(store=store, state="waiting")

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Nothing until it ends: the succeeded or failed event carries the duration."""

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        STORE_COMMANDS.labels(self.store, event.command_name).observe(event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        STORE_COMMANDS.labels(self.store, event.command_name).observe(event.duration_micros / 1e6)
        STORE_ERRORS.labels(self.store, event.command_name).inc()

    def connection_check_out_started(self, event: Any) -> None:
        self.waiting.inc()

    def connection_check_out_failed(self, event: Any) -> None:
        self.waiting.dec()

    def connection_checked_out(self, event: Any) -> None:
        self.waiting.dec()
        self.in_use.inc()

    def connection_checked_in(self, event: Any) -> None:
        self.in_use.dec()

    def _not_counted(self, event: Any) -> None:
        """The pool events these metrics do not count."""

    pool_created = pool_ready = pool_cleared = pool_closed = _not_counted
    connection_created = connection_ready = connection_closed = _not_counted
