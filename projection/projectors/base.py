"""What every projector is: the topics it owns and how one event changes its view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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
