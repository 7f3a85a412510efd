"""ReservationExpirer: RESERVED orders still unpaid at their deadline expire and give their stock back.

The deadline is the order row's `reserved_until` (set when the stock worker reserves, cleared by every later
move), so it outlives every process: a deadline that passed while nothing ran is met by the first look after a
start. Each look is ONE transaction: the due orders, earliest deadline first, locked with `SKIP LOCKED` (an
index range on (status, reserved_until), however many orders the table holds), then their products in id order,
each order decided again under its lock (`stock.expire`), the rows saved with their events. Any number of
expirers may run: one skips the rows another holds, and an order that a payment, a cancel or another expirer
moved first is no longer RESERVED, so nothing expires twice and no stock comes back twice. payOrder takes the
same row lock: whichever commits first wins, and the other finds the order moved (INVALID_STATE for the payment,
nothing to do for the expirer).

It runs in every stock-worker process (`StockWorker.run`): it moves stock, as the worker does, on the worker's
pool, and scales with it; `eventshop all` and the tests' in-process system get it with the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from command.db import Transaction, WriteDatabase
from command.domain import stock
from command.store import clock, find_orders, lock_due_orders, lock_products, save
from shared import tracing
from shared.logging import get_logger
from shared.metrics import ORDERS_EXPIRED
from shared.settings import Settings

log = get_logger(__name__)


async def expire_due(tx: Transaction, now: datetime, limit: int) -> int:
    """Expire, in `tx`, up to `limit` orders due at `now`: each EXPIRED with its stock released, saved with its
    events. How many expired."""
    ids = await lock_due_orders(tx, now, limit)
    if not ids:
        return 0
    orders = await find_orders(tx, ids)  # locked already: this reads their items, history and user
    products = await lock_products(tx, {item.product_id for o in orders.values() for item in o.state.items})
    expired = sum(stock.expire(order, products, now) is not None for order in orders.values())
    await save(tx, *orders.values(), *products.values())
    return expired


class ReservationExpirer:
    """Looks for due reservations every `ORDER_EXPIRY_POLL_INTERVAL` seconds (at once again after a full batch)
    until stopped; a failed look (the database away) is logged and tried again at the next."""

    def __init__(self, db: WriteDatabase, settings: Settings, *, now: Callable[[], datetime] = clock) -> None:
        self.db = db
        self.interval = settings.order_expiry_poll_interval
        self.batch = settings.order_expiry_batch
        self.now = now

    async def expire_once(self) -> int:
        """One look: the orders due now expired, at most one batch. How many expired. A look is a unit of work of
        its own: its events and its log line carry one new correlation id and trace."""
        tracing.bind(None, None)
        async with self.db.transaction() as tx:
            expired = await expire_due(tx, self.now(), self.batch)
        if expired:
            ORDERS_EXPIRED.inc(expired)
            log.info("reservations.expired", orders=expired)
        return expired

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                expired = await self.expire_once()
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                log.warning("reservations.expiry_failed", error=repr(exc), retry_in=self.interval)
                expired = 0
            if expired < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.interval)
