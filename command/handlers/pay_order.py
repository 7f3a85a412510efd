"""payOrder: RESERVED -> PAID with a payment method; emits `order.paid`.

The row lock serialises pay against cancel: whichever commits first wins, the other is INVALID_STATE.
"""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.idempotency import Idempotency, recall, remember, retry_on_key_race
from command.store import clock, lock_order, save
from shared.events import OrderSnapshot, PaymentMethod


@dataclass(frozen=True)
class PayOrder:
    order_id: int
    payment_method: PaymentMethod


async def pay_order(db: WriteDatabase, command: PayOrder, idem: Idempotency | None = None) -> OrderSnapshot:
    return await retry_on_key_race(lambda: _pay(db, command, idem))


async def _pay(db: WriteDatabase, command: PayOrder, idem: Idempotency | None) -> OrderSnapshot:
    async with db.transaction() as tx:
        if (earlier := await recall(tx, idem)) is not None:
            return earlier
        order = await lock_order(tx, command.order_id)
        order.pay(command.payment_method, clock())
        await save(tx, order)
        await remember(tx, idem, order.state)
        return order.state
