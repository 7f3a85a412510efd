"""ProjectionRunner: routes each event to the projector of its aggregate and announces view changes."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from projection.kinds import projectors
from projection.projectors.base import Projector, ViewChange, apply_many_if_newer, by_topic
from shared.events import Event, Topic, encode_view_change, utcnow
from shared.kafka.consumer import ConsumerLoop, PoisonMessage, decode_event
from shared.metrics import PROJECTION_LAG
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry


class StoredVersions:
    """For the aggregates this process wrote lately, a version the store holds at least (versions only grow).

    An event not newer than that is stale and skipped without a round trip. Catch-ups meet many: a newer event
    of an order (on `order.paid`) is often read before its older ones (on `order.created`). Bounded: the least
    recently seen aggregates are forgotten, and then simply cost the store's own version check again.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._versions: OrderedDict[Hashable, int] = OrderedDict()

    def holds(self, aggregate: Hashable, version: int) -> bool:
        return self._versions.get(aggregate, 0) >= version

    def record(self, aggregate: Hashable, version: int) -> None:
        """After a write of `version` or a refusal of it as stale: either way the store has at least it."""
        self._versions[aggregate] = max(version, self._versions.get(aggregate, 0))
        self._versions.move_to_end(aggregate)
        if len(self._versions) > self.capacity:
            self._versions.popitem(last=False)


Outcome = tuple[ConsumerRecord[bytes, bytes], Event, ViewChange | None]
"""An event the projector wrote, and the view it changed (None: it was stale)."""


def aggregate_lane(event: Event) -> tuple[tuple[str, int], int]:
    """One lane per aggregate, in version order: a poll's events of one aggregate (on several topics) are
    written one after another, oldest first, and different aggregates at the same time."""
    return (event.aggregate_type, event.aggregate_id), event.aggregate_version


class ProjectionRunner:
    def __init__(
        self,
        projectors: Sequence[Projector[Any]],
        producer: AIOKafkaProducer,
        settings: Settings,
        *,
        group_id: str | None = None,
        auto_offset_reset: str = "earliest",
        telemetry: Telemetry = OFF,
    ) -> None:
        self.routes: dict[Topic, Projector[Any]] = by_topic(projectors)
        self.producer = producer
        self.settings = settings
        self.views_changed = settings.topic(Topic.VIEWS_CHANGED)
        self._announcements: list[asyncio.Future[Any]] = []
        self.stored = StoredVersions()
        self.loop: ConsumerLoop[Event] = ConsumerLoop(
            settings=settings,
            name="projector",
            group_id=group_id or settings.projector_group,
            topics=sorted(settings.topic(t) for t in self.routes),
            handle=self.handle,
            decode=decode_event,
            producer=producer,
            auto_offset_reset=auto_offset_reset,
            before_commit=self.flush,
            sequence=aggregate_lane,
            handle_batch=self.handle_batch,
            telemetry=telemetry,
        )

    def belongs(self, record: ConsumerRecord[bytes, bytes], event: Event) -> bool:
        """An event of a type this runner projects, on that type's own topic."""
        return event.event_type in self.routes and self.settings.topic(event.event_type) == record.topic

    async def handle(self, event: Event, record: ConsumerRecord[bytes, bytes]) -> None:
        """One event alone (the way of a poll whose batch failed, and with tracing on)."""
        if not self.belongs(record, event):
            raise PoisonMessage(f"event type {event.event_type} does not belong on topic {record.topic}")
        if self.stored.holds((event.aggregate_type, event.aggregate_id), event.aggregate_version):
            return  # stale: the store already has this version or a newer one
        changes = await self.routes[event.event_type].apply(event)
        await self._applied([(record, event, changes[0] if changes else None)])

    async def handle_batch(self, messages: list[tuple[ConsumerRecord[bytes, bytes], Event]]) -> None:
        """A poll at once: of each aggregate's events only the newest is written and announced (each carries the
        whole aggregate, so it alone leaves the view as all of them in turn would), one bulk write per collection.

        An event that does not belong on its topic fails the batch: the poll then goes message by message and
        that event to its DLQ."""
        newest: dict[tuple[str, int], tuple[ConsumerRecord[bytes, bytes], Event]] = {}
        for record, event in messages:
            if not self.belongs(record, event):
                raise PoisonMessage(f"event type {event.event_type} does not belong on topic {record.topic}")
            aggregate = (event.aggregate_type, event.aggregate_id)
            if self.stored.holds(aggregate, event.aggregate_version):
                continue
            held = newest.get(aggregate)
            if held is None or held[1].aggregate_version < event.aggregate_version:
                newest[aggregate] = (record, event)
        by_projector: dict[int, list[tuple[ConsumerRecord[bytes, bytes], Event]]] = {}
        for record, event in newest.values():
            by_projector.setdefault(id(self.routes[event.event_type]), []).append((record, event))
        await asyncio.gather(*(self._write(group) for group in by_projector.values()))

    async def _write(self, group: list[tuple[ConsumerRecord[bytes, bytes], Event]]) -> None:
        """One projector's share of a poll: one bulk write of its views (the collections are written at once)."""
        projector = self.routes[group[0][1].event_type]
        changes = await apply_many_if_newer(projector.collection, [projector.view(e) for _, e in group])
        await self._applied([(r, e, change) for (r, e), change in zip(group, changes, strict=True)])

    async def _applied(self, outcomes: list[Outcome]) -> None:
        """After the writes: remember the versions the store holds, and announce each view written."""
        now = utcnow()
        for record, event, change in outcomes:
            self.stored.record((event.aggregate_type, event.aggregate_id), event.aggregate_version)
            if change is None:
                continue
            PROJECTION_LAG.labels(topic=record.topic).observe(max(0.0, (now - event.occurred_at).total_seconds()))
            self._announcements.append(
                await self.producer.send(
                    self.views_changed,
                    encode_view_change(change.kind, change.document),
                    key=f"{change.kind}:{change.document['_id']}".encode(),
                )
            )

    async def flush(self) -> None:
        """Before offsets are committed: every `views.changed` announcement of the batch is acked."""
        pending, self._announcements = self._announcements, []
        await asyncio.gather(*pending)

    async def run(self, stopping: asyncio.Event) -> None:
        await self.loop.run(stopping)


def build_projection_runner(
    db: Any, producer: AIOKafkaProducer, settings: Settings, **options: Any
) -> ProjectionRunner:
    """One projector per kind of aggregate, all fed by one consumer group."""
    return ProjectionRunner(projectors(db), producer, settings, **options)
