"""The read side's registry of aggregate kinds: one projector each, and through it the kind's view, its
collection and indexes, and the topics of its events (`shared.events.TOPICS_OF`).

Everything on the read side that goes "for each kind" reads this list; the write side has its own
(`command/kinds.py`), and `eventshop/kinds.py` joins the two by kind.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import Doc, View
from projection.projectors.base import Projector
from projection.projectors.orders import OrderProjector
from projection.projectors.products import ProductProjector
from projection.projectors.users import UserProjector
from shared.events import AggregateType

PROJECTORS: tuple[type[Projector[Any]], ...] = (UserProjector, ProductProjector, OrderProjector)
"""The projector of each kind of aggregate (each names its view)."""

VIEW_DOCUMENTS: tuple[type[View], ...] = tuple(projector.view_type for projector in PROJECTORS)
VIEW_OF: dict[AggregateType, type[View]] = {view.kind: view for view in VIEW_DOCUMENTS}
"""The view of each kind of aggregate."""
PROJECTOR_OF: dict[AggregateType, type[Projector[Any]]] = {p.view_type.kind: p for p in PROJECTORS}


def projectors(db: AsyncDatabase[Doc]) -> list[Projector[Any]]:
    """One projector of each kind, writing to `db`'s view collections."""
    return [projector(db) for projector in PROJECTORS]
