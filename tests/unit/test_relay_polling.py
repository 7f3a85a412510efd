"""The relay honours OUTBOX_POLL_INTERVAL: idle polls back off from a few ms up to it, never beyond."""

from __future__ import annotations

import asyncio
from typing import Any

from command.relay import MIN_POLL_INTERVAL, OutboxRelay
from shared.settings import Settings


class Batches:
    """A publisher whose batches are given: then an empty outbox."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes

    async def publish_batch(self, sessions: Any) -> int:
        return self.sizes.pop(0) if self.sizes else 0


class NothingDue:
    async def run_due(self) -> None:
        return None


class StillLeader:
    async def confirm(self) -> bool:
        return True


class IdleRelay(OutboxRelay):
    """A relay whose outbox stays empty (after `batches`); it records how long it waits between polls."""

    def __init__(self, settings: Settings, polls: int, batches: list[int] | None = None) -> None:
        self.settings = settings
        self.waits: list[float] = []
        self.polls = polls
        self.publisher: Any = Batches(batches or [])
        self.housekeeping: Any = NothingDue()
        self.leadership: Any = StillLeader()

    async def _wait_for_work(self, stopping: asyncio.Event, timeout: float) -> None:
        self.waits.append(timeout)
        if len(self.waits) == self.polls:
            stopping.set()


async def test_idle_polling_backs_off_to_the_configured_interval_and_no_further() -> None:
    relay = IdleRelay(Settings(outbox_poll_interval=0.3), polls=12)
    await relay._lead(asyncio.Event(), sessions=None)  # type: ignore[arg-type]
    assert relay.waits[0] == MIN_POLL_INTERVAL
    assert all(b >= a for a, b in zip(relay.waits, relay.waits[1:], strict=False))
    assert max(relay.waits) == 0.3 and relay.waits[-1] == 0.3


async def test_a_busy_outbox_is_drained_without_waiting() -> None:
    relay = IdleRelay(Settings(outbox_poll_interval=0.3), polls=1, batches=[500, 500, 12])
    await relay._lead(asyncio.Event(), sessions=None)  # type: ignore[arg-type]
    assert relay.waits == [MIN_POLL_INTERVAL]  # three batches back to back, then the first idle wait
