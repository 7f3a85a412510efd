"""The stock saga under pressure: many shoppers racing for the last units, pay racing cancel, events that
arrive late, out of order or twice. Whatever the interleaving, stock is never oversold, never negative,
and never left held by an order that no longer needs it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from command.db import WriteDatabase
from command.handlers.cancel_order import CancelOrder, cancel_order
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.stock_worker import CONSUMER, AlreadyHandled, StockWorker, handle_order_events, move_stock
from command.store import clock
from projection.projectors.products import ProductProjector
from shared.events import AggregateType, Event, OrderCreated, Topic, parse_event
from tests.conftest import GraphQLClient, HighWater, RunningSystem, WriteModelProbe, eventually, unique
from tests.events import event_from
from tests.integration.shop import (
    CANCEL_ORDER,
    CREATE_ORDER,
    LIST_ORDERS,
    PAY_ORDER,
    HeldOutbox,
    decided,
    order_events_since,
    order_input,
    place_order,
    product_events_since,
    read_order,
    read_product,
    register_customer,
    statuses,
    stock_product,
    stock_settles_at,
    write_row,
    write_status,
    write_stock,
)


async def deliver(worker: StockWorker, event: Event) -> None:
    """Hand an event to the stock worker as its consumer loop would (the Kafka record is not used)."""
    await worker.handle(event, None)  # type: ignore[arg-type]


async def written_event(probe: WriteModelProbe, topic: Topic, aggregate_id: str) -> Event:
    """The event exactly as the write side wrote it (same event id), to deliver it once more."""
    found = [e for e in await probe.events.all() if e.topic == topic.value and e.aggregate_id == int(aggregate_id)]
    assert found, f"no {topic} event for {aggregate_id}"
    return parse_event(found[-1].envelope)


async def processed(probe: WriteModelProbe, events: list[Event]) -> int:
    """How many of these events the stock worker has recorded in processed_events."""
    marks = ", ".join(["%s"] * len(events))
    return int(
        await probe.scalar(
            f"SELECT COUNT(*) FROM processed_events WHERE consumer = %s AND event_id IN ({marks})",
            CONSUMER,
            *(str(e.event_id) for e in events),
        )
    )


async def stocks_reserved(probe: WriteModelProbe, since: HighWater, product_id: str) -> list[int]:
    """The stock level carried by each `stock.reserved` event of one product, in the order written."""
    events = await probe.events_of(since, "product", product_id)
    return [int(e.data["stock"]) for e in events if e.topic == "stock.reserved"]


async def blocked_on_order_lock(probe: WriteModelProbe, order_id: str) -> bool:
    """Another connection is waiting in `SELECT ... FROM orders ... FOR UPDATE` for this order."""
    count = await probe.scalar(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
        "AND INFO LIKE %s AND INFO LIKE %s",
        "%FROM orders%FOR UPDATE%",
        f"%orders.id = {int(order_id)} %",
    )
    return bool(count)


async def test_fifty_buy_clicks_race_for_ten_consoles_and_exactly_ten_get_one(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    shoppers = [await register_customer(gql, f"Shopper {n}") for n in range(10)]
    console = await stock_product(gql, unique("console"), "499.99", 10)
    before = await probe.high_water()

    # Launch day: ten shoppers each press "buy" five times, all fifty clicks at the same moment.
    clicks = [shopper for shopper in shoppers for _ in range(5)]
    answers = await asyncio.gather(
        *(gql.execute(CREATE_ORDER, input=order_input(s["id"], (console["id"], 1))) for s in clicks)
    )
    accepted = [a["data"]["createOrder"] for a in answers if not a.get("errors")]
    refused = Counter(a["errors"][0]["extensions"]["code"] for a in answers if a.get("errors"))
    # Some may be told at once that the shelf is empty; nobody gets any other error.
    assert set(refused) <= {"INSUFFICIENT_STOCK"}, refused
    assert len(accepted) >= 10 and len(accepted) + refused.total() == 50
    assert {o["status"] for o in accepted} == {"CREATED"}

    # The stock worker reserves exactly ten; every other accepted order is rejected with a reason.
    outcomes = Counter([await decided(probe, o["id"]) for o in accepted])
    assert outcomes == Counter({"RESERVED": 10, "REJECTED": len(accepted) - 10})
    for order in accepted:
        row = await write_row(probe, "orders", order["id"])
        if row["status"] == "REJECTED":
            assert row["reject_reason"].startswith(f"insufficient stock for product {console['id']}")
            assert not row["stock_held"]

    # Stock is exactly zero, and it never went below: each reservation took one unit, from 9 down to 0.
    assert await write_stock(probe, console["id"]) == 0
    assert await stocks_reserved(probe, before, console["id"]) == list(range(9, -1, -1))
    assert await product_events_since(probe, before, console["id"]) == ["stock.reserved"] * 10

    # The read model agrees: the console is sold out and every order shows the write model's outcome.
    seen = await read_product(gql, console["id"], min_version=11)
    assert seen is not None and seen["stock"] == 0 and seen["version"] == 11
    written = {order["id"]: await write_status(probe, order["id"]) for order in accepted}

    async def views() -> dict[str, str] | None:
        shown: dict[str, str] = {}
        for shopper in shoppers:
            page = (await gql.data(LIST_ORDERS, first=10, userId=shopper["id"]))["orders"]
            shown.update({node["id"]: node["status"] for node in page["nodes"]})
        return shown if shown == written else None

    await eventually(views, timeout=120)
    print(f"\noversell: {len(accepted)} accepted at create, {refused.total()} refused at create, {dict(outcomes)}")


async def test_pay_and_cancel_race_on_a_reserved_order_and_exactly_one_wins(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    customer = await register_customer(gql)
    bike = await stock_product(gql, unique("bike"), "900.00", 10)
    winners: Counter[str] = Counter()
    for round_ in range(10):
        order = await place_order(gql, customer, (bike, 1))
        assert await decided(probe, order["id"]) == "RESERVED"

        # The customer pays while the shop cancels, at the same moment (who starts first alternates).
        contenders: dict[str, Any] = {
            "pay": gql.execute(PAY_ORDER, id=order["id"], method="PIX"),
            "cancel": gql.execute(CANCEL_ORDER, id=order["id"], reason="out of delivery area"),
        }
        names = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
        answers = dict(zip(names, await asyncio.gather(*(contenders[n] for n in names)), strict=True))

        won = [name for name, answer in answers.items() if not answer.get("errors")]
        assert len(won) == 1, answers
        (lost,) = set(answers) - set(won)
        assert answers[lost]["errors"][0]["extensions"]["code"] == "INVALID_STATE", answers[lost]
        winners[won[0]] += 1

        row = await write_row(probe, "orders", order["id"])
        assert row["status"] == {"pay": "PAID", "cancel": "CANCELED"}[won[0]]
        assert row["version"] == 3
        history = await probe.scalar("SELECT COUNT(*) FROM order_status_history WHERE order_id = %s", row["id"])
        assert history == 3  # CREATED, RESERVED, and the winner's status only

    # Every canceled order gave its bike back; every paid one keeps it.
    await stock_settles_at(probe, bike["id"], 10 - winners["pay"])
    version = 1 + 10 + winners["cancel"]  # created, ten reservations, one release per cancel

    seen = await read_product(gql, bike["id"], min_version=version)
    assert seen is not None and seen["stock"] == 10 - winners["pay"]
    print(f"\npay vs cancel over 10 rounds: {dict(winners)}")


async def test_a_cancel_waits_for_a_reservation_in_flight_and_then_gives_the_stock_back(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe, write_db: WriteDatabase
) -> None:
    customer = await register_customer(gql)
    piano = await stock_product(gql, unique("piano"), "7500.00", 2)
    held = HeldOutbox(write_db)  # the live stock worker does not hear of this order: the test reserves it
    placed = await create_order(held, CreateOrder(int(customer["id"]), (RequestedLine(int(piano["id"]), 2),)))
    order_id = str(placed.id)

    # The stock worker is half-way through the reservation (order row locked) when the customer cancels.
    async with write_db.transaction() as tx:
        await move_stock(tx, [OrderCreated.of(placed)], clock())
        canceling = asyncio.create_task(gql.execute(CANCEL_ORDER, id=order_id, reason="found one used"))
        await eventually(lambda: blocked_on_order_lock(probe, order_id))
        assert not canceling.done()
    # The reservation committed first; the cancel then found the order RESERVED.
    answer = await canceling
    assert not answer.get("errors"), answer
    canceled = answer["data"]["cancelOrder"]
    assert statuses(canceled) == ["CREATED", "RESERVED", "CANCELED"] and canceled["version"] == 3

    # The live stock worker hears of the cancellation and gives both units back.
    await stock_settles_at(probe, piano["id"], 2)
    assert not (await write_row(probe, "orders", order_id))["stock_held"]
    seen = await read_product(gql, piano["id"], min_version=3)
    assert seen is not None and seen["stock"] == 2
    assert (await read_order(gql, order_id, min_version=3) or {})["status"] == "CANCELED"


@pytest.mark.parametrize("arrival", ["created-then-canceled", "canceled-then-created"])
async def test_an_order_canceled_before_the_stock_worker_hears_of_it_never_holds_stock(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe, write_db: WriteDatabase, arrival: str
) -> None:
    customer = await register_customer(gql)
    guitar = await stock_product(gql, unique("guitar"), "350.00", 3)
    before = await probe.high_water()

    # The order is placed and canceled at once, before the stock worker has seen either event.
    held = HeldOutbox(write_db)
    placed = await create_order(held, CreateOrder(int(customer["id"]), (RequestedLine(int(guitar["id"]), 2),)))
    canceled = await cancel_order(held, CancelOrder(placed.id, "ordered by mistake"))
    assert canceled.status == "CANCELED" and [h.status for h in canceled.history] == ["CREATED", "CANCELED"]
    created_event = held.last(Topic.ORDER_CREATED, placed.id)
    canceled_event = held.last(Topic.ORDER_CANCELED, placed.id)

    # The events arrive late, in either order, and then again.
    first, second = (
        (created_event, canceled_event) if arrival == "created-then-canceled" else (canceled_event, created_event)
    )
    for event in (first, second, first, second):
        await deliver(system.stock_worker, event)
    # Even driving the stock moves directly, a canceled order is neither reserved nor released.
    async with write_db.transaction() as tx:
        await move_stock(tx, [created_event], clock())
    async with write_db.transaction() as tx:
        await move_stock(tx, [canceled_event], clock())

    row = await write_row(probe, "orders", placed.id)
    assert (row["status"], row["version"], row["stock_held"]) == ("CANCELED", 2, 0)
    assert await write_stock(probe, guitar["id"]) == 3
    assert await product_events_since(probe, before, guitar["id"]) == []
    assert await order_events_since(probe, before, str(placed.id)) == []
    assert await processed(probe, [created_event, canceled_event]) == 2


async def test_a_redelivered_event_changes_nothing(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    customer = await register_customer(gql)
    camera = await stock_product(gql, unique("camera"), "650.00", 5)
    before = await probe.high_water()
    worker = system.stock_worker

    # The order's creation reaches the stock worker through Kafka, and three more times at once.
    placed = await place_order(gql, customer, (camera, 2))
    created = await written_event(probe, Topic.ORDER_CREATED, placed["id"])
    await asyncio.gather(*(deliver(worker, created) for _ in range(3)))
    assert await decided(probe, placed["id"]) == "RESERVED"
    assert (await read_order(gql, placed["id"], min_version=2) or {})["status"] == "RESERVED"
    assert await write_stock(probe, camera["id"]) == 3
    assert await product_events_since(probe, before, camera["id"]) == ["stock.reserved"]
    assert await order_events_since(probe, before, placed["id"]) == ["order.created", "order.reserved"]

    # The cancellation, likewise, arrives through Kafka and three more times, one of them late.
    await gql.data(CANCEL_ORDER, id=placed["id"], reason="changed my mind")
    canceled = await written_event(probe, Topic.ORDER_CANCELED, placed["id"])
    await asyncio.gather(*(deliver(worker, canceled) for _ in range(2)))
    await stock_settles_at(probe, camera["id"], 5)
    await deliver(worker, canceled)
    await deliver(worker, created)

    # Reserved once, released once.
    assert await write_stock(probe, camera["id"]) == 5
    assert await product_events_since(probe, before, camera["id"]) == ["stock.reserved", "stock.released"]
    assert await processed(probe, [created, canceled]) == 2
    assert not (await write_row(probe, "orders", placed["id"]))["stock_held"]
    seen = await read_product(gql, camera["id"], min_version=3)
    assert seen is not None and seen["stock"] == 5 and seen["version"] == 3


async def test_orders_canceled_while_their_reservation_is_under_way_all_give_their_stock_back(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    customer = await register_customer(gql)
    tent = await stock_product(gql, unique("tent"), "120.00", 20)

    # Twenty orders at once: impatient customers cancel the moment they have ordered, while the stock
    # worker is reserving the others' orders; patient ones cancel once their tent is reserved.
    async def place_and_cancel(patient: bool) -> dict[str, Any]:
        order = await place_order(gql, customer, (tent, 1))
        if patient:
            assert await decided(probe, order["id"]) == "RESERVED"
        return (await gql.data(CANCEL_ORDER, id=order["id"], reason="impulse buy"))["cancelOrder"]

    canceled = await asyncio.gather(*(place_and_cancel(patient=n % 2 == 0) for n in range(20)))
    paths = Counter(tuple(statuses(order)[:-1]) for order in canceled)
    assert set(paths) <= {("CREATED",), ("CREATED", "RESERVED")}, paths
    assert paths[("CREATED", "RESERVED")] >= 10

    # Once the stock worker has handled every creation and every cancellation, nothing is held.
    events = [
        await written_event(probe, topic, order["id"])
        for order in canceled
        for topic in (Topic.ORDER_CREATED, Topic.ORDER_CANCELED)
    ]

    async def all_handled() -> bool:
        return await processed(probe, events) == len(events)

    await eventually(all_handled, timeout=60)
    assert await write_stock(probe, tent["id"]) == 20
    ids = ", ".join(order["id"] for order in canceled)
    assert await probe.scalar(f"SELECT COUNT(*) FROM orders WHERE id IN ({ids}) AND stock_held") == 0
    reserved_first = paths[("CREATED", "RESERVED")]
    seen = await read_product(gql, tent["id"], min_version=1 + 2 * reserved_first)  # a reservation and a release each
    assert seen is not None and seen["stock"] == 20
    print(f"\ncancel during reservation: {dict(paths)}")


def product_event(product_id: int, version: int, stock: int) -> Event:
    """A product event as the write side emits it: the full product after the change."""
    topic = Topic.PRODUCT_CREATED if version == 1 else (Topic.STOCK_RESERVED, Topic.STOCK_RELEASED)[version % 2]
    data = {"id": product_id, "name": "Projected tent", "description": "", "price": "120.00", "stock": stock,
            "version": version, "created_at": "2026-01-01T00:00:00+00:00",
            "updated_at": f"2026-01-01T00:00:{version:02d}+00:00", "deleted_at": None}  # fmt: skip
    return event_from(
        event_type=topic, aggregate_type=AggregateType.PRODUCT, aggregate_id=product_id,
        aggregate_version=version, data=data,
        **({} if topic is Topic.PRODUCT_CREATED else {"order_id": 1, "quantity": 1}),
    )  # fmt: skip


async def test_the_catalogue_never_goes_back_when_reservations_and_releases_are_projected_at_once(mongo: Any) -> None:
    """Reservations and releases of one product travel on two topics and are projected concurrently."""
    projector = ProductProjector(mongo)
    stocks = [10, 8, 9, 7, 8, 6, 7]  # stocked, then two reserved and one released, in turn
    for _ in range(8):
        product_id = 3 * 10**12 + random.randrange(10**9)
        events = [product_event(product_id, version, stock) for version, stock in enumerate(stocks, start=1)]
        random.shuffle(events)
        await asyncio.gather(*(projector.apply(event) for event in events))
        view = await mongo["products"].find_one({"_id": product_id})
        assert (view["version"], view["stock"], view["updated_at"].second) == (7, 7, 7)


async def test_a_poll_of_orders_for_the_last_units_is_decided_in_turn_all_lines_or_none(
    gql: GraphQLClient, probe: WriteModelProbe, write_db: WriteDatabase
) -> None:
    """One poll holds three orders for a lamp with five units: decided in one transaction, in turn, on the stock
    the ones before left. The same poll delivered again changes nothing; a poll with one event handled before is
    refused whole (the loop then goes event by event) and leaves nothing written."""
    customer = await register_customer(gql)
    lamp = await stock_product(gql, unique("lamp"), "40.00", 5)
    held = HeldOutbox(write_db)  # the live stock worker does not hear of these orders: the test delivers them
    placed = [
        await create_order(held, CreateOrder(int(customer["id"]), (RequestedLine(int(lamp["id"]), 2),)))
        for _ in range(3)
    ]
    events = [held.last(Topic.ORDER_CREATED, order.id) for order in placed]
    before = await probe.high_water()

    await handle_order_events(write_db, events)
    assert [await write_status(probe, o.id) for o in placed] == ["RESERVED", "RESERVED", "REJECTED"]
    assert await write_stock(probe, lamp["id"]) == 1
    assert await stocks_reserved(probe, before, lamp["id"]) == [3, 1]
    assert await processed(probe, events) == 3

    await handle_order_events(write_db, events)  # redelivered: every event claimed before
    assert await write_stock(probe, lamp["id"]) == 1 and await stocks_reserved(probe, before, lamp["id"]) == [3, 1]

    late = await create_order(held, CreateOrder(int(customer["id"]), (RequestedLine(int(lamp["id"]), 1),)))
    late_event = held.last(Topic.ORDER_CREATED, late.id)
    with pytest.raises(AlreadyHandled):
        await handle_order_events(write_db, [events[0], late_event])
    assert await write_status(probe, late.id) == "CREATED" and await processed(probe, [late_event]) == 0
    await handle_order_events(write_db, [late_event])  # alone, as the loop then delivers it
    assert await write_status(probe, late.id) == "RESERVED" and await write_stock(probe, lamp["id"]) == 0
