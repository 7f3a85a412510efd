"""Full aggregate snapshots: the `data` of every event, and what mutations return."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from command.models import Order, OrderItem, OrderStatusChange, Product, User
from shared.money import format_money


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=UTC).isoformat()


def user_snapshot(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "version": user.version,
        "created_at": iso(user.created_at),
        "updated_at": iso(user.updated_at),
        "deleted_at": iso(user.deleted_at),
    }


def product_snapshot(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": format_money(product.price),
        "stock": product.stock,
        "version": product.version,
        "created_at": iso(product.created_at),
        "updated_at": iso(product.updated_at),
        "deleted_at": iso(product.deleted_at),
    }


def order_snapshot(
    order: Order, items: Sequence[OrderItem], history: Sequence[OrderStatusChange], user: User
) -> dict[str, Any]:
    return {
        "id": order.id,
        "user_id": order.user_id,
        "user": {"id": user.id, "name": user.name, "email": user.email, "version": user.version},
        "items": [
            {
                "product_id": item.product_id,
                "product_name": item.product_name,
                "quantity": item.quantity,
                "unit_price": format_money(item.unit_price),
                "subtotal": format_money(item.subtotal),
            }
            for item in sorted(items, key=lambda i: i.id or 0)
        ],
        "total_amount": format_money(order.total_amount),
        "status": order.status.value if hasattr(order.status, "value") else order.status,
        "payment_method": order.payment_method,
        "cancel_reason": order.cancel_reason,
        "reject_reason": order.reject_reason,
        "history": [
            {"status": h.status, "at": iso(h.at), "reason": h.reason} for h in sorted(history, key=lambda h: h.id or 0)
        ],
        "version": order.version,
        "created_at": iso(order.created_at),
        "updated_at": iso(order.updated_at),
        "paid_at": iso(order.paid_at),
        "canceled_at": iso(order.canceled_at),
        "deleted_at": iso(order.deleted_at),
    }
