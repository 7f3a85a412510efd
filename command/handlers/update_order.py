"""updateOrder: fulfilment moves only, one step at a time: PAID -> PROCESSING -> SHIPPED -> DELIVERED."""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.store import clock, lock_order, save
from shared.events import OrderSnapshot, OrderStatus


@dataclass(frozen=True)
class UpdateOrder:
    order_id: int
    status: OrderStatus
    expected_version: int | None = None


async def update_order(db: WriteDatabase, command: UpdateOrder) -> OrderSnapshot:
    async with db.transaction() as tx:
        order = await lock_order(tx, command.order_id)
        order.fulfil(command.status, clock(), command.expected_version)
        await save(tx, order)
    return order.state
