"""What every aggregate is: a state (the snapshot its events carry) that each change moves to the next version,
and the events of those changes, kept until the handler's `save` takes them (`collect_events`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from shared.errors import Conflict
from shared.events import Event, Snapshot

S = TypeVar("S", bound=Snapshot)
E = TypeVar("E", bound=Event)


def require_utc(now: datetime) -> datetime:
    """The rules keep aware UTC times, as the events say them; a naive time here is a caller's bug."""
    if now.tzinfo is None:
        raise ValueError("the domain's times are aware UTC datetimes")
    return now


@dataclass
class Aggregate(Generic[S]):
    state: S
    pending: list[Event] = field(default_factory=list, kw_only=True, repr=False, compare=False)
    """The events of the changes not saved yet, oldest first."""
    deleted: ClassVar[type[Event]]
    """The event of this kind of aggregate's (soft) deletion."""

    @property
    def id(self) -> int:
        return self.state.id

    @property
    def version(self) -> int:
        return self.state.version

    def require_version(self, expected: int | None) -> None:
        """Optimistic concurrency: the caller's view of the aggregate must be the current one."""
        if expected is not None and expected != self.version:
            raise Conflict(f"expected version {expected}, found {self.version}", actual_version=self.version)

    def collect_events(self) -> list[Event]:
        """The pending events, oldest first, handed over once: the save writes them with the rows."""
        events, self.pending = self.pending, []
        return events

    def delete(self, now: datetime) -> Event:
        """Soft delete: the row stays (orders keep their snapshots), marked deleted, in a new version."""
        return self._record(self.deleted.of(self._change(now, deleted_at=now)))

    def _record(self, event: E) -> E:
        """The event of a change this aggregate made, kept until it is saved; returned to the rule's caller."""
        self.pending.append(event)
        return event

    def _change(self, now: datetime, **fields: Any) -> S:
        """The state after one change: these fields, the next version, `now` as its time."""
        now = require_utc(now)
        self.state = self.state.model_copy(update={**fields, "version": self.version + 1, "updated_at": now})
        return self.state

    def _revise(self, fields: Mapping[str, object], now: datetime) -> S | None:
        """The state with the given fields (None: not given), or None when it holds them already: setting what
        is already there is not a change (no new version, no event)."""
        different = {k: v for k, v in fields.items() if v is not None and getattr(self.state, k) != v}
        return self._change(now, **different) if different else None
