"""deleteOrder: only orders that ended without a sale (CANCELED, REJECTED or EXPIRED); soft delete keeps the history;
emits `order.deleted`."""

from __future__ import annotations

from functools import partial

from command.db import WriteDatabase
from command.domain.customer import Customer
from command.handlers.soft_delete import soft_delete
from command.store import lock_order
from shared.events import OrderSnapshot


async def delete_order(db: WriteDatabase, order_id: int, customer: Customer | None = None) -> OrderSnapshot:
    """Deleted for `customer` (None: by staff), who must own the order; Order.delete refuses one still in trade."""
    return await soft_delete(db, partial(lock_order, customer=customer), order_id)
