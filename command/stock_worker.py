"""StockWorker: reserves stock on `order.created`, releases it on `order.canceled`, and expires reservations
unpaid at their deadline (`command/expiry.py`, beside the consumer loop).

A poll's events are handled in ONE transaction that also records each in `processed_events`, so a
redelivered event changes nothing. Orders and then products are locked in id order, so concurrent
reservations never deadlock, and the row locks mean stock is never oversold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache

from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy import Insert, insert

from command.db import Transaction, WriteDatabase
from command.domain import stock
from command.domain.order import Order
from command.domain.product import Product
from command.expiry import ReservationExpirer
from command.models import ProcessedEvent, db_now
from command.store import clock, find_orders, lock_products, save
from shared import tracing
from shared.events import Event, Topic
from shared.kafka.consumer import ConsumerLoop, decode_event
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry

CONSUMER = "stock-worker"


class AlreadyHandled(Exception):
    """Some events of a batch were handled before (a redelivery): the batch is undone and the consumer loop
    handles its events one at a time, where each finds out for itself."""


def decide(
    action: Topic,
    order: Order,
    products: Mapping[int, Product],
    now: datetime,
    payment_window: timedelta | None = None,
) -> None:
    """What one order event does to its order and products (the caller holds their locks): `order.created`
    reserves all lines or none (RESERVED until paid or `payment_window` has passed, or REJECTED with the reason);
    `order.canceled` gives back what the order held. An order already decided, canceled before it was reserved,
    or holding nothing changes nothing."""
    if action is Topic.ORDER_CREATED:
        if order.awaits_stock:
            stock.reserve(order, products, now, payment_window)
    elif order.owes_stock:
        stock.release(order, products, now)


async def handle_order_events(
    db: WriteDatabase, events: Sequence[Event], *, batch: bool = False, payment_window: timedelta | None = None
) -> None:
    """Reserve on `order.created`, release on `order.canceled`: a poll's events in ONE transaction, once each.

    About ten statements and one commit for the whole poll rather than for each event: the events are claimed in
    `processed_events` with one INSERT, their orders locked in id order and then every product they name in id
    order (the order every transaction locks in, so none deadlocks), each order decided in turn on the products
    as the ones before it left them (all lines or none per order), and the rows saved together. In a `batch` each
    order's events are built under the correlation id and trace of the event that caused it; a message handled
    alone has them bound already by its consumer loop (in its span, with tracing on).
    """
    wanted = [event for event in events if event.event_type in ACTIONS]
    if not wanted:
        return
    async with db.transaction() as tx:
        # Claim the events first: a repeated delivery finds them claimed (a concurrent one waits on the first's
        # rows until that commits, then finds them claimed) and changes nothing.
        now = clock()
        claims = [{"consumer": CONSUMER, "event_id": str(e.event_id), "processed_at": db_now()} for e in wanted]
        claimed = (await tx.execute(_claiming(), claims)).rowcount
        if claimed == 0:
            return
        if claimed < len(wanted):
            raise AlreadyHandled(f"{len(wanted) - claimed} of {len(wanted)} events were handled before")
        await move_stock(tx, wanted, now, each_in_its_context=batch, payment_window=payment_window)


async def move_stock(
    tx: Transaction,
    events: Sequence[Event],
    now: datetime,
    *,
    each_in_its_context: bool = False,
    payment_window: timedelta | None = None,
) -> None:
    """Each order event (`order.created` or `order.canceled`) decided in turn in `tx`: the orders locked in id
    order, then every product they may move in id order, the rows saved together with their events (with
    `each_in_its_context`, each built under the correlation id and trace of the event that caused it)."""
    orders = await find_orders(tx, {event.aggregate_id for event in events})
    moving = {item.product_id for o in orders.values() if o.awaits_stock or o.owes_stock for item in o.state.items}
    products = await lock_products(tx, moving)
    for event in events:
        if (order := orders.get(event.aggregate_id)) is not None:
            if each_in_its_context:
                tracing.bind(event.correlation_id, event.trace)
            decide(event.event_type, order, products, now, payment_window)
    await save(tx, *products.values(), *orders.values())


ACTIONS = frozenset({Topic.ORDER_CREATED, Topic.ORDER_CANCELED})


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
        self.payment_window = settings.payment_window
        self.expirer = ReservationExpirer(db, settings)
        self.loop: ConsumerLoop[Event] = ConsumerLoop(
            settings=settings,
            name=CONSUMER,
            group_id=group_id or settings.stock_worker_group,
            topics=[settings.topic(Topic.ORDER_CREATED), settings.topic(Topic.ORDER_CANCELED)],
            handle=self.handle,
            handle_batch=self.handle_batch,
            decode=decode_event,
            producer=producer,
            auto_offset_reset=auto_offset_reset,
            telemetry=telemetry,
        )

    async def handle(self, event: Event, record: ConsumerRecord[bytes, bytes]) -> None:
        await handle_order_events(self.db, (event,), payment_window=self.payment_window)

    async def handle_batch(self, messages: list[tuple[ConsumerRecord[bytes, bytes], Event]]) -> None:
        events = [event for _, event in messages]
        await handle_order_events(self.db, events, batch=True, payment_window=self.payment_window)

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as both:  # one failing ends the other
            both.create_task(self.loop.run(stopping))
            both.create_task(self.expirer.run(stopping))
