"""OutboxRelay: publishes committed outbox rows to Kafka, in id order, from one leader at a time.

Three parts, composed here: `Leadership` (the MySQL named lock and the leader's two sessions),
`Publisher` (the batch pipeline: read, send, await the acks, complete) and `Housekeeping` (the
retention purge and the backlog metrics). A row is completed only after Kafka acked it, so a crash
between publish and completion republishes (at-least-once; consumers are idempotent).

Every wait is bounded (statements, connections, acks), and any failure ends the leader's sessions and
starts over: a relay never stops publishing for good while it runs.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from command.db import WriteDatabase
from command.relay.housekeeping import Housekeeping, Purged
from command.relay.leadership import LeaderSessions, Leadership, lock_name
from command.relay.publishing import PendingRow, Publisher
from shared.logging import get_logger
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry

__all__ = ["OutboxRelay", "PendingRow"]

log = get_logger(__name__)

MIN_POLL_INTERVAL = 0.005


class OutboxRelay:
    def __init__(
        self, db: WriteDatabase, producer: AIOKafkaProducer, settings: Settings, *, telemetry: Telemetry = OFF
    ) -> None:
        self.db = db
        self.settings = settings
        self.leadership = Leadership(db.engine, lock_name(db.engine.url.database))
        self.publisher = Publisher(producer, settings, telemetry=telemetry)
        self.housekeeping = Housekeeping(db.engine, settings)

    @property
    def published(self) -> int:
        return self.publisher.published

    @property
    def is_leader(self) -> bool:
        return self.leadership.sessions is not None

    @property
    def lock_name(self) -> str:
        return self.leadership.name

    async def run(self, stopping: asyncio.Event) -> None:
        """Wait for leadership, then publish until `stopping` is set (the batch in flight completes)."""
        try:
            while not stopping.is_set():
                try:
                    sessions = await self.leadership.take()
                    if sessions is None:
                        await _wait(stopping, self.settings.outbox_poll_interval)
                        continue
                    await self._lead(stopping, sessions)
                except Exception as exc:  # Kafka or MySQL unavailable: nothing is lost, try again
                    log.warning("relay.error", error=repr(exc))
                    await self.release_leadership()
                    await _wait(stopping, min(1.0, self.settings.outbox_poll_interval * 2))
        finally:
            await self.release_leadership()

    async def _lead(self, stopping: asyncio.Event, sessions: LeaderSessions) -> None:
        """Publish while there is a backlog; otherwise wait for work: at once on a local commit, else after an
        interval that starts at MIN_POLL_INTERVAL after a batch and doubles up to OUTBOX_POLL_INTERVAL while idle.

        Under a steady load most commits come a few milliseconds apart: a batch that was not full is not followed
        by an immediate read (it would find nothing or one commit's rows), and the lock is confirmed at most once
        per OUTBOX_POLL_INTERVAL (a lost session fails the next statement anyway)."""
        interval = MIN_POLL_INTERVAL
        confirmed = time.monotonic()
        while not stopping.is_set():
            published = await self.publisher.publish_batch(sessions)
            await self.housekeeping.run_due()
            if published >= self.settings.outbox_batch_size:
                continue
            if published:
                interval = MIN_POLL_INTERVAL
            await self._wait_for_work(stopping, interval)
            if not published:
                interval = min(interval * 2, self.settings.outbox_poll_interval)
            if time.monotonic() - confirmed >= self.settings.outbox_poll_interval:
                if not await self.leadership.confirm():
                    return
                confirmed = time.monotonic()

    async def hold_leadership(self) -> bool:
        """Take the lock if it is free (or already ours)."""
        return await self.leadership.take() is not None

    async def release_leadership(self) -> None:
        """Finish the batch being completed (the lock still held), then give the lock up. Never raises."""
        await self.publisher.stop()
        await self.leadership.release()

    async def publish_batch(self) -> int:
        """One batch of the pipeline (see `Publisher.publish_batch`); needs leadership."""
        sessions = self.leadership.sessions
        assert sessions is not None, "publish_batch needs leadership (hold_leadership)"
        return await self.publisher.publish_batch(sessions)

    async def purge(self) -> Purged:
        return await self.housekeeping.purge()

    async def _wait_for_work(self, stopping: asyncio.Event, timeout: float) -> None:
        waiter = asyncio.ensure_future(self.db.signal.wait(timeout))
        stopper = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopper):
            task.cancel()


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
