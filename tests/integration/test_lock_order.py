"""createOrder takes its locks on products in id order, as the stock worker does: an order whose lines name
products in descending id order never deadlocks with a reservation locking the same products.

The foreign keys of `order_items` take a shared lock on each product; taken in the order of the request's
lines, they formed a cycle with a stock worker holding the lower id and waiting for the higher one (a CI run
saw createOrder lose three deadlocks in a row under the cluster test's load)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import text

from command.db import WriteDatabase
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.store import PRODUCTS, lock
from tests.conftest import eventually, unique


async def test_an_order_naming_products_in_descending_id_order_does_not_deadlock_with_a_reservation(
    write_db: WriteDatabase,
) -> None:
    customer = await create_user(write_db, CreateUser("Lock Order", f"{unique('lock')}@example.com"))
    low, high = [(await create_product(write_db, CreateProduct(unique("part"), Decimal("1.00"), 10))).id for _ in "ab"]
    placing: asyncio.Task[object] | None = None
    async with write_db.transaction() as reservation:  # a stock worker: the products locked in id order
        await lock(reservation, PRODUCTS, [low])
        lines = (RequestedLine(high, 1), RequestedLine(low, 1))  # the request names the higher id first
        placing = asyncio.create_task(create_order(write_db, CreateOrder(customer.id, lines)))
        worker = int((await reservation.execute(text("SELECT CONNECTION_ID() AS session_id"))).scalar_one())
        await eventually(lambda: _placing_waits(write_db, worker), timeout=10)
        await lock(reservation, PRODUCTS, [high])  # a deadlock here if createOrder held the higher id already
    placed = await asyncio.wait_for(placing, 10)
    assert [item.product_id for item in placed.items] == [high, low]  # the lines keep the request's order


async def _placing_waits(db: WriteDatabase, worker: int) -> bool:
    """createOrder waits for a lock: its statement on the products (the shared lock, or the items' foreign keys
    before) has run for longer than any statement on these few rows takes without waiting."""
    async with db.transaction() as tx:
        sql = text(
            "SELECT COUNT(*) AS waiting FROM information_schema.processlist WHERE id <> :worker AND time_ms > 100 "
            "AND (info LIKE '%%LOCK IN SHARE MODE%%' OR info LIKE 'INSERT INTO order_items%%')"
        )
        return bool((await tx.execute(sql, {"worker": worker})).scalar_one())
