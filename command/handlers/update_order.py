"""updateOrder: fulfilment moves only, one step at a time: PAID -> PROCESSING -> SHIPPED -> DELIVERED."""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.models import OrderStatus
from command.orders import lock_order, record_order_event, require_status, transition
from command.validation import check_expected_version
from shared.errors import BadUserInput
from shared.events import OrderSnapshot, OrderUpdated

FULFILMENT_STEPS = {
    OrderStatus.PROCESSING: OrderStatus.PAID,
    OrderStatus.SHIPPED: OrderStatus.PROCESSING,
    OrderStatus.DELIVERED: OrderStatus.SHIPPED,
}


@dataclass(frozen=True)
class UpdateOrder:
    order_id: int
    status: OrderStatus
    expected_version: int | None = None


async def update_order(db: WriteDatabase, command: UpdateOrder) -> OrderSnapshot:
    previous = FULFILMENT_STEPS.get(command.status)
    if previous is None:
        raise BadUserInput(
            "updateOrder moves fulfilment only (PROCESSING, SHIPPED, DELIVERED); use payOrder or cancelOrder",
            field="input.status",
        )
    async with db.transaction() as tx:
        order = await lock_order(tx, command.order_id)
        check_expected_version(order.version, command.expected_version)
        require_status(order, previous, action=f"move to {command.status}")
        transition(tx, order, command.status)
        return await record_order_event(tx, order, OrderUpdated)
