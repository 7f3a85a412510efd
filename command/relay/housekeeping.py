"""The relay's housekeeping: the retention purge of published outbox rows, expired idempotency keys and old
processed events (write-side housekeeping that rides along with the leader), and the backlog metrics: outbox rows
not yet published, orders not yet decided and reservations past their deadline not yet expired (watched from
here, outside the stock workers that decide and expire them).

Each purge statement deletes at most OUTBOX_PURGE_BATCH rows in its own short transaction, walking the table's
age index from its oldest entry (`ORDER BY` the index's columns): a batch costs its own rows, however many
rows are kept or expired, and locks nothing a writer or the relay's marks wait on for long.
SQLAlchemy Core on pooled connections: neither is a hot path (a purge a minute, a count a second).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Index, TextClause, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from command.models import IdempotencyKey, OrderRow, OutboxRow, ProcessedEvent, db_now
from command.relay.leadership import STATEMENT_TIMEOUT
from shared.events import OrderStatus
from shared.logging import get_logger
from shared.metrics import (
    ORDERS_UNDECIDED,
    ORDERS_UNDECIDED_OLDEST_AGE,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    RESERVATIONS_OVERDUE,
    RESERVATIONS_OVERDUE_OLDEST,
)
from shared.settings import Settings

log = get_logger(__name__)

PURGE_EVERY_SECONDS = 60.0
MEASURE_EVERY_SECONDS = 1.0

OUTBOX: Any = OutboxRow.__table__  # type: ignore[attr-defined]
IDEMPOTENCY_KEYS: Any = IdempotencyKey.__table__  # type: ignore[attr-defined]
PROCESSED_EVENTS: Any = ProcessedEvent.__table__  # type: ignore[attr-defined]
ORDERS: Any = OrderRow.__table__  # type: ignore[attr-defined]


def index_of(table: Any, name: str) -> Index:
    return next(index for index in table.indexes if index.name == name)


def purge_statement(index: Index, batch: int) -> TextClause:
    """DELETE at most `batch` rows whose indexed time (the index's first column) is before `:cutoff`, oldest
    first, in the index's own order: an index walk that stops at `batch` rows. (`ORDER BY id` on the
    (published_at, id) index sorted every expired row for each batch.) NULLs are never before a cutoff, so
    unpublished outbox rows are never purged. SQL text: SQLAlchemy's Delete has no ORDER BY."""
    table: Any = index.table
    columns = [f"`{column.name}`" for column in index.columns]
    return text(
        f"DELETE FROM `{table.name}` WHERE {columns[0]} < :cutoff ORDER BY {', '.join(columns)} LIMIT {int(batch)}"
    )


@dataclass(frozen=True)
class Retention:
    """One table's purge: its age index, and the cutoff before which its rows go."""

    name: str
    index: Index
    cutoff: Callable[[Settings, datetime], datetime]


def retentions() -> tuple[Retention, ...]:
    """Every table the purge keeps short (built when asked, never at import)."""
    return (
        Retention(
            "outbox",
            index_of(OUTBOX, "ix_outbox_published_at"),
            lambda settings, now: now - timedelta(seconds=settings.outbox_retention_seconds),
        ),
        Retention("idempotency_keys", index_of(IDEMPOTENCY_KEYS, "ix_idempotency_keys_expires_at"), lambda _, now: now),
        Retention(
            "processed_events",
            index_of(PROCESSED_EVENTS, "ix_processed_events_processed_at"),
            lambda settings, now: now - timedelta(seconds=settings.processed_events_retention_seconds),
        ),
    )


@dataclass(frozen=True)
class Purged:
    """What one purge removed, per table, and its longest statement (how long a batch held its locks)."""

    rows: dict[str, int]
    longest_batch_seconds: float

    @property
    def outbox(self) -> int:
        return self.rows["outbox"]


class Housekeeping:
    """Runs, between the leader's batches, what is due: the backlog metrics every second, the purge every minute."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        timeout: float = STATEMENT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.timeout = timeout
        self.clock = clock
        self._last_purge: float | None = None
        self._last_measure: float | None = None

    async def run_due(self) -> None:
        now = self.clock()
        if self._last_measure is None or now - self._last_measure >= MEASURE_EVERY_SECONDS:
            self._last_measure = now
            await self.measure_backlog()
        if self._last_purge is None or now - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = now
            purged = await self.purge()
            if any(purged.rows.values()):
                log.info("relay.purged", **purged.rows, longest_batch_seconds=round(purged.longest_batch_seconds, 3))

    async def purge(self) -> Purged:
        """Delete what is past its retention in every table, in bounded batches, each table to its end."""
        now = db_now()
        rows: dict[str, int] = {}
        longest = 0.0
        for retention in retentions():
            statement = purge_statement(retention.index, self.settings.outbox_purge_batch)
            rows[retention.name], slowest = await self._delete_in_batches(
                statement, retention.cutoff(self.settings, now)
            )
            longest = max(longest, slowest)
        return Purged(rows, longest)

    async def _delete_in_batches(self, statement: TextClause, cutoff: datetime) -> tuple[int, float]:
        """Rows removed, and the longest batch in seconds."""
        batch = self.settings.outbox_purge_batch
        removed, longest = 0, 0.0
        while True:
            started = self.clock()
            async with asyncio.timeout(self.timeout), self.engine.begin() as conn:
                result = await conn.execute(statement, {"cutoff": cutoff})
            longest = max(longest, self.clock() - started)
            removed += result.rowcount
            if result.rowcount < batch:
                return removed, longest

    async def measure_backlog(self) -> None:
        """The outbox rows not yet published, the orders not yet decided (CREATED) and the reservations past their
        deadline, each with its oldest's age: three index range scans over what is waiting, whatever the tables
        hold."""
        now = db_now()
        unpublished = select(func.count(), func.min(OUTBOX.c.created_at)).where(OUTBOX.c.published_at.is_(None))
        undecided = select(func.count(), func.min(ORDERS.c.created_at)).where(ORDERS.c.status == OrderStatus.CREATED)
        overdue = select(func.count(), func.min(ORDERS.c.reserved_until)).where(
            ORDERS.c.status == OrderStatus.RESERVED, ORDERS.c.reserved_until <= now
        )
        async with asyncio.timeout(self.timeout), self.engine.connect() as conn:
            waiting = [(await conn.execute(query)).one() for query in (unpublished, undecided, overdue)]
        gauges = (
            (OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE),
            (ORDERS_UNDECIDED, ORDERS_UNDECIDED_OLDEST_AGE),
            (RESERVATIONS_OVERDUE, RESERVATIONS_OVERDUE_OLDEST),
        )
        now = db_now()
        for (count, oldest), (gauge, age) in zip(waiting, gauges, strict=True):
            gauge.set(count)
            age.set(0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
