"""The relay's housekeeping: the retention purge of published outbox rows and of expired idempotency keys
(write-side housekeeping that rides along with the leader), and the outbox backlog metrics.

SQLAlchemy Core on pooled connections: neither is a hot path (a purge a minute, a count a second).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Delete, delete, func, select
from sqlalchemy.dialects.mysql import limit
from sqlalchemy.ext.asyncio import AsyncEngine

from command.models import IdempotencyKey, OutboxRow, db_now
from command.relay.leadership import STATEMENT_TIMEOUT
from shared.logging import get_logger
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shared.settings import Settings

log = get_logger(__name__)

PURGE_EVERY_SECONDS = 60.0
MEASURE_EVERY_SECONDS = 1.0

OUTBOX: Any = OutboxRow.__table__  # type: ignore[attr-defined]
IDEMPOTENCY_KEYS: Any = IdempotencyKey.__table__  # type: ignore[attr-defined]


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
            removed = await self.purge()
            if removed:
                log.info("relay.purged", rows=removed)

    async def purge(self) -> int:
        """Delete published rows older than the retention period, then expired idempotency keys, in small
        batches. Returns the outbox rows removed."""
        cutoff = db_now() - timedelta(seconds=self.settings.outbox_retention_seconds)
        removed = await self._delete_in_batches(
            delete(OUTBOX).where(OUTBOX.c.published_at.is_not(None), OUTBOX.c.published_at < cutoff)
        )
        await self._delete_in_batches(delete(IDEMPOTENCY_KEYS).where(IDEMPOTENCY_KEYS.c.expires_at < db_now()))
        return removed

    async def _delete_in_batches(self, statement: Delete) -> int:
        batch = self.settings.outbox_purge_batch
        removed = 0
        while True:
            async with asyncio.timeout(self.timeout), self.engine.begin() as conn:
                result = await conn.execute(statement.ext(limit(batch)))
            removed += result.rowcount
            if result.rowcount < batch:
                return removed

    async def measure_backlog(self) -> None:
        query = select(func.count(), func.min(OUTBOX.c.created_at)).where(OUTBOX.c.published_at.is_(None))
        async with asyncio.timeout(self.timeout), self.engine.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
        OUTBOX_BACKLOG.set(count)
        OUTBOX_OLDEST_AGE.set(0 if oldest is None else max(0.0, (db_now() - oldest).total_seconds()))
