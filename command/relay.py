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
from sqlalchemy import text
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
        self._leader: Leader | None = None
        self._last_purge = 0.0
        self._last_measure = 0.0
        self._marking: tuple[list[int], asyncio.Task[None]] | None = None  # ids being marked published
        # One leader per database (GET_LOCK names are server-wide).
        self.lock_name = f"{LOCK_PREFIX}.{db.engine.url.database}"

    async def run(self, stopping: asyncio.Event) -> None:
        """Wait for leadership, then publish until `stopping` is set (the batch in flight completes)."""
        try:
            while not stopping.is_set():
                try:
                    if not await self.hold_leadership():
                        await _wait(stopping, self.settings.outbox_poll_interval)
                        continue
                    await self._lead(stopping)
                except Exception as exc:  # Kafka or MySQL unavailable: nothing is lost, try again
                    log.warning("relay.error", error=repr(exc))
                    await self.release_leadership()
                    await _wait(stopping, min(1.0, self.settings.outbox_poll_interval * 2))
        finally:
            await self.release_leadership()

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
        """Publish the oldest unpublished rows; returns how many Kafka acked. Needs leadership.

        Kafka sends never overlap: a batch is sent only after every ack of the previous one, so a failed
        batch cannot be overtaken by a later one. Marking a batch (the slowest step: MySQL moves an index
        entry per row) runs while the next batch is read and sent, on the leader's second connection; the
        rows being marked are left out of that read, so one leader never sends a row twice.
        """
        assert self._leader is not None, "publish_batch needs leadership (hold_leadership)"
        rows = await self._pending(self._leader.reader, self._marking_ids())
        if not rows:
            await self._finish_marking()
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
        ids = [row.id for row in rows]
        await asyncio.gather(*futures)  # every ack (acks=all) before anything is marked
        RELAY_PUBLISHED.inc(len(rows))
        self.published += len(rows)
        await self._finish_marking()
        self._marking = (ids, asyncio.create_task(self.mark_published(self._leader.marker, ids)))
        return len(rows)

    async def _pending(self, conn: AsyncConnection, excluded_ids: list[int]) -> list[PendingRow]:
        # Plain SQL on an autocommit connection: the relay's hot path, where SQLAlchemy's per-row and
        # per-parameter work showed in the profile. Every interpolated value is an int.
        excluded = ",".join(str(int(i)) for i in excluded_ids) or "0"
        result = await conn.exec_driver_sql(
            "SELECT id, topic, `key`, payload, headers FROM outbox "
            f"WHERE published_at IS NULL AND id NOT IN ({excluded}) "
            f"ORDER BY id LIMIT {int(self.settings.outbox_batch_size)}"
        )
        return [PendingRow(r.id, r.topic, r.key, r.payload, _headers(r.headers)) for r in result]

    async def mark_published(self, conn: AsyncConnection, ids: list[int]) -> None:
        marked = ",".join(str(int(i)) for i in ids)
        await conn.exec_driver_sql(f"UPDATE outbox SET published_at = UTC_TIMESTAMP(6) WHERE id IN ({marked})")

    def _marking_ids(self) -> list[int]:
        return self._marking[0] if self._marking is not None else []

    async def _finish_marking(self) -> None:
        """Wait for the batch being marked; a failure surfaces here (its rows are then republished)."""
        marking, self._marking = self._marking, None
        if marking is not None:
            await marking[1]

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

    async def hold_leadership(self) -> bool:
        """Take the lock if it is free (or already ours); the leader reads and marks on its own connections."""
        if self._leader is not None:
            return True
        reader = await self._autocommit_connection()
        acquired = (await reader.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": self.lock_name})).scalar()
        if acquired != 1:
            await reader.close()
            return False
        try:
            marker = await self._autocommit_connection()
        except Exception:
            await reader.close()  # closing the connection frees the lock
            raise
        self._leader = Leader(reader, marker)
        log.info("relay.leader")
        return True

    @property
    def is_leader(self) -> bool:
        return self._leader is not None

    async def _autocommit_connection(self) -> AsyncConnection:
        conn = await self.db.engine.connect()
        return await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def _still_leader(self) -> bool:
        assert self._leader is not None
        try:
            owner = (
                await self._leader.reader.execute(
                    text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"), {"name": self.lock_name}
                )
            ).scalar()
        except Exception:
            owner = 0
        if owner != 1:
            await self.release_leadership()
            return False
        return True

    async def release_leadership(self) -> None:
        try:
            await self._finish_marking()
        except Exception as exc:  # its rows stay unmarked: the next leader publishes them again
            log.warning("relay.mark_failed", error=repr(exc))
        leader, self._leader = self._leader, None
        if leader is None:
            return
        await _close(leader.marker)
        try:
            await leader.reader.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.lock_name})
        except Exception:
            pass  # closing the connection below frees the lock as well
        await _close(leader.reader)


@dataclass(frozen=True)
class Leader:
    reader: AsyncConnection  # holds the lock; reads the outbox
    marker: AsyncConnection  # marks acked rows while the reader goes on


async def _close(conn: AsyncConnection) -> None:
    try:
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
