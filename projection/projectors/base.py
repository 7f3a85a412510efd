"""What every projector is: the topics it owns and how one event changes its view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import View
from projection.store import Doc, upsert_many_if_newer
from shared.events import AggregateType, Event, Topic


@dataclass(frozen=True)
class ViewChange:
    """A view document that an event changed; published on `views.changed` for subscriptions."""

    kind: AggregateType
    document: Doc
    """The view's stored form, as written."""


E = TypeVar("E", bound=Event)


class Projector(Generic[E]):
    """One per aggregate: the topics of its events, its view's collection, and the view an event makes (every event
    carries the whole aggregate, so the view is made from the event alone)."""

    topics: ClassVar[frozenset[Topic]]
    view_type: ClassVar[type[View]]

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.collection: AsyncCollection[Doc] = db[self.view_type.collection]

    def view(self, event: E) -> View:
        """The view of the aggregate the event carries (every event carries the whole aggregate)."""
        return self.view_type.of(event.data)

    async def apply(self, event: E) -> list[ViewChange]:
        """One event: its view written if newer; the change, or none when the event was stale."""
        return [change for change in await apply_many_if_newer(self.collection, [self.view(event)]) if change]


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
