"""StockWorker: reserves stock on `order.created`, releases it on `order.canceled`.

Each event is handled in ONE transaction that also records it in `processed_events`, so a
redelivered event changes nothing. Products are locked in id order, so concurrent reservations
never deadlock, and the row locks mean stock is never oversold.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from command.db import Transaction, WriteDatabase, is_duplicate_key
from command.handlers.common import bump
from command.models import Order, OrderItem, OrderStatus, ProcessedEvent, Product
from command.orders import order_items, record_order_event, transition
from command.snapshots import product_snapshot
from shared.events import Event, OrderRejected, OrderReserved, StockReleased, StockReserved, Topic
from shared.kafka import ConsumerLoop, decode_event
from shared.settings import Settings

CONSUMER = "stock-worker"


async def reserve_stock(tx: Transaction, order_id: int) -> None:
    """All lines or none: RESERVED with stock decremented, or REJECTED with the reason."""
    order = await tx.session.get(Order, order_id, with_for_update=True)
    if order is None or order.status != OrderStatus.CREATED:
        return  # canceled before we got here, or already decided
    items = await order_items(tx, order_id)
    products = await _lock_products(tx, items)
    shortfall = _first_shortfall(items, products)
    if shortfall is not None:
        transition(tx, order, OrderStatus.REJECTED, shortfall)
        order.reject_reason = shortfall
        await record_order_event(tx, order, OrderRejected, reason=shortfall)
        return
    for item in items:
        product = products[item.product_id]
        product.stock -= item.quantity
        bump(product)
        tx.record(
            StockReserved.of(product_snapshot(product), order_id=order_id, quantity=item.quantity)
        )
    order.stock_held = True
    transition(tx, order, OrderStatus.RESERVED)
    await record_order_event(tx, order, OrderReserved)


async def release_stock(tx: Transaction, order_id: int) -> None:
    """Give back what a canceled order held; an order that held nothing changes nothing."""
    order = await tx.session.get(Order, order_id, with_for_update=True)
    if order is None or not order.stock_held or order.status != OrderStatus.CANCELED:
        return
    items = await order_items(tx, order_id)
    products = await _lock_products(tx, items)
    for item in items:
        product = products[item.product_id]
        product.stock += item.quantity
        bump(product)
        tx.record(
            StockReleased.of(product_snapshot(product), order_id=order_id, quantity=item.quantity)
        )
    order.stock_held = False


async def _lock_products(tx: Transaction, items: list[OrderItem]) -> dict[int, Product]:
    ids = sorted(item.product_id for item in items)
    stmt = select(Product).where(col(Product.id).in_(ids)).order_by(col(Product.id)).with_for_update()  # type: ignore[union-attr]
    return {p.id: p for p in (await tx.session.execute(stmt)).scalars()}  # type: ignore[misc]


def _first_shortfall(items: list[OrderItem], products: dict[int, Product]) -> str | None:
    for item in items:
        product = products.get(item.product_id)
        if product is None or product.deleted_at is not None:
            return f"product {item.product_id} is no longer available"
        if product.stock < item.quantity:
            return (
                f"insufficient stock for product {item.product_id}: "
                f"requested {item.quantity}, available {product.stock}"
            )
    return None


class StockWorker:
    def __init__(
        self,
        db: WriteDatabase,
        producer: AIOKafkaProducer,
        settings: Settings,
        *,
        group_id: str | None = None,
        auto_offset_reset: str = "earliest",
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
        )

    async def handle(self, event: Event, record: ConsumerRecord[bytes, bytes]) -> None:
        action = {Topic.ORDER_CREATED: reserve_stock, Topic.ORDER_CANCELED: release_stock}.get(event.event_type)
        if action is None:
            return
        try:
            async with self.db.transaction() as tx:
                # Claim the event first: a concurrent or repeated delivery collides on the key.
                tx.session.add(ProcessedEvent(consumer=CONSUMER, event_id=str(event.event_id)))
                await tx.session.flush()
                await action(tx, event.aggregate_id)
        except IntegrityError as exc:
            if is_duplicate_key(exc, "PRIMARY"):  # already processed
                return
            raise

    async def run(self, stopping: asyncio.Event) -> None:
        await self.loop.run(stopping)
