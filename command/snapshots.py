"""Full aggregate snapshots from the write model: the `data` of every event, and what mutations return.

Each snapshot takes the row's columns of its fields' names (`shared.construct`): a column added to a table and a
field of the same name added to its snapshot travel together, with no mapping written here. A row is anything with
the columns as attributes: a Core `Row` (the handlers) or an ORM entity (`eventshop/ops/write_model.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.construct import construct
from shared.events import OrderSnapshot, ProductSnapshot, UserSnapshot


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
