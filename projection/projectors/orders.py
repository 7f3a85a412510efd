"""OrderProjector: `order.*` events -> OrderView.

Every order event carries the full order, so any of them can create the view (events that arrive
before their `order.created` are not dropped). The view is written by order events only: the user's
current name and email are read from the users view when the order is read (`Order.user`); the snapshot
the order event carried is kept only for the moment before that user's view exists.
"""

from __future__ import annotations

from projection.documents import OrderItemView, OrderUser, OrderView, StatusChangeView
from projection.projectors.base import Projector
from shared.events import OrderEvent, OrderSnapshot, Topic
from shared.money import to_cents


def order_document(snapshot: OrderSnapshot) -> OrderView:
    """The OrderView of a write-side order snapshot (the projector's, a mutation's answer, rebuild's, verify's)."""
    return OrderView(
        id=snapshot.id,
        user_id=snapshot.user_id,
        user=OrderUser(**snapshot.user.model_dump()),
        items=[
            OrderItemView(
                product_id=item.product_id,
                product_name=item.product_name,
                quantity=item.quantity,
                unit_price_cents=to_cents(item.unit_price),
                subtotal_cents=to_cents(item.subtotal),
            )
            for item in snapshot.items
        ],
        total_cents=to_cents(snapshot.total_amount),
        status=snapshot.status,
        payment_method=snapshot.payment_method,
        cancel_reason=snapshot.cancel_reason,
        reject_reason=snapshot.reject_reason,
        history=[StatusChangeView(status=h.status, at=h.at, reason=h.reason) for h in snapshot.history],
        version=snapshot.version,
        created_at=snapshot.created_at,
        updated_at=snapshot.updated_at,
        paid_at=snapshot.paid_at,
        canceled_at=snapshot.canceled_at,
        reserved_until=snapshot.reserved_until,
        deleted=snapshot.deleted_at is not None,
    )


class OrderProjector(Projector[OrderEvent]):
    view_type = OrderView

    topics = frozenset(
        {
            Topic.ORDER_CREATED,
            Topic.ORDER_RESERVED,
            Topic.ORDER_REJECTED,
            Topic.ORDER_PAID,
            Topic.ORDER_UPDATED,
            Topic.ORDER_CANCELED,
            Topic.ORDER_EXPIRED,
            Topic.ORDER_DELETED,
        }
    )

    def view(self, event: OrderEvent) -> OrderView:
        return order_document(event.data)
