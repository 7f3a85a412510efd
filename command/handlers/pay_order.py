"""payOrder: RESERVED -> PAID with a payment method; emits `order.paid`.

The row lock serialises pay against cancel: whichever commits first wins, the other is INVALID_STATE.
"""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.domain.customer import Customer
from command.idempotency import Idempotency, recall, remember, retry_on_key_race
from command.store import clock, lock_order, save
from shared.events import OrderSnapshot, PaymentMethod


@dataclass(frozen=True)
class PayOrder:
    order_id: int
    payment_method: PaymentMethod


async def pay_order(
    db: WriteDatabase, command: PayOrder, idem: Idempotency | None = None, customer: Customer | None = None
) -> OrderSnapshot:
    """Paid for `customer` (None: by staff), who must own the order."""
    return await retry_on_key_race(lambda: _pay(db, command, idem, customer))


async def _pay(
    db: WriteDatabase, command: PayOrder, idem: Idempotency | None, customer: Customer | None
) -> OrderSnapshot:
    """The order is locked (and its owner checked) before the key is looked at: a key says nothing to a caller
    the order refuses."""
    async with db.transaction() as tx:
        order = await lock_order(tx, command.order_id, customer)
        if (earlier := await recall(tx, idem)) is not None:
            return earlier
        order.pay(command.payment_method, clock())
        await save(tx, order)
        await remember(tx, idem, order.state)
        return order.state
