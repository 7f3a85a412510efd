"""The aggregate kinds as the operations see them, whole: for each kind, its write side (row table, snapshots
read from rows) and its read side (projector, view), with the snapshot class and topics of its events.

Derived, not listed: one entry per `AggregateType`, joining the write side's registry (`command/kinds.py`)
and the read side's (`projection/kinds.py`); a kind missing from either fails here, at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from command.kinds import WRITE_KIND_OF, WriteKind
from projection.documents import View
from projection.kinds import PROJECTOR_OF
from projection.projectors.base import Projector
from shared.events import SNAPSHOT_OF, TOPICS_OF, AggregateType, Snapshot, Topic


@dataclass(frozen=True)
class Kind:
    kind: AggregateType
    write: WriteKind
    projector: type[Projector[Any]]

    @property
    def view(self) -> type[View]:
        return self.projector.view_type

    @property
    def collection(self) -> str:
        """The live collection name of the view."""
        return self.view.collection

    @property
    def snapshot(self) -> type[Snapshot]:
        return SNAPSHOT_OF[self.kind]

    @property
    def topics(self) -> frozenset[Topic]:
        return TOPICS_OF[self.kind]


KINDS: tuple[Kind, ...] = tuple(Kind(kind, WRITE_KIND_OF[kind], PROJECTOR_OF[kind]) for kind in AggregateType)
KIND_OF: dict[AggregateType, Kind] = {kind.kind: kind for kind in KINDS}
