"""OutboxRelay: publishes committed outbox rows to Kafka, in id order, from one leader at a time.

Leadership is a MySQL named lock (GET_LOCK) held on a dedicated connection: if the process dies,
the server releases it and a standby takes over. A row is deleted only after Kafka acked it, so a crash
between publish and delete republishes (at-least-once; consumers are idempotent). The outbox is a queue,
not a log: Kafka keeps the events, and every row in the outbox is one still to publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
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
MIN_POLL_INTERVAL = 0.005
PURGE_EVERY_SECONDS = 60.0
PURGE_BATCH = 1000
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
        self._deleting: tuple[list[int], asyncio.Task[None]] | None = None  # acked rows being deleted
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
        """Publish the oldest rows of the outbox; returns how many Kafka acked. Needs leadership.

        Kafka sends never overlap: a batch is sent only after every ack of the previous one, so a failed
        batch is never overtaken by a later one. The database work around them does overlap: while a full
        batch waits for its acks the next one is read, and deleting a batch runs while the next is sent,
        on the leader's second connection. Those reads leave out the rows in flight and being deleted, so
        one leader never sends a row twice. A row committed after a read with a lower id than rows in it
        goes with a later batch; that never reorders one aggregate's events, because a handler writes its
        outbox rows while it holds the aggregate's row lock, so one aggregate's rows commit in id order.
        """
        assert self._leader is not None, "publish_batch needs leadership (hold_leadership)"
        rows = await self._take_read_ahead() or await self._pending(self._deleting_ids())
        if not rows:
            await self._finish_deleting()
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
        if len(rows) == self.settings.outbox_batch_size:  # probably more waiting: read it during the acks
            self._read_ahead = asyncio.create_task(self._pending(ids + self._deleting_ids()))
        await asyncio.gather(*futures)  # every ack (acks=all) before anything is deleted
        RELAY_PUBLISHED.inc(len(rows))
        self.published += len(rows)
        await self._finish_deleting()
        self._deleting = (ids, asyncio.create_task(self.delete_published(self._leader.deleter, ids)))
        return len(rows)

    async def _pending(self, excluded_ids: list[int]) -> list[PendingRow]:
        # Plain SQL on an autocommit connection: the relay's hot path, where SQLAlchemy's per-row and
        # per-parameter work showed in the profile. Every interpolated value is an int.
        assert self._leader is not None
        excluded = ",".join(str(int(i)) for i in excluded_ids) or "0"
        result = await self._leader.reader.exec_driver_sql(
            "SELECT id, topic, `key`, payload, headers FROM outbox "
            f"WHERE id NOT IN ({excluded}) ORDER BY id LIMIT {int(self.settings.outbox_batch_size)}"
        )
        rows = cast(Iterable[tuple[int, str, str, str | bytes, object]], result)
        return [PendingRow(id_, topic, key, payload, _headers(headers)) for id_, topic, key, payload, headers in rows]

    async def delete_published(self, conn: AsyncConnection, ids: list[int]) -> None:
        published = ",".join(str(int(i)) for i in ids)
        await conn.exec_driver_sql(f"DELETE FROM outbox WHERE id IN ({published})")

    async def _take_read_ahead(self) -> list[PendingRow]:
        read_ahead, self._read_ahead = self._read_ahead, None
        return await read_ahead if read_ahead is not None else []

    def _deleting_ids(self) -> list[int]:
        return self._deleting[0] if self._deleting is not None else []

    async def _finish_deleting(self) -> None:
        """Wait for the batch being deleted; a failure surfaces here (its rows are then published again)."""
        deleting, self._deleting = self._deleting, None
        if deleting is not None:
            await deleting[1]

    async def _stop_pipeline(self) -> None:
        """On an error or when leadership ends: drop the read-ahead, let a running delete complete."""
        read_ahead, self._read_ahead = self._read_ahead, None
        if read_ahead is not None:
            read_ahead.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await read_ahead
        try:
            await self._finish_deleting()
        except Exception as exc:  # its rows stay in the outbox: the next leader publishes them again
            log.warning("relay.delete_failed", error=repr(exc))

    async def purge_expired_keys(self) -> int:
        """Write-side housekeeping that rides along with the relay: expired idempotency keys, in batches."""
        removed = 0
        while True:
            async with self.db.engine.begin() as conn:
                result = await conn.execute(
                    text("DELETE FROM idempotency_keys WHERE expires_at < :now ORDER BY expires_at LIMIT :limit"),
                    {"now": db_now(), "limit": PURGE_BATCH},
                )
            removed += result.rowcount
            if result.rowcount < PURGE_BATCH:
                return removed

    async def measure_backlog(self) -> None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(text("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox"))).one()
        OUTBOX_BACKLOG.set(row.n)
        OUTBOX_OLDEST_AGE.set(0 if row.oldest is None else max(0.0, (db_now() - row.oldest).total_seconds()))

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_measure >= MEASURE_EVERY_SECONDS:
            self._last_measure = now
            await self.measure_backlog()
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = now
            removed = await self.purge_expired_keys()
            if removed:
                log.info("relay.purged_expired_keys", rows=removed)

    async def _wait_for_work(self, stopping: asyncio.Event, timeout: float) -> None:
        waiter = asyncio.ensure_future(self.db.signal.wait(timeout))
        stopper = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopper):
            task.cancel()

    async def hold_leadership(self) -> bool:
        """Take the lock if it is free (or already ours); the leader reads and deletes on its own connections."""
        if self._leader is not None:
            return True
        reader = await self._autocommit_connection()
        acquired = (await reader.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": self.lock_name})).scalar()
        if acquired != 1:
            await reader.close()
            return False
        try:
            deleter = await self._autocommit_connection()
        except Exception:
            await reader.close()  # closing the connection frees the lock
            raise
        self._leader = Leader(reader, deleter)
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
        await self._stop_pipeline()
        leader, self._leader = self._leader, None
        if leader is None:
            return
        await _close(leader.deleter)
        try:
            await leader.reader.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.lock_name})
        except Exception:
            pass  # closing the connection below frees the lock as well
        await _close(leader.reader)


@dataclass(frozen=True)
class Leader:
    reader: AsyncConnection  # holds the lock; reads the outbox
    deleter: AsyncConnection  # deletes acked rows while the reader goes on


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
