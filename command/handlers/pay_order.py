"""payOrder: RESERVED -> PAID with a payment method; emits `order.paid`.

The row lock serialises pay against cancel: whichever commits first wins, the other is INVALID_STATE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from command.db import WriteDatabase
from command.models import OrderStatus, PaymentMethod
from command.orders import lock_order, record_order_event, require_status, transition
from shared.events import Topic


@dataclass(frozen=True)
class PayOrder:
    order_id: int
    payment_method: PaymentMethod


async def pay_order(db: WriteDatabase, command: PayOrder) -> dict[str, Any]:
    async with db.transaction() as tx:
        order = await lock_order(tx, command.order_id)
        require_status(order, OrderStatus.RESERVED, action="pay")
        transition(tx, order, OrderStatus.PAID)
        order.payment_method = command.payment_method
        order.paid_at = order.updated_at
        return await record_order_event(tx, order, Topic.ORDER_PAID)
