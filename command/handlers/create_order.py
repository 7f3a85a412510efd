"""createOrder: an order in CREATED with prices and names snapshotted from the products.

The stock is not reserved here: the stock worker does it on `order.created`, all lines or none.
Lines that already exceed the current stock fail fast with INSUFFICIENT_STOCK.
"""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.domain.order import NewOrder, RequestedLine, check_request
from command.idempotency import Idempotency, recall, remember, retry_on_key_race
from command.store import clock, insert_order, read_products, read_user, save
from shared.events import OrderSnapshot


@dataclass(frozen=True)
class CreateOrder:
    user_id: int
    lines: tuple[RequestedLine, ...]


async def create_order(db: WriteDatabase, command: CreateOrder, idem: Idempotency | None = None) -> OrderSnapshot:
    """Returns the committed order snapshot."""
    check_request(command)
    return await retry_on_key_race(lambda: _create(db, command, idem))


async def _create(db: WriteDatabase, command: CreateOrder, idem: Idempotency | None) -> OrderSnapshot:
    async with db.transaction() as tx:
        if (earlier := await recall(tx, idem)) is not None:
            return earlier
        user = await read_user(tx, command.user_id)
        products = await read_products(tx, (line.product_id for line in command.lines))
        new = NewOrder.place(command, user, products, clock())
        order = await insert_order(tx, new)
        await save(tx, order)
        await remember(tx, idem, order.state)
        return order.state
