"""payOrder: RESERVED -> PAID with a payment method; emits `order.paid`.

The row lock serialises pay against cancel: whichever commits first wins, the other is INVALID_STATE.
"""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.idempotency import Idempotency, recall, remember, retry_on_key_race
from command.models import OrderStatus, PaymentMethod
from command.orders import lock_order, record_order_event, require_status, transition
from shared.events import OrderPaid, OrderSnapshot


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
        require_status(order, OrderStatus.RESERVED, action="pay")
        transition(tx, order, OrderStatus.PAID)
        order.payment_method = command.payment_method
        order.paid_at = order.updated_at
        data = await record_order_event(tx, order, OrderPaid)
        await remember(tx, idem, data)
        return data
