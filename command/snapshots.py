"""Full aggregate snapshots from the write model: the `data` of every event, and what mutations return.

Each snapshot takes the row's columns of its fields' names (`shared.construct`): a column added to a table and a
field of the same name added to its snapshot travel together, with no mapping written here. A row is anything with
the columns as attributes: a Core `Row` (the handlers) or an ORM entity (the batches read for the operations,
`user_snapshots` and its siblings, the readers of `command/kinds.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from command.models import OrderItemRow, StatusChangeRow, UserRow
from shared.construct import construct
from shared.events import OrderSnapshot, ProductSnapshot, Snapshot, UserSnapshot

SnapshotsOf = Callable[[AsyncSession, Sequence[Any]], Awaitable[list[Snapshot]]]
"""How a batch of one kind's rows becomes snapshots, reading in `session` whatever else they carry."""


def user_snapshot(user: Any) -> UserSnapshot:
    return construct(UserSnapshot, user)


def product_snapshot(product: Any) -> ProductSnapshot:
    return construct(ProductSnapshot, product)


def order_snapshot(order: Any, items: Iterable[Any], history: Iterable[Any], user: Any) -> OrderSnapshot:
    """The order with its user, and its items and status history each in id order (the order they were written in)."""
    return construct(
        OrderSnapshot,
        order,
        user=user,
        items=sorted(items, key=lambda i: i.id or 0),
        history=sorted(history, key=lambda h: h.id or 0),
    )


async def user_snapshots(session: AsyncSession, users: Sequence[Any]) -> list[Snapshot]:
    return [user_snapshot(user) for user in users]


async def product_snapshots(session: AsyncSession, products: Sequence[Any]) -> list[Snapshot]:
    return [product_snapshot(product) for product in products]


async def order_snapshots(session: AsyncSession, orders: Sequence[Any]) -> list[Snapshot]:
    """The snapshots of a batch of orders: their items, history and users read in three statements."""
    ids = [o.id for o in orders]
    items = (await session.execute(select(OrderItemRow).where(col(OrderItemRow.order_id).in_(ids)))).scalars()
    history = (await session.execute(select(StatusChangeRow).where(col(StatusChangeRow.order_id).in_(ids)))).scalars()
    user_ids = sorted({o.user_id for o in orders})
    users = {u.id: u for u in (await session.execute(select(UserRow).where(col(UserRow.id).in_(user_ids)))).scalars()}
    items_of: dict[int, list[OrderItemRow]] = {i: [] for i in ids}
    history_of: dict[int, list[StatusChangeRow]] = {i: [] for i in ids}
    for item in items:
        items_of[item.order_id].append(item)
    for change in history:
        history_of[change.order_id].append(change)
    return [order_snapshot(o, items_of[o.id], history_of[o.id], users[o.user_id]) for o in orders]
