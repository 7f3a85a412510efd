"""The relay honours OUTBOX_POLL_INTERVAL: idle polls back off from a few ms up to it, never beyond."""

from __future__ import annotations

import asyncio
from typing import Any

from command.relay import MIN_POLL_INTERVAL, OutboxRelay
from shared.settings import Settings


class IdleRelay(OutboxRelay):
    """A relay whose outbox stays empty; it records how long it waits between polls."""

    def __init__(self, settings: Settings, polls: int) -> None:
        self.settings = settings
        self.waits: list[float] = []
        self.polls = polls
        self._last_purge = self._last_measure = float("inf")

    async def publish_batch(self) -> int:
        return 0

    async def _housekeeping(self) -> None:
        return None

    async def _wait_for_work(self, stopping: asyncio.Event, timeout: float) -> None:
        self.waits.append(timeout)
        if len(self.waits) == self.polls:
            stopping.set()

    async def _still_leader(self) -> bool:
        return True


async def test_idle_polling_backs_off_to_the_configured_interval_and_no_further() -> None:
    relay = IdleRelay(Settings(outbox_poll_interval=0.3), polls=12)
    await relay._lead(asyncio.Event())
    assert relay.waits[0] == MIN_POLL_INTERVAL
    assert all(b >= a for a, b in zip(relay.waits, relay.waits[1:], strict=False))
    assert max(relay.waits) == 0.3 and relay.waits[-1] == 0.3


async def test_a_busy_outbox_is_drained_without_waiting() -> None:
    class BusyRelay(IdleRelay):
        batches = [500, 500, 12, 0]

        async def publish_batch(self) -> int:
            return self.batches.pop(0) if self.batches else 0

    relay: Any = BusyRelay(Settings(outbox_poll_interval=0.3), polls=1)
    await relay._lead(asyncio.Event())
    assert relay.waits == [MIN_POLL_INTERVAL]  # three batches back to back, then the first idle wait
