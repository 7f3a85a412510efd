"""cancelOrder: CREATED or RESERVED -> CANCELED with a reason; emits `order.canceled`.

The stock worker releases the reserved stock when it sees `order.canceled` of an order holding stock.
"""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.domain.customer import Customer
from command.store import clock, lock_order, save
from shared.events import OrderSnapshot


@dataclass(frozen=True)
class CancelOrder:
    order_id: int
    reason: str


async def cancel_order(db: WriteDatabase, command: CancelOrder, customer: Customer | None = None) -> OrderSnapshot:
    """Canceled for `customer` (None: by staff), who must own the order."""
    async with db.transaction() as tx:
        order = await lock_order(tx, command.order_id, customer)
        order.cancel(command.reason, clock())
        await save(tx, order)
    return order.state
