"""What every projector is: the topics it owns and how one event changes its view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from pymongo.asynchronous.collection import AsyncCollection

from projection.documents import View
from projection.store import Doc, upsert_if_newer
from shared.events import AggregateType, Event, Topic


@dataclass(frozen=True)
class ViewChange:
    """A view document that an event changed; published on `views.changed` for subscriptions."""

    kind: AggregateType
    document: Doc
    """The view's stored form, as written."""


E_contra = TypeVar("E_contra", bound=Event, contravariant=True)


class Projector(Protocol[E_contra]):
    """One per aggregate: the topics of its events, and how one of them changes its view."""

    topics: frozenset[Topic]

    async def apply(self, event: E_contra) -> list[ViewChange]: ...


async def apply_if_newer(collection: AsyncCollection[Doc], view: View) -> list[ViewChange]:
    """`upsert_if_newer` of the view's stored form, once more when the first try collided on `_id`; the change
    written, or none when the event was stale.

    Two writers may both find no view yet, both insert, and one collides on `_id` although it may hold the
    newer version (MongoDB runs them concurrently; the patched FerretDB serialises writes per document, so
    there the second simply sees the first). Now that the view exists, the second try replaces it if this
    event is newer, and collides again only if it is really stale.
    """
    document = view.stored()  # encoded once: written, and announced as written
    if await upsert_if_newer(collection, document) or await upsert_if_newer(collection, document):
        return [ViewChange(view.kind, document)]
    return []
