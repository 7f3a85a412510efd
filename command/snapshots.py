"""Full aggregate snapshots from the write model: the `data` of every event, and what mutations return."""

from __future__ import annotations

from collections.abc import Sequence

from command.models import Order, OrderItem, OrderStatusChange, Product, User
from shared.events import OrderLine, OrderSnapshot, OrderUser, ProductSnapshot, StatusChange, UserSnapshot


def user_snapshot(user: User) -> UserSnapshot:
    return UserSnapshot.model_validate(user, from_attributes=True)


def product_snapshot(product: Product) -> ProductSnapshot:
    return ProductSnapshot.model_validate(product, from_attributes=True)


def order_snapshot(
    order: Order, items: Sequence[OrderItem], history: Sequence[OrderStatusChange], user: User
) -> OrderSnapshot:
    return OrderSnapshot.model_validate(
        {
            **{name: getattr(order, name) for name in OrderSnapshot.model_fields if hasattr(order, name)},
            "user": OrderUser.model_validate(user, from_attributes=True),
            "items": [
                OrderLine.model_validate(item, from_attributes=True) for item in sorted(items, key=lambda i: i.id or 0)
            ],
            "history": [
                StatusChange.model_validate(h, from_attributes=True) for h in sorted(history, key=lambda h: h.id or 0)
            ],
        }
    )
