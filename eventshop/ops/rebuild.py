"""Rebuilding the read model into fresh collections, then switching readers over to them.

1. Build: fresh collections `<view>_rebuild_<stamp>` get their indexes first, then documents, either from
   the write model's current state (bulk inserts of the views' `ViewDocument.of`, as the projectors make them) or by
   replaying every retained Kafka event through the real projectors aimed at the fresh collections.
2. Switch: per view, `renameCollection` live -> `<view>_old_<stamp>`, then fresh -> live. FerretDB v1
   implements renameCollection (indexes move with the collection) but not `dropTarget: true`, so a view is
   replaced by two renames and its name is missing for the moment in between (milliseconds): a reader then
   finds nothing (an empty page, a null), never an error. A projector write in that moment re-creates the
   live name; the fresh collection cannot take the name then, so that stray collection is renamed away and
   the switch retried (its content comes back with the catch-up).
3. Catch up: whatever changed while the build ran went to the old collections; it is applied again to the
   new ones from the source (write-model rows changed since the build began, or the Kafka events appended
   since), version-gated through the real projectors, so nothing newer is ever overwritten.
4. The old collections are dropped (kept with `keep_old`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from aiokafka import TopicPartition
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from command.db import WriteDatabase
from command.models import db_now
from eventshop.kinds import KINDS
from eventshop.ops.progress import NoProgress, Progress
from eventshop.ops.topics import OffsetRange, current_range, partitions, read_range, reader
from eventshop.ops.write_model import consistent_snapshot
from projection.kinds import VIEW_DOCUMENTS, projectors
from projection.projectors.base import Projector, by_topic
from projection.store import Doc
from shared.events import DOMAIN_TOPICS, AggregateType, Event, Topic, parse_event
from shared.settings import Settings

NAMESPACE_NOT_FOUND = 26
NAMESPACE_EXISTS = 48
SWITCH_ATTEMPTS = 10
CATCH_UP_GRACE = timedelta(seconds=60)
"""Write-model catch-up takes rows changed since the build began minus this: a command's `updated_at`
is taken before its commit, so a transaction that committed just after the snapshot has an earlier stamp."""


class CatchUpFailed(RuntimeError):
    """The switch happened, the catch-up did not finish: the new views may miss the latest changes."""


class Source(StrEnum):
    WRITE_MODEL = "write-model"
    KAFKA = "kafka"


class RenamedDatabase:
    """A database whose view collections are other collections.

    The projectors find their collections by view name (`db["users"]`); handed one of these, the very same
    projectors write to `users_rebuild_<stamp>` instead, without knowing it.
    """

    def __init__(self, db: AsyncDatabase[Doc], names: dict[str, str]) -> None:
        self.db = db
        self.names = names

    def __getitem__(self, name: str) -> AsyncCollection[Doc]:
        return self.db[self.names.get(name, name)]

    def get_collection(self, name: str, **options: Any) -> AsyncCollection[Doc]:
        return self.db.get_collection(self.names.get(name, name), **options)


def projectors_for(db: AsyncDatabase[Doc] | RenamedDatabase) -> dict[Topic, Projector[Any]]:
    """The real projectors (as the projection runner builds them), by topic."""
    return by_topic(projectors(cast(AsyncDatabase[Doc], db)))


@dataclass(frozen=True)
class CollectionSet:
    stamp: str
    names: dict[str, str]
    """live view name -> collection name"""

    @classmethod
    def fresh(cls, stamp: str) -> CollectionSet:
        return cls(stamp, {d.collection: f"{d.collection}_rebuild_{stamp}" for d in VIEW_DOCUMENTS})


def new_stamp() -> str:
    return f"{db_now():%Y%m%d%H%M%S}_{secrets.token_hex(2)}"


async def prepare(db: AsyncDatabase[Doc], fresh: CollectionSet) -> None:
    """Empty fresh collections that already have every index of their view.

    One index per createIndexes call: FerretDB v1 drops the connection when one call names several
    indexes that already exist (see `projection.store.connect_read_model`).
    """
    for document in VIEW_DOCUMENTS:
        name = fresh.names[document.collection]
        await db.drop_collection(name)
        await db.create_collection(name)
        for index in document.indexes:
            await db[name].create_indexes([index])


async def load_write_model(
    write_db: WriteDatabase, db: AsyncDatabase[Doc], fresh: CollectionSet, progress: Progress
) -> dict[str, int]:
    """Bulk-insert the view document of every aggregate, as of one consistent snapshot."""
    loaded: dict[str, int] = {}
    async with consistent_snapshot(write_db) as source:
        for kind in KINDS:
            progress.start(kind.collection, await source.count(kind.kind))
            target = db[fresh.names[kind.collection]]
            loaded[kind.collection] = 0
            async for documents in source.documents(kind.kind):
                await target.insert_many([document.stored() for document in documents], ordered=False)
                loaded[kind.collection] += len(documents)
                progress.advance(kind.collection, len(documents))
    return loaded


@dataclass
class Replay:
    """What a replay of Kafka events did."""

    applied: int = 0
    """Events that went through a projector."""
    skipped: int = 0
    """Messages no projector can apply (undecodable, on the wrong topic, malformed): the DLQ has them."""


APPLY_CONCURRENCY = 16
Routes = dict[str, Topic]
"""Kafka topic name -> the event type that belongs on it."""
AggregateKey = tuple[AggregateType, int]


async def replay(
    settings: Settings,
    db: AsyncDatabase[Doc] | RenamedDatabase,
    offsets: OffsetRange,
    progress: Progress,
    label: str = "events",
) -> Replay:
    """Apply the events in `offsets` through the real projectors.

    Every event carries its aggregate's full snapshot and the projectors keep only the highest version, so
    the newest event of each aggregate alone gives the view all its events would: only that one is applied.
    An aggregate whose newest event a
    projector rejects gets all its events, in offset order, as the live projector saw them. Poison messages
    are counted and skipped (the live projector dead-lettered them); a MongoDB failure aborts (a rebuild with
    holes must not be switched to).
    """
    projectors = projectors_for(db)
    routes = {settings.topic(topic): topic for topic in projectors}
    result = Replay()
    newest: dict[AggregateKey, Event] = {}
    progress.start(label, offsets.total)
    async for event in _events(settings, routes, offsets, result, progress, label):
        key = (event.aggregate_type, event.aggregate_id)
        if key not in newest or newest[key].aggregate_version < event.aggregate_version:
            newest[key] = event
    limit = asyncio.Semaphore(APPLY_CONCURRENCY)
    rejected: set[AggregateKey] = set()

    async def apply_newest(key: AggregateKey, event: Event) -> None:
        async with limit:
            if not await _apply(projectors[event.event_type], event, result):
                rejected.add(key)

    await asyncio.gather(*(apply_newest(key, event) for key, event in newest.items()))
    if rejected:
        ignored = Replay()  # the first pass counted these messages already
        async for event in _events(settings, routes, offsets, ignored, NoProgress(), label):
            if (event.aggregate_type, event.aggregate_id) in rejected:
                await _apply(projectors[event.event_type], event, result)
        result.skipped -= len(rejected)  # counted in both passes
    return result


async def _events(
    settings: Settings, routes: Routes, offsets: OffsetRange, result: Replay, progress: Progress, label: str
) -> AsyncIterator[Event]:
    """The events in `offsets` that a projector is for; undecodable or misrouted messages are counted."""
    if not offsets.total:
        return
    async with reader(settings) as consumer:
        async for batch in read_range(consumer, offsets):
            for records in batch.values():
                for record in records:
                    try:
                        event = parse_event(record.value)
                    except Exception:
                        result.skipped += 1
                        continue
                    if event.event_type is not routes.get(record.topic):
                        result.skipped += 1
                        continue
                    yield event
                progress.advance(label, len(records))


async def _apply(projector: Projector[Any], event: Event, result: Replay) -> bool:
    """One event through its projector; False when the projector rejects it (a malformed snapshot)."""
    try:
        await projector.apply(event)
    except PyMongoError:
        raise
    except Exception:
        result.skipped += 1
        return False
    result.applied += 1
    return True


@dataclass
class Switch:
    retired: dict[str, str] = field(default_factory=dict)
    """live view name -> the collection that held it until the switch"""
    strays: list[str] = field(default_factory=list)
    """Live names re-created by a projector write between two renames, renamed away."""
    started: float = 0.0
    finished: float = 0.0
    """time.monotonic() around the renames: readers may miss documents only in between."""


async def rename(db: AsyncDatabase[Doc], source: str, target: str) -> None:
    await db.client.admin.command("renameCollection", f"{db.name}.{source}", to=f"{db.name}.{target}")


async def switch_over(db: AsyncDatabase[Doc], fresh: CollectionSet) -> Switch:
    """Put the fresh collections under the live names, view by view, each in two renames."""
    switch = Switch(started=time.monotonic())
    for live, new in fresh.names.items():
        retired = f"{live}_old_{fresh.stamp}"
        try:
            await rename(db, live, retired)
            switch.retired[live] = retired
        except OperationFailure as exc:
            if exc.code != NAMESPACE_NOT_FOUND:  # no live collection yet: nothing to retire
                raise
        try:
            await _take_name(db, new, live, fresh.stamp, switch)
        except BaseException:
            if live in switch.retired:  # give the live name back to what readers had
                await rename(db, switch.retired.pop(live), live)
            raise
    switch.finished = time.monotonic()
    return switch


async def _take_name(db: AsyncDatabase[Doc], new: str, live: str, stamp: str, switch: Switch) -> None:
    for attempt in range(SWITCH_ATTEMPTS):
        try:
            await rename(db, new, live)
            return
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS or attempt == SWITCH_ATTEMPTS - 1:
                raise
            stray = f"{live}_stray_{stamp}_{attempt}"
            await rename(db, live, stray)
            switch.strays.append(stray)


async def catch_up_write_model(
    write_db: WriteDatabase, db: AsyncDatabase[Doc], since: datetime, progress: Progress
) -> int:
    """Apply every aggregate changed since `since` through the real projectors, as its latest event would."""
    applied = 0
    progress.start("catch-up", None)
    async with consistent_snapshot(write_db) as source:
        for kind in KINDS:
            projector = kind.projector(db)
            async for snapshots in source.snapshots(kind.kind, changed_since=since):
                for snapshot in snapshots:
                    await projector.restate(snapshot)
                applied += len(snapshots)
                progress.advance("catch-up", len(snapshots))
    return applied


@dataclass
class RebuildReport:
    source: Source
    stamp: str
    documents: dict[str, int]
    """documents per view right after the build (before the catch-up)"""
    previous: dict[str, int]
    """documents per view in the collections that were replaced: a replay of a topic that no longer retains
    old events builds fewer"""
    switch: Switch
    caught_up: int
    skipped: int
    dropped: list[str]


async def _count(db: AsyncDatabase[Doc], names: Iterable[tuple[str, str]]) -> dict[str, int]:
    return {live: await db[name].count_documents({}) for live, name in names}


async def rebuild(
    source: Source,
    *,
    settings: Settings,
    write_db: WriteDatabase,
    read_db: AsyncDatabase[Doc],
    progress: Progress | None = None,
    keep_old: bool = False,
    before_switch: Callable[[CollectionSet], Awaitable[None]] | None = None,
) -> RebuildReport:
    """Build fresh view collections from `source`, switch readers to them, catch up, drop the old ones.

    `before_switch` sees the finished fresh collections before any reader does (tests compare them).
    """
    progress = progress or NoProgress()
    fresh = CollectionSet.fresh(new_stamp())
    await prepare(read_db, fresh)
    began = db_now()
    try:
        built = await _build(source, settings, write_db, read_db, fresh, progress)
        documents = await _count(read_db, fresh.names.items())
        previous = await _count(read_db, ((live, live) for live in fresh.names))
        if before_switch is not None:
            await before_switch(fresh)
        switch = await switch_over(read_db, fresh)
    except BaseException:
        for name in fresh.names.values():
            await read_db.drop_collection(name)
        raise
    caught_up, skipped = await _catch_up(source, settings, write_db, read_db, began, built, switch, progress)
    dropped = [] if keep_old else await _drop_retired(read_db, switch)
    return RebuildReport(source, fresh.stamp, documents, previous, switch, caught_up, skipped, dropped)


@dataclass(frozen=True)
class Built:
    """What the build of the fresh collections read: from Kafka, up to which offsets, and how many messages it
    skipped (none from the write model)."""

    offsets: OffsetRange = field(default_factory=lambda: OffsetRange({}, {}))
    skipped: int = 0


async def _build(
    source: Source,
    settings: Settings,
    write_db: WriteDatabase,
    read_db: AsyncDatabase[Doc],
    fresh: CollectionSet,
    progress: Progress,
) -> Built:
    """Fill the fresh collections from the write model, or from every event Kafka holds now."""
    if source is Source.WRITE_MODEL:
        await load_write_model(write_db, read_db, fresh, progress)
        return Built()
    topics = await partitions(settings, (settings.topic(t) for t in DOMAIN_TOPICS))
    async with reader(settings) as consumer:
        offsets = await current_range(consumer, topics)
    replayed = await replay(settings, RenamedDatabase(read_db, fresh.names), offsets, progress)
    return Built(offsets, replayed.skipped)


async def _catch_up(
    source: Source,
    settings: Settings,
    write_db: WriteDatabase,
    read_db: AsyncDatabase[Doc],
    began: datetime,
    built: Built,
    switch: Switch,
    progress: Progress,
) -> tuple[int, int]:
    """Re-apply, onto the switched collections, what changed while the build ran: how many aggregates or events
    were applied, and how many messages were skipped in all."""
    try:
        if source is Source.WRITE_MODEL:
            return await catch_up_write_model(write_db, read_db, began - CATCH_UP_GRACE, progress), built.skipped
        return await _catch_up_kafka(settings, read_db, built.offsets.end, progress, built.skipped)
    except Exception as exc:
        kept = ", ".join((*switch.retired.values(), *switch.strays)) or "-"
        raise CatchUpFailed(
            f"readers use the rebuilt views, but changes made during the rebuild were not all re-applied ({exc!r}); "
            f"run the rebuild again; the replaced collections are kept: {kept}"
        ) from exc


async def _drop_retired(db: AsyncDatabase[Doc], switch: Switch) -> list[str]:
    """Drop the collections the switch replaced (and the strays it renamed away); their names."""
    dropped = [*switch.retired.values(), *switch.strays]
    for name in dropped:
        await db.drop_collection(name)
    return dropped


async def _catch_up_kafka(
    settings: Settings, db: AsyncDatabase[Doc], built_until: dict[TopicPartition, int], progress: Progress, skipped: int
) -> tuple[int, int]:
    """Replay what was appended since the build's end offsets onto the switched (live) collections."""
    async with reader(settings) as consumer:
        now = await current_range(consumer, list(built_until))
    since = OffsetRange(dict(built_until), now.end)
    replayed = await replay(settings, db, since, progress, label="catch-up")
    return replayed.applied, skipped + replayed.skipped
