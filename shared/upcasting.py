"""Events written by an older release, brought up to the shape their class has today, one version at a time.

Each event class says its own `class_version` (what its events carry as `schema_version`) and has one step
`upcast_v1_v2`, `upcast_v2_v3`, ... from each earlier version. A step edits the event's plain stored state (the
JSON object as it was decoded) and never reads today's event models, so what a step does never changes when a
model does. Before each class had a version of its own, one `schema_version` covered the whole catalog (1, then
2): those numbers are every class's versions 1 and 2, so events already in Kafka or the outbox read as before.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Protocol

State = dict[str, Any]
"""An event as stored: the decoded JSON object."""


class Versioned(Protocol):
    """An event class: its version today, and (as attributes `upcast_vN_vN+1`) its steps from earlier ones."""

    class_version: ClassVar[int]


def written_version(state: State) -> int:
    """The version of its class an event was written in (release 1 did not say: it is version 1)."""
    return int(state.get("schema_version", 1))


def upcast(event_class: type[Versioned], state: State) -> State:
    """The stored state of an event of `event_class` in the class's version of today: each step from the written
    version on, on a copy (the caller's dict stays as it was). A version newer than the class is refused."""
    written, today = written_version(state), event_class.class_version
    if written > today:
        raise ValueError(f"{state.get('event_type')} version {written} is newer than this release ({today})")
    if written == today:
        return state
    state = copy.deepcopy(state)
    for version in range(written, today):
        step = getattr(event_class, f"upcast_v{version}_v{version + 1}", None)
        if step is None:
            raise ValueError(f"no upcaster for {state.get('event_type')} version {version}")
        step(state)
    state["schema_version"] = today
    return state


def drop_nulls(state: State, *names: str) -> None:
    """Remove these fields where they are null (a non-null one stays, for validation to refuse or accept)."""
    for name in names:
        if name in state and state[name] is None:
            del state[name]
