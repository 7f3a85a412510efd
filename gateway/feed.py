"""ViewFeed: this gateway instance's tap on `views.changed`.

Every gateway consumes the topic itself (no consumer group, from the latest offset), so
subscriptions and read-your-writes waits work whichever instance a client is connected to.
A listener may follow several views: an order's subscriber also follows the order's user, whose
rename changes no order document (an order shows its user from the users view at read time). Every
announcement also tells the instance's known totals that its view kind changed (gateway/totals.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer

from gateway.totals import KnownTotals
from projection.store import Doc
from shared.events import AggregateType, Topic, decode_view_change
from shared.kafka.producer import start_with_retry
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)

QUEUE_LIMIT = 1000
SAFETY_RECHECK_SECONDS = 0.5


class Announced(NamedTuple):
    """One `views.changed` message as a listener gets it: the view's kind and its new document."""

    kind: AggregateType
    document: Doc
    """The view's stored form (readers parse it into the view's document model)."""


@dataclass(eq=False)
class Listener:
    """One subscription's inbox. If a client falls too far behind, it is told to resynchronise."""

    queue: asyncio.Queue[Announced] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False
    keys: set[Hashable] = field(default_factory=set)  # what it follows (see ViewFeed.follow)

    def offer(self, announced: Announced) -> None:
        try:
            self.queue.put_nowait(announced)
        except asyncio.QueueFull:
            self.overflowed = True


class ViewFeed:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._listeners: dict[Hashable, set[Listener]] = defaultdict(set)
        self._open: set[Listener] = set()  # each once, however many keys it follows
        self._waiters: dict[Hashable, set[asyncio.Event]] = defaultdict(set)
        self.ready = asyncio.Event()
        self.totals = KnownTotals(settings.totals_max_age_seconds)

    @property
    def listener_count(self) -> int:
        return len(self._open)

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.topic(Topic.VIEWS_CHANGED),
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        if not await start_with_retry(consumer, stopping):
            return
        try:
            for tp in consumer.assignment():
                await consumer.position(tp)  # resolve "latest" now: nothing after this point is missed
            self.ready.set()
            self.totals.following = True
            while not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        self.dispatch(record.value)
        finally:
            self.ready.clear()
            self.totals.following = False
            self.totals.forget()
            await consumer.stop()

    def dispatch(self, raw: bytes | None) -> None:
        try:
            message = decode_view_change(raw or b"")
            kind, doc_id, document = AggregateType(message["kind"]), message["id"], message["document"]
        except Exception as exc:
            log.warning("feed.undecodable", error=repr(exc))
            self.totals.forget()  # which view changed is unknown
            return
        self.totals.changed(kind)
        for event in self._waiters.get((kind, doc_id), ()):
            event.set()
        keys: list[Hashable] = [(kind, doc_id)]
        if kind is AggregateType.ORDER:
            keys += [("order-of-user", document.get("user_id")), ("order-of-user", None)]
        announced = Announced(kind, document)
        for key in keys:
            for listener in self._listeners.get(key, ()):
                listener.offer(announced)

    @contextlib.asynccontextmanager
    async def listen(self, key: Hashable) -> AsyncIterator[Listener]:
        """Register before reading the current state, so no change falls between the two."""
        listener = Listener()
        self._open.add(listener)
        self.follow(listener, key)
        try:
            yield listener
        finally:
            self._open.discard(listener)
            for followed in listener.keys:
                self._listeners[followed].discard(listener)
                if not self._listeners[followed]:
                    del self._listeners[followed]

    def follow(self, listener: Listener, key: Hashable) -> None:
        """Announcements for `key` go to `listener` too, until it stops listening."""
        listener.keys.add(key)
        self._listeners[key].add(listener)

    async def wait_for_version(
        self,
        kind: AggregateType,
        doc_id: int,
        version: int,
        current: Callable[[], Awaitable[int | None]],
        timeout: float,
    ) -> int | None:
        """Wait until `current()` reaches `version`, re-checking on each announcement for (kind, id)."""
        changed = asyncio.Event()
        key = (kind, doc_id)
        self._waiters[key].add(changed)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    seen = await current()
                    if seen is not None and seen >= version:
                        # Read, perhaps before its announcement came: totals of the kind must show it as well.
                        self.totals.changed(kind)
                        return seen
                    # Woken by the announcement; the slow re-check only matters if the feed is down.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), SAFETY_RECHECK_SECONDS)
        except TimeoutError:
            return await current()
        finally:
            self._waiters[key].discard(changed)
            if not self._waiters[key]:
                del self._waiters[key]
