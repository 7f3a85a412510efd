"""OutboxRelay: publishes committed outbox rows to Kafka, in id order, from one leader at a time.

Leadership is a MySQL named lock (GET_LOCK) held on a dedicated connection: if the process dies,
the server releases it and a standby takes over. A row is completed only after Kafka acked it, so a
crash between publish and completion republishes (at-least-once; consumers are idempotent). Completing
is OUTBOX_COMPLETION: `mark` sets `published_at` and keeps the row until the retention purge (the
default: an audit trail in MySQL, and clearing `published_at` publishes rows again); `delete` removes it
at once, which is cheaper for MySQL than moving the row's `published_at` index entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

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
ACK_TIMEOUT = 30.0
"""Longest wait for a batch's acks (twice the producer's request timeout) before the batch counts as failed."""
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
        self._read_ahead: asyncio.Task[list[PendingRow]] | None = None  # the next batch, read during acks
        self._completing: tuple[list[int], asyncio.Task[None]] | None = None  # acked rows being completed
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
        batch is never overtaken by a later one. The database work around them does overlap: completing a
        batch runs on the leader's second connection while the next one is read and sent, and with
        `delete` a full batch also has the next one read while it waits for its acks (with `mark` that read
        ahead measured slower: it meets the index entries the marking is moving). Reads leave out the rows
        in flight and being completed, so one leader never sends a row twice. A row committed after a read,
        with a lower id than rows in it, goes with a later batch; that never reorders one aggregate's
        events, because a handler writes its outbox rows while it holds the aggregate's row lock, so one
        aggregate's rows commit in id order.
        """
        assert self._leader is not None, "publish_batch needs leadership (hold_leadership)"
        rows = await self._take_read_ahead() or await self._pending(self._completing_ids())
        if not rows:
            await self._finish_completing()
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
        if self.settings.outbox_completion == "delete" and len(rows) == self.settings.outbox_batch_size:
            self._read_ahead = asyncio.create_task(self._pending(ids + self._completing_ids()))
        # Every ack (acks=all) before anything is completed. Bounded: after a broker crash an unacked send can
        # wait for ever; timing out makes this an error like any other (leadership released, rows sent again).
        async with asyncio.timeout(ACK_TIMEOUT):
            await asyncio.gather(*futures)
        RELAY_PUBLISHED.inc(len(rows))
        self.published += len(rows)
        await self._finish_completing()
        self._completing = (ids, asyncio.create_task(self.complete(self._leader.completer, ids)))
        return len(rows)

    async def _pending(self, excluded_ids: list[int]) -> list[PendingRow]:
        # Plain SQL on an autocommit connection: the relay's hot path, where SQLAlchemy's per-row and
        # per-parameter work showed in the profile. Every interpolated value is an int.
        assert self._leader is not None
        excluded = ",".join(str(int(i)) for i in excluded_ids) or "0"
        result = await self._leader.reader.exec_driver_sql(
            "SELECT id, topic, `key`, payload, headers FROM outbox WHERE published_at IS NULL "
            f"AND id NOT IN ({excluded}) ORDER BY id LIMIT {int(self.settings.outbox_batch_size)}"
        )
        rows = cast(Iterable[tuple[int, str, str, str | bytes, object]], result)
        return [PendingRow(id_, topic, key, payload, _headers(headers)) for id_, topic, key, payload, headers in rows]

    async def complete(self, conn: AsyncConnection, ids: list[int]) -> None:
        """Mark or delete rows that Kafka acked (OUTBOX_COMPLETION)."""
        acked = ",".join(str(int(i)) for i in ids)
        if self.settings.outbox_completion == "delete":
            await conn.exec_driver_sql(f"DELETE FROM outbox WHERE id IN ({acked})")
        else:
            await conn.exec_driver_sql(f"UPDATE outbox SET published_at = UTC_TIMESTAMP(6) WHERE id IN ({acked})")

    async def _take_read_ahead(self) -> list[PendingRow]:
        read_ahead, self._read_ahead = self._read_ahead, None
        return await read_ahead if read_ahead is not None else []

    def _completing_ids(self) -> list[int]:
        return self._completing[0] if self._completing is not None else []

    async def _finish_completing(self) -> None:
        """Wait for the batch being completed; a failure surfaces here (its rows are then published again)."""
        completing, self._completing = self._completing, None
        if completing is not None:
            await completing[1]

    async def _stop_pipeline(self) -> None:
        """On an error or when leadership ends: let a running completion finish (while the lock is still
        held, so no standby republishes its rows), then drop the read-ahead."""
        try:
            await self._finish_completing()
        except Exception as exc:  # its rows stay unpublished: the next leader publishes them again
            log.warning("relay.complete_failed", error=repr(exc))
        read_ahead, self._read_ahead = self._read_ahead, None
        if read_ahead is not None:
            read_ahead.cancel()
            await asyncio.gather(read_ahead, return_exceptions=True)  # its outcome no longer matters

    async def purge(self) -> int:
        """Delete published rows older than the retention period, then expired idempotency keys (write-side
        housekeeping that rides along), in small batches. Returns the outbox rows removed."""
        cutoff = db_now() - timedelta(seconds=self.settings.outbox_retention_seconds)
        removed = await self._delete_in_batches(
            "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < :cutoff ORDER BY id LIMIT :limit",
            cutoff=cutoff,
        )
        await self._delete_in_batches(
            "DELETE FROM idempotency_keys WHERE expires_at < :cutoff ORDER BY expires_at LIMIT :limit", cutoff=db_now()
        )
        return removed

    async def _delete_in_batches(self, sql: str, **params: object) -> int:
        removed = 0
        while True:
            async with self.db.engine.begin() as conn:
                result = await conn.execute(text(sql), {**params, "limit": self.settings.outbox_purge_batch})
            removed += result.rowcount
            if result.rowcount < self.settings.outbox_purge_batch:
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
        """Take the lock if it is free (or already ours); the leader reads and completes on its own connections."""
        if self._leader is not None:
            return True
        reader = await self._autocommit_connection()
        try:
            acquired = (await reader.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": self.lock_name})).scalar()
            completer = await self._autocommit_connection() if acquired == 1 else None
        except BaseException:
            await _end_session(reader)  # the server frees a named lock only when its session ends
            raise
        if completer is None:
            await reader.close()  # holds no lock: back to the pool
            return False
        self._leader = Leader(reader, completer)
        log.info("relay.leader")
        return True

    @property
    def is_leader(self) -> bool:
        return self._leader is not None

    async def _autocommit_connection(self) -> AsyncConnection:
        conn = await self.db.engine.connect()
        return await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def _still_leader(self) -> bool:
        """Still holding the lock, with both connections alive (an idle connection may have been dropped)."""
        assert self._leader is not None
        try:
            owner = (
                await self._leader.reader.execute(
                    text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"), {"name": self.lock_name}
                )
            ).scalar()
            await self._leader.completer.exec_driver_sql("SELECT 1")
        except Exception:
            owner = 0
        if owner != 1:
            await self.release_leadership()
            return False
        return True

    async def release_leadership(self) -> None:
        await self._stop_pipeline()
        leader, self._leader = self._leader, None
        if leader is None:
            return
        await _close(leader.completer)
        # The lock's connection never goes back to the pool: a pooled session would keep the lock if
        # RELEASE_LOCK did not run, and no relay could lead until it was recycled. Ending it frees the lock.
        with contextlib.suppress(Exception):
            await leader.reader.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.lock_name})
        await _end_session(leader.reader)


@dataclass(frozen=True)
class Leader:
    reader: AsyncConnection  # holds the lock; reads the outbox
    completer: AsyncConnection  # completes acked rows while the reader goes on


async def _end_session(conn: AsyncConnection) -> None:
    """Close the database session itself (not just return the connection to the pool)."""
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


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
