"""OrderProjector: `order.*` events -> OrderView.

Every order event carries the full order, so any of them can create the view (events that arrive
before their `order.created` are not dropped). The view is written by order events only: the user's
current name and email are read from the users view when the order is read (`Order.user`); the snapshot
the order event carried is kept only for the moment before that user's view exists.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import OrderView
from projection.projectors.base import Doc, ViewChange, apply_if_newer
from shared.events import OrderEvent, OrderSnapshot, Topic
from shared.money import to_cents


def order_document(snapshot: OrderSnapshot) -> Doc:
    """The OrderView document for a write-side order snapshot."""
    return {
        "_id": snapshot.id,
        "user_id": snapshot.user_id,
        "user": snapshot.user.model_dump(),
        "items": [
            {
                "product_id": item.product_id,
                "product_name": item.product_name,
                "quantity": item.quantity,
                "unit_price_cents": to_cents(item.unit_price),
                "subtotal_cents": to_cents(item.subtotal),
            }
            for item in snapshot.items
        ],
        "total_cents": to_cents(snapshot.total_amount),
        "status": snapshot.status.value,
        "payment_method": None if snapshot.payment_method is None else snapshot.payment_method.value,
        "cancel_reason": snapshot.cancel_reason,
        "reject_reason": snapshot.reject_reason,
        "history": [{"status": h.status.value, "at": h.at, "reason": h.reason} for h in snapshot.history],
        "version": snapshot.version,
        "created_at": snapshot.created_at,
        "updated_at": snapshot.updated_at,
        "paid_at": snapshot.paid_at,
        "canceled_at": snapshot.canceled_at,
        "deleted": snapshot.deleted_at is not None,
    }


class OrderProjector:
    topics = frozenset(
        {
            Topic.ORDER_CREATED,
            Topic.ORDER_RESERVED,
            Topic.ORDER_REJECTED,
            Topic.ORDER_PAID,
            Topic.ORDER_UPDATED,
            Topic.ORDER_CANCELED,
            Topic.ORDER_DELETED,
        }
    )

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.orders = db[OrderView.Settings.name]

    async def apply(self, event: OrderEvent) -> list[ViewChange]:
        document = order_document(event.data)
        return [ViewChange("order", document)] if await apply_if_newer(self.orders, document) else []
