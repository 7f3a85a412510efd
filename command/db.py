"""The write database: engine, sessions and the transaction every command runs in."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import Pool, PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import greenlet_spawn

from command import driver
from command.driver import DriverResult
from command.outbox import OutboxSignal, inserting_outbox, outbox_values
from shared.events import Event
from shared.store_metrics import instrument_engine, waiting_for_connection

DUPLICATE_KEY = 1062
DEADLOCK = 1213


def is_duplicate_key(exc: BaseException, index: str) -> bool:
    """A unique-key violation (MySQL error 1062) on the named index ("PRIMARY" for the primary key)."""
    args: tuple[Any, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return len(args) >= 2 and args[0] == DUPLICATE_KEY and index in str(args[-1])


def is_deadlock(exc: BaseException) -> bool:
    """InnoDB chose this transaction as a deadlock's victim (MySQL error 1213) and rolled it back."""
    args: tuple[Any, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return bool(args) and args[0] == DEADLOCK


class Transaction:
    """One unit of work on a connection of the engine's pool: Core statements built from the models' tables, run
    by the driver (command/driver.py), and the events it wrote to the outbox."""

    def __init__(self, pooled: PoolProxiedConnection, engine: Engine) -> None:
        self.pooled = pooled  # the pool's connection: its record, its invalidation, the engine's listeners see it
        self.driver: Any = pooled.driver_connection  # asyncmy's: every statement, the commit and the rollback
        self.engine = engine
        self.invalidated = False
        self.events: list[Event] = []
        # The columns of the aggregate rows this transaction locked, by (table name, id), as stored: the save
        # sends only what changed.
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}

    async def execute(self, statement: ClauseElement, params: Any = None) -> DriverResult:
        """One Core statement (a list of params: one multi-row INSERT)."""
        return await driver.run(self, statement, params)

    async def invalidate(self, exc: BaseException | None = None) -> None:
        """Drop the connection (the server went away, or its state is unknown): the pool opens a new one."""
        if not self.invalidated:
            self.invalidated = True
            await greenlet_spawn(self.pooled.invalidate, exc)

    async def write_outbox(self, events: Sequence[Event]) -> None:
        """The events' outbox rows, in one INSERT, in the order given; `store.save` writes them with the rows
        of their aggregates, after every row was locked or inserted, so one aggregate's outbox ids follow its
        commit order. The relay is woken when the transaction commits."""
        if events:
            self.events.extend(events)
            await self.execute(inserting_outbox(), [outbox_values(event) for event in events])


def _ping_when_idle(pool: Pool, idle_seconds: float) -> None:
    """Ping a pooled connection on checkout only when it sat unused for `idle_seconds`: one that died
    with its server meanwhile (a restart, a dropped idle session) is replaced before a caller's statement meets it.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: a round trip per transaction, 5% of a gateway's CPU per
    order under load, where a connection is back in use within milliseconds. A connection that dies while busy
    fails its statement either way; SQLAlchemy then renews the whole pool."""

    @event.listens_for(pool, "checkin")
    def _idle_since(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since >= idle_seconds:
            try:
                dbapi_connection.ping(False)
            except Exception as exc:
                raise DisconnectionError("the pooled connection did not answer a ping") from exc


class WriteDatabase:
    def __init__(
        self, dsn: str, *, signal: OutboxSignal | None = None, pool_size: int = 20, idle_before_ping: float = 1.0
    ) -> None:
        self.engine: AsyncEngine = create_async_engine(
            dsn,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,  # a ping per checkout was a round trip per transaction: `_ping_when_idle` instead
            # The pool's own ROLLBACK when a connection comes back was a round trip after every commit: a
            # Connection ends its transaction itself on close (commit, or rollback of what is still open), and
            # nothing here uses the driver's connection behind SQLAlchemy's back.
            pool_reset_on_return=None,
            pool_recycle=1800,
            isolation_level="READ COMMITTED",
        )
        self.signal = signal or OutboxSignal()
        instrument_engine(self.engine.sync_engine)
        _ping_when_idle(self.engine.sync_engine.pool, idle_before_ping)

    @asynccontextmanager
    async def transaction(self, kind: type[Transaction] = Transaction) -> AsyncIterator[Transaction]:
        """Commit on success, roll back on any exception; wake the relay when events were written.

        On a pooled connection of the engine, without SQLAlchemy's `Connection` around it: MySQL begins a
        transaction with its first statement, and the driver commits or rolls back. Through `AsyncConnection`
        the checkout, begin, commit and close cost about 280 us of CPU per transaction; here about 100 us, 26 of
        them the pool (measured in-process), on every command and every stock decision. The pool, its events
        (store metrics, the idle ping) and the engine's statement and commit listeners are SQLAlchemy's as
        before."""
        with waiting_for_connection("mysql"):
            pooled = await driver.checkout(self.engine.sync_engine)
        tx = kind(pooled, self.engine.sync_engine)
        try:
            try:
                yield tx
            except BaseException:
                await driver.rollback(tx)
                raise
            await driver.commit(tx)
        finally:
            pooled.close()  # back to the pool (no reset round trip: the transaction ended above)
        if tx.events:
            self.signal.notify()

    async def dispose(self) -> None:
        await self.engine.dispose()
