"""StockWorker: reserves stock on `order.created`, releases it on `order.canceled`.

Each event is handled in ONE transaction that also records it in `processed_events`, so a
redelivered event changes nothing. Products are locked in id order, so concurrent reservations
never deadlock, and the row locks mean stock is never oversold.
"""

from __future__ import annotations

import asyncio
from functools import cache

from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import Insert, insert

from command.db import Transaction, WriteDatabase
from command.domain import stock
from command.models import ProcessedEvent, db_now
from command.store import clock, find_order, lock_products, save
from shared.events import Event, Topic
from shared.kafka.consumer import ConsumerLoop, decode_event
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry

CONSUMER = "stock-worker"


async def reserve_stock(tx: Transaction, order_id: int) -> None:
    """All lines or none: RESERVED with stock decremented, or REJECTED with the reason."""
    order = await find_order(tx, order_id)
    if order is None or not order.awaits_stock:
        return  # canceled before we got here, or already decided
    products = await lock_products(tx, (item.product_id for item in order.state.items))
    reservation = stock.reserve(order, products, clock())
    await save(tx, *products.values(), order)
    tx.record(*reservation.events)


async def release_stock(tx: Transaction, order_id: int) -> None:
    """Give back what a canceled order held; an order that held nothing changes nothing."""
    order = await find_order(tx, order_id)
    if order is None or not order.owes_stock:
        return
    products = await lock_products(tx, (item.product_id for item in order.state.items))
    moves = stock.release(order, products, clock())
    await save(tx, *products.values(), order)
    tx.record(*moves)


async def handle_order_event(db: WriteDatabase, event: Event) -> None:
    """Reserve on `order.created`, release on `order.canceled`, once per event, in one transaction."""
    action = {Topic.ORDER_CREATED: reserve_stock, Topic.ORDER_CANCELED: release_stock}.get(event.event_type)
    if action is None:
        return
    async with db.transaction() as tx:
        # Claim the event first: a repeated delivery finds it claimed (a concurrent one waits on the first's
        # row until that commits, then finds it claimed) and changes nothing.
        claim = {"consumer": CONSUMER, "event_id": str(event.event_id), "processed_at": db_now()}
        if (await tx.execute(_claiming(), claim)).rowcount == 1:
            await action(tx, event.aggregate_id)


@cache
def _claiming() -> Insert:
    return insert(ProcessedEvent.__table__).prefix_with("IGNORE")  # type: ignore[attr-defined]


class StockWorker:
    def __init__(
        self,
        db: WriteDatabase,
        producer: AIOKafkaProducer,
        settings: Settings,
        *,
        group_id: str | None = None,
        auto_offset_reset: str = "earliest",
        telemetry: Telemetry = OFF,
    ) -> None:
        self.db = db
        self.loop: ConsumerLoop[Event] = ConsumerLoop(
            settings=settings,
            name=CONSUMER,
            group_id=group_id or settings.stock_worker_group,
            topics=[settings.topic(Topic.ORDER_CREATED), settings.topic(Topic.ORDER_CANCELED)],
            handle=self.handle,
            decode=decode_event,
            producer=producer,
            auto_offset_reset=auto_offset_reset,
            telemetry=telemetry,
        )

    async def handle(self, event: Event, record: ConsumerRecord[bytes, bytes]) -> None:
        await handle_order_event(self.db, event)

    async def run(self, stopping: asyncio.Event) -> None:
        await self.loop.run(stopping)
