"""The write database: engine, sessions and the transaction every command runs in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from command.outbox import OutboxSignal, outbox_row
from shared.events import Event

DUPLICATE_KEY = 1062


def is_duplicate_key(exc: BaseException, index: str) -> bool:
    """A unique-key violation (MySQL error 1062) on the named index ("PRIMARY" for the primary key)."""
    args: tuple[Any, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return len(args) >= 2 and args[0] == DUPLICATE_KEY and index in str(args[-1])


class Transaction:
    """One unit of work: the session plus the events it will commit to the outbox."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.events: list[Event] = []
        # The rows loaded for the aggregates this transaction changes, by (table, id): the save writes onto
        # them. Held here because the session holds unchanged rows only weakly (a lost one is read again).
        self.rows: dict[tuple[type[Any], int], Any] = {}

    def record(self, *events: Event) -> None:
        """Write the events' outbox rows; call it after the aggregate rows are locked or inserted."""
        self.events.extend(events)
        self.session.add_all(outbox_row(event) for event in events)


class WriteDatabase:
    def __init__(self, dsn: str, *, signal: OutboxSignal | None = None, pool_size: int = 20) -> None:
        self.engine: AsyncEngine = create_async_engine(
            dsn,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_recycle=1800,
            isolation_level="READ COMMITTED",
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.signal = signal or OutboxSignal()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Commit on success, roll back on any exception; wake the relay when events were written."""
        async with self.sessions() as session, session.begin():
            tx = Transaction(session)
            yield tx
        if tx.events:
            self.signal.notify()

    async def dispose(self) -> None:
        await self.engine.dispose()
