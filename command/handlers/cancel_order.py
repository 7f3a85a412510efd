"""cancelOrder: CREATED or RESERVED -> CANCELED with a reason; emits `order.canceled`.

The stock worker releases the reserved stock when it sees `order.canceled` of an order holding stock.
"""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.models import OrderStatus
from command.orders import lock_order, record_order_event, require_status, transition
from command.validation import require_text
from shared.events import OrderCanceled, OrderSnapshot


@dataclass(frozen=True)
class CancelOrder:
    order_id: int
    reason: str


async def cancel_order(db: WriteDatabase, command: CancelOrder) -> OrderSnapshot:
    reason = require_text(command.reason, "reason", max_length=500)
    async with db.transaction() as tx:
        order = await lock_order(tx, command.order_id)
        require_status(order, OrderStatus.CREATED, OrderStatus.RESERVED, action="cancel")
        transition(tx, order, OrderStatus.CANCELED, reason)
        order.cancel_reason = reason
        order.canceled_at = order.updated_at
        return await record_order_event(tx, order, OrderCanceled, reason=reason)
