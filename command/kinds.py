"""The write side's registry of aggregate kinds: each one's domain class, its row model (the table `save`
writes) and how a batch of its rows becomes snapshots (what rebuild and verify read).

Everything on the write side that goes "for each kind" reads this list; the read side has its own
(`projection/kinds.py`), and `eventshop/kinds.py` joins the two by kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from sqlmodel import SQLModel

from command.domain.aggregate import Aggregate
from command.domain.order import Order
from command.domain.product import Product
from command.domain.user import User
from command.models import OrderRow, ProductRow, UserRow
from command.snapshots import SnapshotsOf, order_snapshots, product_snapshots, user_snapshots
from shared.events import AggregateType


@dataclass(frozen=True)
class WriteKind:
    kind: AggregateType
    aggregate: type[Aggregate[Any]]
    row: type[SQLModel]
    """The row model of the aggregate (its other tables, an order's items and history, hang off it)."""
    snapshots: SnapshotsOf

    @property
    def table(self) -> Table:
        return self.row.__table__  # type: ignore[attr-defined,no-any-return]


WRITE_KINDS: tuple[WriteKind, ...] = (
    WriteKind(AggregateType.USER, User, UserRow, user_snapshots),
    WriteKind(AggregateType.PRODUCT, Product, ProductRow, product_snapshots),
    WriteKind(AggregateType.ORDER, Order, OrderRow, order_snapshots),
)
WRITE_KIND_OF: dict[AggregateType, WriteKind] = {kind.kind: kind for kind in WRITE_KINDS}
TABLE_OF: dict[type[Aggregate[Any]], Table] = {kind.aggregate: kind.table for kind in WRITE_KINDS}
"""The table each kind of aggregate is saved to."""
