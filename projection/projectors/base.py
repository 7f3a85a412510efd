"""What every projector is: the topics it owns and how one event changes its view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection

from projection.store import upsert_if_newer
from shared.events import EventEnvelope, Topic

Doc = dict[str, Any]


@dataclass(frozen=True)
class ViewChange:
    """A view document that an event changed; published on `views.changed` for subscriptions."""

    kind: str
    document: Doc


class Projector(Protocol):
    topics: frozenset[Topic]

    async def apply(self, event: EventEnvelope) -> list[ViewChange]: ...


def parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def apply_if_newer(
    collection: AsyncCollection[Doc], doc_id: int, version: int, fields: Doc, *, on_insert: Doc | None = None
) -> Doc | None:
    """`upsert_if_newer`, once more when the first try collided on `_id`.

    Two events of one aggregate on different topics are projected concurrently; when both find no view yet,
    both upsert and one collides on `_id` although it may be the newer one. Now that the view exists, the
    second try updates it if this event is newer, and collides again only if it is really stale.
    """
    document = await upsert_if_newer(collection, doc_id, version, fields, on_insert=on_insert)
    if document is None:
        document = await upsert_if_newer(collection, doc_id, version, fields, on_insert=on_insert)
    return document


class KeyedLocks:
    """One asyncio lock per key, dropped as soon as nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


VIEW_WRITES = KeyedLocks()
"""Serialises the view writes of one aggregate within this process.

FerretDB v1 applies an update as a read-modify-write of the whole document, not atomically: of two concurrent
writes to one document one is lost, even when both are version-gated (the version can go backwards). The events
of one aggregate arrive on several topics, which the runner projects concurrently, so every projector holds the
aggregate's key while it writes: ("product", id), and ("user", id) for a user and for all of that user's orders,
whose user snapshot the user projector rewrites.
"""
