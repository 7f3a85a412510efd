"""deleteOrder: only orders that ended without a sale (CANCELED, REJECTED or EXPIRED); soft delete keeps the history;
emits `order.deleted`."""

from __future__ import annotations

from command.db import WriteDatabase
from command.handlers.soft_delete import soft_delete
from command.store import lock_order
from shared.events import OrderSnapshot


async def delete_order(db: WriteDatabase, order_id: int) -> OrderSnapshot:
    return await soft_delete(db, lock_order, order_id)  # Order.delete refuses an order still in trade
