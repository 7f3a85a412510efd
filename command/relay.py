"""OutboxRelay: publishes committed outbox rows to Kafka, in id order, from one leader at a time.

Leadership is a MySQL named lock (GET_LOCK) held on a dedicated connection: if the process dies,
the server releases it and a standby takes over. Rows are marked published only after Kafka acked
them, so a crash between publish and mark republishes (at-least-once; consumers are idempotent).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from command.db import WriteDatabase
from command.models import db_now
from shared import telemetry
from shared.logging import get_logger
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, RELAY_PUBLISHED
from shared.settings import Settings

log = get_logger(__name__)

LOCK_PREFIX = "eventshop.outbox_relay"
MIN_POLL_INTERVAL = 0.005
PURGE_EVERY_SECONDS = 60.0
MEASURE_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class PendingRow:
    id: int
    topic: str
    key: str
    payload: str | bytes
    headers: dict[str, str]


class OutboxRelay:
    def __init__(self, db: WriteDatabase, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.db = db
        self.producer = producer
        self.settings = settings
        self.published = 0
        self.is_leader = False
        self._lock_conn: AsyncConnection | None = None
        self._last_purge = 0.0
        self._last_measure = 0.0
        # One leader per database (GET_LOCK names are server-wide).
        self.lock_name = f"{LOCK_PREFIX}.{db.engine.url.database}"

    async def run(self, stopping: asyncio.Event) -> None:
        """Wait for leadership, then publish until `stopping` is set (the batch in flight completes)."""
        try:
            while not stopping.is_set():
                try:
                    if not await self._hold_leadership():
                        await _wait(stopping, self.settings.outbox_poll_interval)
                        continue
                    await self._lead(stopping)
                except Exception as exc:  # Kafka or MySQL unavailable: nothing is lost, try again
                    log.warning("relay.error", error=repr(exc))
                    await self._release_leadership()
                    await _wait(stopping, min(1.0, self.settings.outbox_poll_interval * 2))
        finally:
            await self._release_leadership()

    async def _lead(self, stopping: asyncio.Event) -> None:
        interval = MIN_POLL_INTERVAL
        while not stopping.is_set():
            published = await self.publish_batch()
            await self._housekeeping()
            if published:
                interval = MIN_POLL_INTERVAL
                continue
            # Adaptive idle polling: wake at once on a local commit, else back off to the configured max.
            await self._wait_for_work(stopping, interval)
            interval = min(interval * 2, self.settings.outbox_poll_interval)
            if not await self._still_leader():
                return

    async def publish_batch(self) -> int:
        """Publish the oldest unpublished rows; returns how many were published and marked."""
        async with self.db.engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT id, topic, `key`, payload, headers FROM outbox "
                    "WHERE published_at IS NULL ORDER BY id LIMIT :limit"
                ),
                {"limit": self.settings.outbox_batch_size},
            )
            rows = [PendingRow(r.id, r.topic, r.key, r.payload, _headers(r.headers)) for r in result]
            await conn.rollback()
        if not rows:
            return 0
        futures = [
            await telemetry.send(  # producer.send, in a PRODUCER span when OpenTelemetry is on
                self.producer,
                self.settings.topic(row.topic),
                value=row.payload.encode() if isinstance(row.payload, str) else row.payload,
                key=row.key.encode(),
                headers=row.headers,
            )
            for row in rows
        ]
        await asyncio.gather(*futures)  # every ack (acks=all) before anything is marked
        await self.mark_published([row.id for row in rows])
        self.published += len(rows)
        RELAY_PUBLISHED.inc(len(rows))
        return len(rows)

    async def mark_published(self, ids: list[int]) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE outbox SET published_at = :now WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"now": db_now(), "ids": ids},
            )

    async def purge(self) -> int:
        """Delete published rows older than the retention period, in small batches."""
        cutoff = db_now() - timedelta(seconds=self.settings.outbox_retention_seconds)
        removed = 0
        while True:
            async with self.db.engine.begin() as conn:
                result = await conn.execute(
                    text(
                        "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < :cutoff "
                        "ORDER BY id LIMIT :limit"
                    ),
                    {"cutoff": cutoff, "limit": self.settings.outbox_purge_batch},
                )
            removed += result.rowcount
            if result.rowcount < self.settings.outbox_purge_batch:
                break
        async with self.db.engine.begin() as conn:  # write-side housekeeping rides along: expired keys
            await conn.execute(
                text("DELETE FROM idempotency_keys WHERE expires_at < :now ORDER BY expires_at LIMIT :limit"),
                {"now": db_now(), "limit": self.settings.outbox_purge_batch},
            )
        return removed

    async def measure_backlog(self) -> None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE published_at IS NULL")
                )
            ).one()
        OUTBOX_BACKLOG.set(row.n)
        OUTBOX_OLDEST_AGE.set(0 if row.oldest is None else max(0.0, (db_now() - row.oldest).total_seconds()))

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_measure >= MEASURE_EVERY_SECONDS:
            self._last_measure = now
            await self.measure_backlog()
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = now
            removed = await self.purge()
            if removed:
                log.info("relay.purged", rows=removed)

    async def _wait_for_work(self, stopping: asyncio.Event, timeout: float) -> None:
        waiter = asyncio.ensure_future(self.db.signal.wait(timeout))
        stopper = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopper):
            task.cancel()

    async def _hold_leadership(self) -> bool:
        if self._lock_conn is not None:
            return True
        conn = await self.db.engine.connect()
        acquired = (await conn.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": self.lock_name})).scalar()
        if acquired != 1:
            await conn.close()
            return False
        self._lock_conn = conn
        self.is_leader = True
        log.info("relay.leader")
        return True

    async def _still_leader(self) -> bool:
        assert self._lock_conn is not None
        try:
            owner = (
                await self._lock_conn.execute(
                    text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"), {"name": self.lock_name}
                )
            ).scalar()
        except Exception:
            owner = 0
        if owner != 1:
            await self._release_leadership()
            return False
        return True

    async def _release_leadership(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        self.is_leader = False
        if conn is None:
            return
        try:
            await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.lock_name})
            await conn.close()
        except Exception:
            await conn.invalidate()


def _headers(raw: object) -> dict[str, str]:
    if isinstance(raw, str | bytes):
        raw = json.loads(raw)
    return dict(raw) if isinstance(raw, dict) else {}


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
