"""The order aggregate's shared moves: lock, transition (with history), and its event."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from command.db import Transaction
from command.handlers.common import bump, lock_live
from command.models import Order, OrderItem, OrderStatus, OrderStatusChange, User, db_now
from command.snapshots import order_snapshot
from shared.errors import InvalidState
from shared.events import OrderEvent, OrderSnapshot


async def lock_order(tx: Transaction, order_id: int) -> Order:
    return await lock_live(tx, Order, order_id, "order")


def require_status(order: Order, *allowed: OrderStatus, action: str) -> None:
    if order.status not in allowed:
        names = ", ".join(s.value for s in allowed)
        raise InvalidState(
            f"cannot {action} order {order.id} in status {order.status}; allowed from {names}",
            status=str(order.status),
        )


def add_history(tx: Transaction, order: Order, reason: str | None = None) -> None:
    assert order.id is not None, "flush the order first"
    tx.session.add(OrderStatusChange(order_id=order.id, status=order.status, reason=reason, at=order.updated_at))


def transition(tx: Transaction, order: Order, status: OrderStatus, reason: str | None = None) -> None:
    """Move the order to `status`: new version, and one line in its status history."""
    order.status = status
    bump(order)
    add_history(tx, order, reason)


async def order_items(tx: Transaction, order_id: int) -> list[OrderItem]:
    result = await tx.session.execute(
        select(OrderItem).where(OrderItem.order_id == order_id).order_by(col(OrderItem.id))
    )
    return list(result.scalars())


async def snapshot(tx: Transaction, order: Order) -> OrderSnapshot:
    """The order's full state as committed by this transaction (items, history, user)."""
    await tx.session.flush()
    items = await order_items(tx, order.id)  # type: ignore[arg-type]
    history = await tx.session.execute(
        select(OrderStatusChange).where(OrderStatusChange.order_id == order.id).order_by(col(OrderStatusChange.id))
    )
    user = await tx.session.get(User, order.user_id)
    assert user is not None
    return order_snapshot(order, items, list(history.scalars()), user)


async def record_order_event(tx: Transaction, order: Order, kind: type[OrderEvent], **fields: Any) -> OrderSnapshot:
    data = await snapshot(tx, order)
    tx.record(kind.of(data, **fields))
    return data


__all__ = ["add_history", "db_now", "lock_order", "record_order_event", "require_status", "snapshot", "transition"]
