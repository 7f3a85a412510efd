"""deleteOrder: only CANCELED or REJECTED orders; soft delete keeps the history; emits `order.deleted`."""

from __future__ import annotations

from command.db import WriteDatabase
from command.handlers.common import bump
from command.models import OrderStatus, db_now
from command.orders import lock_order, record_order_event, require_status
from shared.events import OrderDeleted, OrderSnapshot


async def delete_order(db: WriteDatabase, order_id: int) -> OrderSnapshot:
    async with db.transaction() as tx:
        order = await lock_order(tx, order_id)
        require_status(order, OrderStatus.CANCELED, OrderStatus.REJECTED, action="delete")
        order.deleted_at = db_now()
        bump(order)
        return await record_order_event(tx, order, OrderDeleted)
