"""Full aggregate snapshots from the write model: the `data` of every event, and what mutations return.

The rows are what the write side itself wrote, every value checked by the domain before it was stored, so
the snapshots are built with `model_construct` (no second validation on the hot path); only what the database
gives back in another form is turned into the events' form here: naive UTC times become aware, the status and
payment method strings their enums. A row is anything with the columns as attributes: a Core `Row` (the
handlers) or an ORM entity (`eventshop/ops/write_model.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, overload

from shared.events import (
    OrderLine,
    OrderSnapshot,
    OrderStatus,
    OrderUser,
    PaymentMethod,
    ProductSnapshot,
    StatusChange,
    UserSnapshot,
)


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: datetime | None) -> datetime | None: ...
def aware(value: datetime | None) -> datetime | None:
    """The write model keeps naive UTC; events say so."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def user_snapshot(user: Any) -> UserSnapshot:
    return UserSnapshot.model_construct(
        id=user.id,
        version=user.version,
        created_at=aware(user.created_at),
        updated_at=aware(user.updated_at),
        deleted_at=aware(user.deleted_at),
        name=user.name,
        email=user.email,
    )


def product_snapshot(product: Any) -> ProductSnapshot:
    return ProductSnapshot.model_construct(
        id=product.id,
        version=product.version,
        created_at=aware(product.created_at),
        updated_at=aware(product.updated_at),
        deleted_at=aware(product.deleted_at),
        name=product.name,
        description=product.description,
        price=product.price,
        stock=product.stock,
    )


def order_user(user: Any) -> OrderUser:
    return OrderUser.model_construct(id=user.id, name=user.name, email=user.email, version=user.version)


def order_snapshot(order: Any, items: Iterable[Any], history: Iterable[Any], user: Any) -> OrderSnapshot:
    """The order with its items and status history, each in id order (the order they were written in)."""
    method = order.payment_method
    return OrderSnapshot.model_construct(
        id=order.id,
        version=order.version,
        created_at=aware(order.created_at),
        updated_at=aware(order.updated_at),
        deleted_at=aware(order.deleted_at),
        user_id=order.user_id,
        user=order_user(user),
        items=tuple(
            OrderLine.model_construct(
                product_id=item.product_id,
                product_name=item.product_name,
                quantity=item.quantity,
                unit_price=item.unit_price,
                subtotal=item.subtotal,
            )
            for item in sorted(items, key=lambda i: i.id or 0)
        ),
        total_amount=order.total_amount,
        status=OrderStatus(order.status),
        payment_method=None if method is None else PaymentMethod(method),
        cancel_reason=order.cancel_reason,
        reject_reason=order.reject_reason,
        history=tuple(
            StatusChange.model_construct(status=OrderStatus(h.status), at=aware(h.at), reason=h.reason)
            for h in sorted(history, key=lambda h: h.id or 0)
        ),
        paid_at=aware(order.paid_at),
        canceled_at=aware(order.canceled_at),
        reserved_until=aware(order.reserved_until),
    )
