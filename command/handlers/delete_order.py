"""deleteOrder: only CANCELED or REJECTED orders; soft delete keeps the history; emits `order.deleted`."""

from __future__ import annotations

from command.db import WriteDatabase
from command.store import clock, lock_order, save
from shared.events import OrderSnapshot


async def delete_order(db: WriteDatabase, order_id: int) -> OrderSnapshot:
    async with db.transaction() as tx:
        order = await lock_order(tx, order_id)
        deleted = order.delete(clock())
        save(tx, order)
        tx.record(deleted)
    return order.state
