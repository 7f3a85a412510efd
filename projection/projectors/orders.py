"""OrderProjector: `order.*` events -> OrderView.

Every order event carries the full order, so any of them can create the view (events that arrive
before their `order.created` are not dropped). The view is written by order events only: the user's
current name and email are read from the users view when the order is read (`Order.user`); the snapshot
the order event carried is kept only for the moment before that user's view exists.
"""

from __future__ import annotations

from decimal import Decimal

from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import OrderView
from projection.projectors.base import Doc, ViewChange, apply_if_newer, parse_time
from shared.events import EventEnvelope, Topic
from shared.money import to_cents


def order_document(snapshot: Doc) -> Doc:
    """The OrderView document for a write-side order snapshot."""
    return {
        "_id": snapshot["id"],
        "user_id": snapshot["user_id"],
        "user": {key: snapshot["user"][key] for key in ("id", "name", "email", "version")},
        "items": [
            {
                "product_id": item["product_id"],
                "product_name": item["product_name"],
                "quantity": item["quantity"],
                "unit_price_cents": to_cents(Decimal(item["unit_price"])),
                "subtotal_cents": to_cents(Decimal(item["subtotal"])),
            }
            for item in snapshot["items"]
        ],
        "total_cents": to_cents(Decimal(snapshot["total_amount"])),
        "status": snapshot["status"],
        "payment_method": snapshot["payment_method"],
        "cancel_reason": snapshot["cancel_reason"],
        "reject_reason": snapshot["reject_reason"],
        "history": [
            {"status": h["status"], "at": parse_time(h["at"]), "reason": h["reason"]} for h in snapshot["history"]
        ],
        "version": snapshot["version"],
        "created_at": parse_time(snapshot["created_at"]),
        "updated_at": parse_time(snapshot["updated_at"]),
        "paid_at": parse_time(snapshot["paid_at"]),
        "canceled_at": parse_time(snapshot["canceled_at"]),
        "deleted": snapshot.get("deleted_at") is not None,
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

    async def apply(self, event: EventEnvelope) -> list[ViewChange]:
        document = order_document(event.data)
        return [ViewChange("order", document)] if await apply_if_newer(self.orders, document) else []
