"""OrderProjector: `order.*` events -> OrderView.

Every order event carries the full order, so any of them can create the view (events that arrive
before their `order.created` are not dropped). The user snapshot inside is gated by the user's
own version, because `user.updated` may have refreshed it already.
"""

from __future__ import annotations

from decimal import Decimal

from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import OrderView, UserView
from projection.projectors.base import VIEW_WRITES, Doc, ViewChange, apply_if_newer, parse_time
from shared.events import EventEnvelope, Topic
from shared.money import to_cents


def order_document(snapshot: Doc) -> Doc:
    """The OrderView document for a write-side order snapshot."""
    return {
        "_id": snapshot["id"],
        "user_id": snapshot["user_id"],
        "user": dict(snapshot["user"]),
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
        self.users = db[UserView.Settings.name]

    async def newest_user(self, user: Doc) -> Doc:
        """The event's user snapshot, or the user view when it is newer: a `user.updated` projected before the
        order's first event found no order view to refresh, so the order must pick it up here."""
        view = await self.users.find_one({"_id": user["id"]}, {"name": 1, "email": 1, "version": 1})
        if view is None or view["version"] <= user["version"]:
            return user
        return {"id": user["id"], "name": view["name"], "email": view["email"], "version": view["version"]}

    async def apply(self, event: EventEnvelope) -> list[ViewChange]:
        fields = order_document(event.data)
        user = fields.pop("user")
        del fields["_id"], fields["version"]
        # Held by user: the user projector rewrites the user snapshot inside this user's orders.
        async with VIEW_WRITES.hold(("user", event.data["user_id"])):
            user = await self.newest_user(user)
            document = await apply_if_newer(
                self.orders, event.aggregate_id, event.aggregate_version, fields, on_insert={"user": user}
            )
            # A newer user snapshot than the stored one (never an older one) replaces it. When the view just
            # written already holds this snapshot or a newer one (the usual case), that update would match
            # nothing: skip it, it costs a write round trip on FerretDB. User snapshots only move forward.
            if document is None or _user_version(document) < user["version"]:
                refreshed = await self.orders.update_one(
                    {"_id": event.aggregate_id, "user.version": {"$lt": user["version"]}}, {"$set": {"user": user}}
                )
                if document is not None and refreshed.modified_count:
                    document["user"] = user
        return [] if document is None else [ViewChange("order", document)]


def _user_version(document: Doc) -> int:
    snapshot = document.get("user")
    return int(snapshot.get("version", 0)) if isinstance(snapshot, dict) else 0
