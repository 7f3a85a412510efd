"""What every projector is: the topics of its aggregate's events, and how one event changes its view."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from projection.documents import Doc, View
from shared.events import TOPICS_OF, AggregateType, Event, Snapshot, Topic


@dataclass(frozen=True)
class ViewChange:
    """A view document that an event changed; published on `views.changed` for subscriptions."""

    kind: AggregateType
    document: Doc
    """The view's stored form, as written."""


E = TypeVar("E", bound=Event)


class Projector(Generic[E]):
    """One per aggregate: its view's collection, and the view an event makes (every event carries the whole
    aggregate, so the view is made from the event alone). It consumes every topic of its aggregate's events."""

    view_type: ClassVar[type[View]]

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.collection: AsyncCollection[Doc] = db[self.view_type.collection]

    @property
    def topics(self) -> frozenset[Topic]:
        return TOPICS_OF[self.view_type.kind]

    def view(self, event: E) -> View:
        """The view of the aggregate the event carries (every event carries the whole aggregate)."""
        return self.view_type.of(event.data)

    async def apply(self, event: E) -> list[ViewChange]:
        """One event: its view written if newer; the change, or none when the event was stale."""
        return await self._write(self.view(event))

    async def restate(self, snapshot: Snapshot) -> list[ViewChange]:
        """The aggregate as the write model holds it now, written as any of its events carrying `snapshot` would
        write it (rebuild's catch-up from the write model)."""
        return await self._write(self.view_type.of(snapshot))

    async def _write(self, view: View) -> list[ViewChange]:
        return [change for change in await apply_many_if_newer(self.collection, [view]) if change]


def by_topic(projectors: Iterable[Projector[Any]]) -> dict[Topic, Projector[Any]]:
    """Which projector applies the events of each topic."""
    return {topic: projector for projector in projectors for topic in projector.topics}


async def apply_many_if_newer(collection: AsyncCollection[Doc], views: list[View]) -> list[ViewChange | None]:
    """Views of distinct aggregates written where newer, in one round trip; for each, the change written, or None
    when its event was stale.

    Two writers may both find no view yet, both insert, and one collides on `_id` although it may hold the newer
    version (MongoDB runs them concurrently; the patched FerretDB serialises writes per document, so there the
    second simply sees the first). Now that the view exists, a second round replaces it where this event is newer,
    and collides again only where it is really stale."""
    documents = [view.stored() for view in views]
    written = await upsert_many_if_newer(collection, documents)
    collided = [i for i, ok in enumerate(written) if not ok]
    for i, ok in zip(collided, await upsert_many_if_newer(collection, [documents[i] for i in collided]), strict=True):
        written[i] = ok
    return [
        ViewChange(view.kind, document) if ok else None
        for view, document, ok in zip(views, documents, written, strict=True)
    ]


DUPLICATE_KEY = 11000


async def upsert_many_if_newer(collection: AsyncCollection[Doc], documents: list[Doc]) -> list[bool]:
    """Replace each view with its `document` (a view's stored form, `_id`s distinct) only when its `version` is newer
    than the stored one, all in one round trip (one unordered `update` command); for each, whether it was written.

    Each is found by `_id` (an index lookup on MongoDB and on the patched FerretDB). When the stored version is the
    same or newer the filter misses, the upsert collides on `_id`, and that update's duplicate-key error means
    "stale event, skip" (False). Any other error raises."""
    if not documents:
        return []
    requests = [ReplaceOne({"_id": d["_id"], "version": {"$lt": d["version"]}}, d, upsert=True) for d in documents]
    try:
        await collection.bulk_write(requests, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        stale = {error["index"] for error in errors}
        return [i not in stale for i in range(len(documents))]
    return [True] * len(documents)
