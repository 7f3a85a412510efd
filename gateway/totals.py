"""KnownTotals: the connection totals (`totalCount`) this gateway instance counted, reused until its feed
announces a change of their view.

A total is a count over every matching view document, so its cost grows with the read model (one index count
on MongoDB and on the patched FerretDB: at 10k products about 4 ms, as much as the page beside it). Product
listings are read far more often than products change, so each total is counted once per change of its view
kind that this instance's `views.changed` feed announces, not once per page:

- a total counted while the feed is caught up is kept with the kind's generation at the start of the count; an
  announcement of that kind moves the generation on, and the next page counts again (a change announced while
  a count ran is never hidden by it);
- while the feed is not following `views.changed` (starting, or stopped), every total is counted;
- a total is at most `TOTALS_MAX_AGE_SECONDS` old whatever the feed said, which bounds what a change that was
  never announced can hide (a projector that dies between its write and its announcement, or a feed cut off
  from Kafka while it runs).

So a total is as fresh as the feed that wakes read-your-writes waits and subscriptions: it shows a change once
this instance was told of it, and within TOTALS_MAX_AGE_SECONDS in any case.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import NamedTuple

from pymongo.asynchronous.collection import AsyncCollection

from gateway.caches import LRUCache
from projection.queries import count
from projection.store import Doc
from shared.events import AggregateType

KEPT = 1024  # distinct (view, filter) totals kept; the least recently used goes first


class Known(NamedTuple):
    generation: int
    counted_at: float
    total: int


class KnownTotals:
    def __init__(self, max_age: float, *, kept: int = KEPT, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.clock = clock
        self.following = False
        """Set by the feed while it follows `views.changed`; only then is a total kept."""
        self._generation = dict.fromkeys(AggregateType, 0)
        self._known: LRUCache[tuple[str, str], Known] = LRUCache(kept)

    def changed(self, kind: AggregateType) -> None:
        """A view of `kind` changed: every total of that kind counted before now is out of date."""
        self._generation[kind] += 1

    def forget(self) -> None:
        """The feed stopped or lost track: nothing counted so far can be trusted (counts still running too)."""
        for kind in self._generation:
            self._generation[kind] += 1
        self._known.clear()

    async def count(self, kind: AggregateType, collection: AsyncCollection[Doc], query: Doc) -> int:
        if not self.following or self.max_age <= 0:
            return await count(collection, query)
        key = (collection.full_name, json.dumps(query, sort_keys=True, default=repr))
        generation, now = self._generation[kind], self.clock()
        known = self._known.get_recent(key)
        if known is not None and known.generation == generation and now - known.counted_at < self.max_age:
            return known.total
        total = await count(collection, query)
        if self._generation[kind] == generation:  # else a change was announced while counting: keep nothing
            self._known.put(key, Known(generation, now, total))
        return total
