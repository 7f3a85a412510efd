"""Orders, as the customer and the shop see them: place the order, the stock is reserved, pay, ship, deliver;
or cancel and get the stock back. Every rule of the order's life is shown with its error code, and every
refused command is shown to have written nothing.
"""

from __future__ import annotations

import asyncio
import random
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import event

from command.db import WriteDatabase
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from projection.documents import OrderUser
from projection.projectors.orders import OrderProjector
from projection.projectors.users import UserProjector
from projection.queries import ReadModel, current_user
from shared.events import AggregateType, Event, Topic
from shared.settings import Settings
from tests.conftest import GraphQLClient, RunningSystem, WriteModelProbe, unique
from tests.events import event_from
from tests.integration.shop import (
    CANCEL_ORDER,
    CREATE_ORDER,
    DELETE_ORDER,
    DELETE_USER,
    LIST_ORDERS,
    NOTHING_FOR_CUSTOMERS,
    NOTHING_FOR_ORDER,
    PAY_ORDER,
    UPDATE_ORDER,
    UPDATE_PRODUCT,
    USER_ORDERS,
    HeldOutbox,
    decided,
    error_of,
    ms,
    order_events_since,
    order_input,
    order_written,
    orders_written,
    place_order,
    product_events_since,
    read_order,
    read_product,
    register_customer,
    statuses,
    stock_product,
    stock_settles_at,
    write_row,
    write_stock,
)

TIMESTAMPS = ("createdAt", "updatedAt", "paidAt", "canceledAt")
TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+`?(\w+)", re.IGNORECASE)


def same_order(seen: dict[str, Any] | None, written: dict[str, Any]) -> None:
    """The read model shows the order the write model committed (timestamps to the millisecond)."""
    assert seen is not None
    plain = [k for k in written if k not in (*TIMESTAMPS, "history")]
    assert {k: seen[k] for k in plain} == {k: written[k] for k in plain}
    for key in TIMESTAMPS:
        assert ms(seen[key]) == ms(written[key]), key
    assert [(h["status"], ms(h["at"]), h["reason"]) for h in seen["history"]] == [
        (h["status"], ms(h["at"]), h["reason"]) for h in written["history"]
    ]


async def test_an_order_is_placed_reserved_paid_shipped_and_delivered(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    ada = await register_customer(gql, "Ada Lovelace")
    tag = unique("desk")
    keyboard = await stock_product(gql, f"{tag} keyboard", "49.90", 10)
    mouse = await stock_product(gql, f"{tag} mouse", "19.95", 5)
    before = await probe.high_water()

    # Ada orders two keyboards (guarding the price she saw) and three mice.
    placed = await place_order(gql, ada, (keyboard, 2, "49.90"), (mouse, 3))
    assert placed["status"] == "CREATED" and placed["version"] == 1
    assert placed["userId"] == ada["id"]
    assert placed["user"] == {k: ada[k] for k in ("id", "name", "email")}
    assert placed["items"] == [
        {"productId": keyboard["id"], "productName": keyboard["name"], "quantity": 2, "unitPrice": "49.90",
         "subtotal": "99.80"},
        {"productId": mouse["id"], "productName": mouse["name"], "quantity": 3, "unitPrice": "19.95",
         "subtotal": "59.85"},
    ]  # fmt: skip
    assert placed["totalAmount"] == "159.65"  # computed by the shop, not the client
    assert statuses(placed) == ["CREATED"]
    assert placed["paymentMethod"] is None and placed["paidAt"] is None and placed["canceledAt"] is None
    assert (await write_row(probe, "orders", placed["id"]))["total_amount"] == Decimal("159.65")

    # The stock worker reserves every line; the read model shows the order RESERVED.
    reserved = await read_order(gql, placed["id"], min_version=2)
    assert reserved is not None
    assert reserved["status"] == "RESERVED" and reserved["version"] == 2
    assert statuses(reserved) == ["CREATED", "RESERVED"]
    assert reserved["items"] == placed["items"] and reserved["totalAmount"] == "159.65"

    # The stock went down in the write model and, once projected, in the catalogue.
    assert await write_stock(probe, keyboard["id"]) == 8
    assert await write_stock(probe, mouse["id"]) == 2
    assert (await write_row(probe, "orders", placed["id"]))["stock_held"]
    assert (await read_product(gql, keyboard["id"], min_version=2) or {})["stock"] == 8
    assert (await read_product(gql, mouse["id"], min_version=2) or {})["stock"] == 2

    # The keyboard gets dearer: Ada's order keeps the price and name she ordered at ...
    await gql.data(UPDATE_PRODUCT, id=keyboard["id"], input={"price": "59.90", "name": f"{tag} keyboard v2"})
    # ... and a shopper still holding the old price is told it changed.
    late = order_input(ada["id"], (keyboard["id"], 1, "49.90"))
    error = await error_of(gql, CREATE_ORDER, input=late)
    assert error == {"code": "PRICE_CHANGED", "field": "items[0].unitPrice", "current_price": "59.90"}

    # Ada pays.
    paid = (await gql.data(PAY_ORDER, id=placed["id"], method="CREDIT_CARD"))["payOrder"]
    assert paid["status"] == "PAID" and paid["version"] == 3
    assert paid["paymentMethod"] == "CREDIT_CARD" and paid["paidAt"] is not None
    assert paid["items"] == placed["items"]
    same_order(await read_order(gql, placed["id"], min_version=3), paid)

    # The shop processes, ships and delivers, one step at a time.
    processing = (await gql.data(UPDATE_ORDER, id=placed["id"], status="PROCESSING", v=3))["updateOrder"]
    shipped = (await gql.data(UPDATE_ORDER, id=placed["id"], status="SHIPPED", v=4))["updateOrder"]
    delivered = (await gql.data(UPDATE_ORDER, id=placed["id"], status="DELIVERED", v=5))["updateOrder"]
    assert [o["status"] for o in (processing, shipped, delivered)] == ["PROCESSING", "SHIPPED", "DELIVERED"]
    assert [o["version"] for o in (processing, shipped, delivered)] == [4, 5, 6]
    assert statuses(delivered) == ["CREATED", "RESERVED", "PAID", "PROCESSING", "SHIPPED", "DELIVERED"]
    moments = [h["at"] for h in delivered["history"]]
    assert moments == sorted(moments)
    assert delivered["paymentMethod"] == "CREDIT_CARD" and ms(delivered["paidAt"]) == ms(paid["paidAt"])

    # Read model and write model agree on the delivered order.
    same_order(await read_order(gql, placed["id"], min_version=6), delivered)
    row = await write_row(probe, "orders", placed["id"])
    assert (row["status"], row["version"], row["payment_method"], row["stock_held"]) == (
        "DELIVERED",
        6,
        "CREDIT_CARD",
        1,
    )
    history = await probe.scalar("SELECT COUNT(*) FROM order_status_history WHERE order_id = %s", int(placed["id"]))
    assert history == 6
    assert await order_events_since(probe, before, placed["id"]) == [
        "order.created", "order.reserved", "order.paid", "order.updated", "order.updated", "order.updated"
    ]  # fmt: skip

    # Paying, fulfilling and delivering never touched the stock again.
    assert await write_stock(probe, keyboard["id"]) == 8 and await write_stock(probe, mouse["id"]) == 2
    assert await product_events_since(probe, before, mouse["id"]) == ["stock.reserved"]

    # A delivered order is final.
    before = await probe.high_water()
    assert (await error_of(gql, PAY_ORDER, id=placed["id"], method="PIX"))["code"] == "INVALID_STATE"
    assert (await error_of(gql, CANCEL_ORDER, id=placed["id"], reason="late"))["code"] == "INVALID_STATE"
    assert (await error_of(gql, DELETE_ORDER, id=placed["id"]))["code"] == "INVALID_STATE"
    assert (await error_of(gql, UPDATE_ORDER, id=placed["id"], status="DELIVERED"))["code"] == "INVALID_STATE"
    assert await order_written(probe, before, placed["id"]) == NOTHING_FOR_ORDER


async def test_a_reserved_order_is_canceled_its_stock_comes_back_and_it_is_deleted(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    grace = await register_customer(gql, "Grace Hopper")
    tag = unique("light")
    lamp = await stock_product(gql, f"{tag} lamp", "12.00", 4)
    bulb = await stock_product(gql, f"{tag} bulb", "2.50", 10)
    placed = await place_order(gql, grace, (lamp, 3), (bulb, 4))
    assert placed["totalAmount"] == "46.00"
    assert await decided(probe, placed["id"]) == "RESERVED"
    assert (await write_stock(probe, lamp["id"]), await write_stock(probe, bulb["id"])) == (1, 6)

    # Grace changes her mind.
    canceled = (await gql.data(CANCEL_ORDER, id=placed["id"], reason="  found a cheaper lamp  "))["cancelOrder"]
    assert canceled["status"] == "CANCELED" and canceled["version"] == 3
    assert canceled["cancelReason"] == "found a cheaper lamp" and canceled["canceledAt"] is not None
    assert canceled["history"][-1]["status"] == "CANCELED"
    assert canceled["history"][-1]["reason"] == "found a cheaper lamp"
    assert statuses(canceled) == ["CREATED", "RESERVED", "CANCELED"]

    # The stock worker gives the stock back, in the write model and then in the catalogue.
    await stock_settles_at(probe, lamp["id"], 4)
    await stock_settles_at(probe, bulb["id"], 10)
    assert not (await write_row(probe, "orders", placed["id"]))["stock_held"]
    assert (await read_product(gql, lamp["id"], min_version=3) or {})["stock"] == 4
    assert (await read_product(gql, bulb["id"], min_version=3) or {})["stock"] == 10
    same_order(await read_order(gql, placed["id"], min_version=3), canceled)

    # A canceled order can no longer be paid or canceled again.
    before = await probe.high_water()
    assert (await error_of(gql, PAY_ORDER, id=placed["id"], method="PIX"))["code"] == "INVALID_STATE"
    assert (await error_of(gql, CANCEL_ORDER, id=placed["id"], reason="again"))["code"] == "INVALID_STATE"
    assert (await error_of(gql, UPDATE_ORDER, id=placed["id"], status="PROCESSING"))["code"] == "INVALID_STATE"
    assert await order_events_since(probe, before, placed["id"]) == []

    # Grace tidies up: the canceled order is deleted; the write model keeps it, the read model drops it.
    deleted = (await gql.data(DELETE_ORDER, id=placed["id"]))["deleteOrder"]
    assert deleted == {"id": placed["id"], "version": 4}
    row = await write_row(probe, "orders", placed["id"])
    assert row["deleted_at"] is not None and row["status"] == "CANCELED"
    assert await read_order(gql, placed["id"], min_version=4) is None
    for mutation, variables in [
        (DELETE_ORDER, {}),
        (CANCEL_ORDER, {"reason": "x"}),
        (PAY_ORDER, {"method": "PIX"}),
        (UPDATE_ORDER, {"status": "PROCESSING"}),
    ]:
        assert (await error_of(gql, mutation, id=placed["id"], **variables))["code"] == "NOT_FOUND"
    assert await order_events_since(probe, before, placed["id"]) == ["order.deleted"]
    # Deleting the order never gave the stock back twice.
    assert (await write_stock(probe, lamp["id"]), await write_stock(probe, bulb["id"])) == (4, 10)


async def test_placing_an_order_follows_the_rules_and_a_refusal_writes_nothing(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    ada = await register_customer(gql)
    gone = await register_customer(gql, "Gone Away")
    await gql.data(DELETE_USER, id=gone["id"])
    tag = unique("stationery")
    pen = await stock_product(gql, f"{tag} pen", "1.20", 5)
    ink = await stock_product(gql, f"{tag} ink", "4.00", 2)
    sold_out = await stock_product(gql, f"{tag} stamp", "0.80", 0)
    retired = await stock_product(gql, f"{tag} quill", "9.00", 3)
    await gql.data("mutation($id: ID!) { deleteProduct(id: $id) { id } }", id=retired["id"])
    ghost = "999999999999"
    me, p, i = ada["id"], pen["id"], ink["id"]

    def bad(field: str) -> dict[str, Any]:
        return {"code": "BAD_USER_INPUT", "field": field}

    def unknown(field: str) -> dict[str, Any]:
        return {"code": "NOT_FOUND", "field": field}

    def short(field: str, available: int) -> dict[str, Any]:
        return {"code": "INSUFFICIENT_STOCK", "field": field, "available": available}

    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("no lines at all", order_input(me), bad("items")),
        ("101 lines", order_input(me, *((str(n), 1) for n in range(1, 102))), bad("items")),
        ("quantity 0", order_input(me, (p, 0)), bad("items[0].quantity")),
        ("quantity -1", order_input(me, (p, -1)), bad("items[0].quantity")),
        ("quantity 10001", order_input(me, (p, 10001)), bad("items[0].quantity")),
        ("the same product twice", order_input(me, (p, 1), (i, 1), (p, 2)), bad("items[2]")),
        ("a unitPrice that is not money", order_input(me, (p, 1, "0")), bad("items[0].unitPrice")),
        ("a malformed user id", order_input("abc", (p, 1)), bad("userId")),
        ("a malformed product id", order_input(me, (p, 1), ("abc", 1)), bad("items[1].productId")),
        ("product id 0", order_input(me, ("0", 1)), bad("items[0].productId")),
        ("an unknown user", order_input(ghost, (p, 1)), unknown("userId")),
        ("a deleted user", order_input(gone["id"], (p, 1)), unknown("userId")),
        ("an unknown product", order_input(me, (p, 1), (ghost, 1)), unknown("items[1].productId")),
        ("a deleted product", order_input(me, (retired["id"], 1)), unknown("items[0].productId")),
        ("a stale price", order_input(me, (p, 1, "1.19")),
         {"code": "PRICE_CHANGED", "field": "items[0].unitPrice", "current_price": "1.20"}),
        ("more than the shelf holds", order_input(me, (p, 6)), short("items[0].quantity", 5)),
        ("a second line that does not fit", order_input(me, (p, 5), (i, 3)), short("items[1].quantity", 2)),
        ("a sold-out product", order_input(me, (sold_out["id"], 1)), short("items[0].quantity", 0)),
        ("a quantity beyond any Int", order_input(me, (p, 2**31)), {"code": "BAD_USER_INPUT"}),
        ("a unitPrice with three decimals", order_input(me, (p, 1, "1.205")), {"code": "BAD_USER_INPUT"}),
        ("a unitPrice that is not a number", order_input(me, (p, 1, "cheap")), {"code": "BAD_USER_INPUT"}),
    ]  # fmt: skip
    for story, order, expected in cases:
        before = await probe.high_water()
        assert await error_of(gql, CREATE_ORDER, input=order) == expected, story
        assert await orders_written(probe, before, me, gone["id"], ghost) == NOTHING_FOR_CUSTOMERS, story

    # Nothing was reserved either.
    assert [await write_stock(probe, x["id"]) for x in (pen, ink, sold_out)] == [5, 2, 0]
    # The exact price (written any way) and everything on the shelf are fine.
    fine = await place_order(gql, ada, (pen, 5, "1.2"), (ink, 2, "4"))
    assert fine["totalAmount"] == "14.00"
    assert await decided(probe, fine["id"]) == "RESERVED"


async def test_an_order_may_have_a_hundred_lines_and_ten_thousand_of_one_thing(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe, write_db: WriteDatabase
) -> None:
    customer = await register_customer(gql)
    tag = unique("bulk")
    # A hundred parts are stocked straight into the write model: the catalogue is not the point here.
    held = HeldOutbox(write_db)
    shelf = [
        {"id": str((await create_product(held, CreateProduct(f"{tag} part {n:03}", Decimal("0.01"), 10_000))).id)}
        for n in range(100)
    ]
    placed = await place_order(gql, customer, (shelf[0], 10_000), *((product, 1) for product in shelf[1:]))
    assert len(placed["items"]) == 100
    assert placed["totalAmount"] == "100.99"  # 10000 + 99 parts at one cent
    assert await decided(probe, placed["id"]) == "RESERVED"
    assert await write_stock(probe, shelf[0]["id"]) == 0
    assert await write_stock(probe, shelf[99]["id"]) == 9_999
    seen = await read_order(gql, placed["id"], min_version=2)
    assert seen is not None and [item["productId"] for item in seen["items"]] == [p["id"] for p in shelf]


async def test_placing_an_order_reads_the_customer_and_the_shelf_once_and_reads_nothing_back(
    settings: Settings,
) -> None:
    """The committed order is built from the order in memory: what the transaction inserted is never read
    back (the read-backs were two of eight statements per createOrder)."""
    db = WriteDatabase(settings.mysql_dsn, pool_size=1)  # an engine of its own: only this test's statements
    sent: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        verb = statement.split(None, 1)[0].upper()
        table = TABLE.search(statement)
        sent.append(f"{verb} {table.group(1) if table else '?'}")

    try:
        customer = await create_user(db, CreateUser("Statement Counter", f"{unique('count')}@example.com"))
        shelf = [await create_product(db, CreateProduct(unique("part"), Decimal("2.50"), 10)) for _ in range(3)]
        lines = tuple(RequestedLine(product.id, 2) for product in shelf)
        await create_order(db, CreateOrder(customer.id, lines))  # the connection is set up outside the count
        event.listen(db.engine.sync_engine, "before_cursor_execute", note)
        placed = await create_order(db, CreateOrder(customer.id, lines))
    finally:
        await db.dispose()
    assert sent == [
        "SELECT users",
        "SELECT products",
        "INSERT orders",
        "INSERT order_items",  # every line in one statement
        "INSERT order_status_history",
        "INSERT outbox",
    ]
    assert (len(placed.items), placed.total_amount) == (3, Decimal("15.00"))
    assert [h.status for h in placed.history] == ["CREATED"]


async def test_the_order_state_machine_refuses_illegal_moves_and_writes_nothing(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    customer = await register_customer(gql)
    chair = await stock_product(gql, unique("chair"), "80.00", 10)
    placed = await place_order(gql, customer, (chair, 1))
    assert await decided(probe, placed["id"]) == "RESERVED"
    order_id = placed["id"]

    async def refused(mutation: str, expected: str, **variables: Any) -> None:
        before = await probe.high_water()
        error = await error_of(gql, mutation, **{"id": order_id, **variables})
        assert error["code"] == expected, (variables, error)
        assert await order_written(probe, before, order_id) == NOTHING_FOR_ORDER, variables

    # Reserved but not paid: fulfilment cannot start and the order cannot be deleted.
    await refused(UPDATE_ORDER, "INVALID_STATE", status="PROCESSING")
    await refused(DELETE_ORDER, "INVALID_STATE")

    paid = (await gql.data(PAY_ORDER, id=order_id, method="BOLETO"))["payOrder"]
    assert paid["status"] == "PAID" and paid["version"] == 3

    # Paid: it can be neither canceled, deleted nor paid twice.
    await refused(CANCEL_ORDER, "INVALID_STATE", reason="too late")
    await refused(DELETE_ORDER, "INVALID_STATE")
    await refused(PAY_ORDER, "INVALID_STATE", method="PIX")
    # Fulfilment moves one step at a time ...
    await refused(UPDATE_ORDER, "INVALID_STATE", status="SHIPPED")
    await refused(UPDATE_ORDER, "INVALID_STATE", status="DELIVERED")
    # ... and updateOrder only moves fulfilment: the other statuses have their own commands, or none.
    for status in ("CREATED", "RESERVED", "REJECTED", "PAID", "CANCELED"):
        await refused(UPDATE_ORDER, "BAD_USER_INPUT", status=status)
    # The caller's view of the order must be the current one.
    await refused(UPDATE_ORDER, "CONFLICT", status="PROCESSING", v=2)
    await refused(UPDATE_ORDER, "CONFLICT", status="PROCESSING", v=4)
    # Only the contract's statuses and payment methods exist.
    await refused(UPDATE_ORDER, "BAD_USER_INPUT", status="LOST_IN_TRANSIT")
    await refused(PAY_ORDER, "BAD_USER_INPUT", method="CASH")
    # A cancel needs a reason (checked before the state).
    await refused(CANCEL_ORDER, "BAD_USER_INPUT", reason="")
    await refused(CANCEL_ORDER, "BAD_USER_INPUT", reason="   ")
    await refused(CANCEL_ORDER, "BAD_USER_INPUT", reason="x" * 501)
    # Malformed and unknown ids.
    for bad_id, code in (("abc", "BAD_USER_INPUT"), ("-3", "BAD_USER_INPUT"), ("999999999999", "NOT_FOUND")):
        await refused(PAY_ORDER, code, id=bad_id, method="PIX")
        await refused(UPDATE_ORDER, code, id=bad_id, status="PROCESSING")
        await refused(CANCEL_ORDER, code, id=bad_id, reason="why")
        await refused(DELETE_ORDER, code, id=bad_id)

    row = await write_row(probe, "orders", order_id)
    assert (row["status"], row["version"], row["payment_method"]) == ("PAID", 3, "BOLETO")

    # With the right version the move is made.
    processing = (await gql.data(UPDATE_ORDER, id=order_id, status="PROCESSING", v=3))["updateOrder"]
    assert processing["status"] == "PROCESSING" and processing["version"] == 4


async def test_an_order_not_reserved_yet_cannot_be_paid(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe, write_db: WriteDatabase
) -> None:
    customer = await register_customer(gql)
    sofa = await stock_product(gql, unique("sofa"), "499.00", 1)
    # The order is placed, but the stock worker has not heard of it yet (its event is held back).
    held = HeldOutbox(write_db)
    placed = await create_order(held, CreateOrder(int(customer["id"]), (RequestedLine(int(sofa["id"]), 1),)))
    assert placed.status == "CREATED"
    order_id = str(placed.id)

    before = await probe.high_water()
    error = await error_of(gql, PAY_ORDER, id=order_id, method="DEBIT_CARD")
    assert error == {"code": "INVALID_STATE", "status": "CREATED"}
    assert await order_written(probe, before, order_id) == NOTHING_FOR_ORDER
    assert (await write_row(probe, "orders", order_id))["version"] == 1

    # Once the stock worker reserves it, it can be paid.
    await system.stock_worker.handle(held.last(Topic.ORDER_CREATED, order_id), None)  # type: ignore[arg-type]
    paid = (await gql.data(PAY_ORDER, id=order_id, method="DEBIT_CARD"))["payOrder"]
    assert paid["status"] == "PAID" and paid["version"] == 3
    assert await write_stock(probe, sofa["id"]) == 0


async def test_an_order_whose_last_line_no_longer_fits_is_rejected_whole(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe, write_db: WriteDatabase
) -> None:
    alice, bob = await register_customer(gql, "Alice"), await register_customer(gql, "Bob")
    tag = unique("office")
    desk = await stock_product(gql, f"{tag} desk", "150.00", 10)
    lamp = await stock_product(gql, f"{tag} lamp", "20.00", 1)
    before = await probe.high_water()

    # Alice and Bob each order desks and the one lamp left; at the time, both orders fit on the shelf.
    held = HeldOutbox(write_db)

    def desks_and_lamp(desks: int) -> tuple[RequestedLine, ...]:
        return RequestedLine(int(desk["id"]), desks), RequestedLine(int(lamp["id"]), 1)

    first = await create_order(held, CreateOrder(int(alice["id"]), desks_and_lamp(1)))
    second = await create_order(held, CreateOrder(int(bob["id"]), desks_and_lamp(2)))
    assert first.status == second.status == "CREATED"

    # The stock worker hears of Alice's order first, then of Bob's.
    for order in (first, second):
        await system.stock_worker.handle(held.last(Topic.ORDER_CREATED, order.id), None)  # type: ignore[arg-type]

    # Alice got her desk and the lamp; Bob's order is rejected whole: not even his desks are reserved.
    assert (await write_row(probe, "orders", first.id))["status"] == "RESERVED"
    rejected = await write_row(probe, "orders", second.id)
    reason = f"insufficient stock for product {lamp['id']}: requested 1, available 0"
    assert (rejected["status"], rejected["reject_reason"], rejected["stock_held"]) == ("REJECTED", reason, 0)
    assert await write_stock(probe, desk["id"]) == 9
    assert await write_stock(probe, lamp["id"]) == 0
    assert await product_events_since(probe, before, desk["id"]) == ["stock.reserved"]
    assert await order_events_since(probe, before, str(second.id)) == ["order.rejected"]

    # The read model learns of both orders from their outcome events.
    seen = await read_order(gql, str(second.id), min_version=2)
    assert seen is not None
    assert seen["status"] == "REJECTED" and seen["rejectReason"] == reason
    assert [(h["status"], h["reason"]) for h in seen["history"]] == [("CREATED", None), ("REJECTED", reason)]
    assert seen["totalAmount"] == "320.00" and seen["user"]["name"] == "Bob"
    assert (await read_order(gql, str(first.id), min_version=2) or {})["status"] == "RESERVED"
    assert (await read_product(gql, desk["id"], min_version=2) or {})["stock"] == 9

    # A rejected order cannot be paid or canceled, but it can be deleted; a reserved one cannot.
    assert (await error_of(gql, PAY_ORDER, id=str(second.id), method="PIX"))["code"] == "INVALID_STATE"
    assert (await error_of(gql, CANCEL_ORDER, id=str(second.id), reason="x"))["code"] == "INVALID_STATE"
    assert (await gql.data(DELETE_ORDER, id=str(second.id)))["deleteOrder"]["version"] == 3
    assert (await error_of(gql, DELETE_ORDER, id=str(first.id)))["code"] == "INVALID_STATE"
    assert await read_order(gql, str(second.id), min_version=3) is None


async def walk(
    gql: GraphQLClient, query: str, field: str, page_size: int, **filters: Any
) -> tuple[list[str], set[int]]:
    """Every page in turn: the order ids in the order served, and the totals the pages told."""
    ids: list[str] = []
    totals: set[int] = set()
    after = None
    while True:
        data = await gql.data(query, first=page_size, after=after, **filters)
        page = data["user"]["orders"] if field == "user" else data["orders"]
        ids += [node["id"] for node in page["nodes"]]
        totals.add(page["totalCount"])
        if not page["pageInfo"]["hasNextPage"]:
            return ids, totals
        after = page["pageInfo"]["endCursor"]


async def test_a_customers_orders_are_listed_newest_first_page_by_page(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    linus, other = await register_customer(gql, "Linus"), await register_customer(gql, "Other")
    tea = await stock_product(gql, unique("tea"), "3.50", 100)
    placed = [await place_order(gql, linus, (tea, n + 1)) for n in range(5)]
    theirs = await place_order(gql, other, (tea, 1))
    for order in (*placed, theirs):
        assert await decided(probe, order["id"]) == "RESERVED"
    for order in (placed[1], placed[3]):
        await gql.data(CANCEL_ORDER, id=order["id"], reason="duplicate")
    # Wait until the read model has every order in its last state.
    for n, order in enumerate(placed):
        assert await read_order(gql, order["id"], min_version=3 if n in (1, 3) else 2) is not None

    newest_first = [o["id"] for o in reversed(placed)]
    for page_size in (1, 2, 5, 20):
        assert await walk(gql, LIST_ORDERS, "orders", page_size, userId=linus["id"]) == (newest_first, {5})
    assert await walk(gql, LIST_ORDERS, "orders", 1, userId=linus["id"], status="CANCELED") == (
        [placed[3]["id"], placed[1]["id"]],
        {2},
    )
    reserved = [placed[4]["id"], placed[2]["id"], placed[0]["id"]]
    assert await walk(gql, LIST_ORDERS, "orders", 2, userId=linus["id"], status="RESERVED") == (reserved, {3})
    assert await walk(gql, LIST_ORDERS, "orders", 2, userId=other["id"]) == ([theirs["id"]], {1})
    assert await walk(gql, LIST_ORDERS, "orders", 2, userId=linus["id"], status="PAID") == ([], {0})

    # The same, from the customer.
    assert await walk(gql, USER_ORDERS, "user", 2, id=linus["id"]) == (newest_first, {5})
    assert await walk(gql, USER_ORDERS, "user", 2, id=linus["id"], status="RESERVED") == (reserved, {3})

    # Without a customer, the newest canceled orders of the shop include Linus's.
    everyone = (await gql.data(LIST_ORDERS, first=100, status="CANCELED"))["orders"]
    ids = [node["id"] for node in everyone["nodes"]]
    assert placed[3]["id"] in ids and placed[1]["id"] in ids
    assert ids == sorted(ids, key=int, reverse=True)
    assert {node["status"] for node in everyone["nodes"]} == {"CANCELED"}

    assert (await error_of(gql, LIST_ORDERS, first=2, userId="abc"))["code"] == "BAD_USER_INPUT"
    assert (await error_of(gql, LIST_ORDERS, first=101))["code"] == "BAD_USER_INPUT"
    # The canceled orders gave their stock back: 100 on the shelf, minus 1 + 3 + 5 and Other's 1 still held.
    await stock_settles_at(probe, tea["id"], 90)


FULFILMENT = ["CREATED", "RESERVED", "PAID", "PROCESSING", "SHIPPED", "DELIVERED"]
ORDER_TOPIC = {1: Topic.ORDER_CREATED, 2: Topic.ORDER_RESERVED, 3: Topic.ORDER_PAID}


def at(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}+00:00"


def order_event(order_id: int, user_id: int, version: int) -> Event:
    """An order event as the write side emits it: the full order (with its user at version 1) after the change."""
    data = {
        "id": order_id, "user_id": user_id,
        "user": {"id": user_id, "name": "Customer v1", "email": "c@example.com", "version": 1},
        "items": [{"product_id": 1, "product_name": "Tent", "quantity": 1, "unit_price": "120.00",
                   "subtotal": "120.00"}],
        "total_amount": "120.00", "status": FULFILMENT[version - 1],
        "payment_method": "PIX" if version >= 3 else None, "cancel_reason": None, "reject_reason": None,
        "history": [{"status": s, "at": at(n), "reason": None} for n, s in enumerate(FULFILMENT[:version], 1)],
        "version": version, "created_at": at(1), "updated_at": at(version),
        "paid_at": at(3) if version >= 3 else None, "canceled_at": None, "deleted_at": None,
    }  # fmt: skip
    return event_from(
        event_type=ORDER_TOPIC.get(version, Topic.ORDER_UPDATED), aggregate_type=AggregateType.ORDER,
        aggregate_id=order_id, aggregate_version=version, data=data,
    )  # fmt: skip


def user_renamed(user_id: int) -> Event:
    data = {"id": user_id, "name": "Customer v2", "email": "c@example.com", "version": 2,
            "created_at": at(0), "updated_at": at(30), "deleted_at": None}  # fmt: skip
    return event_from(
        event_type=Topic.USER_UPDATED, aggregate_type=AggregateType.USER, aggregate_id=user_id,
        aggregate_version=2, data=data,
    )  # fmt: skip


async def test_an_order_view_follows_its_events_and_its_customer_even_when_they_are_projected_at_once(
    mongo: Any,
) -> None:
    """An order's events travel on six topics and its customer's on a seventh; the projector runs them concurrently."""
    orders, users = OrderProjector(mongo), UserProjector(mongo)

    def apply(event: Event) -> Any:
        return (users if event.aggregate_type is AggregateType.USER else orders).apply(event)

    async def project(user_first: bool) -> dict[str, Any]:
        order_id, user_id = 3 * 10**12 + random.randrange(10**9), 3 * 10**12 + random.randrange(10**9)
        events = [order_event(order_id, user_id, version) for version in range(1, 7)]
        random.shuffle(events)
        if user_first:  # the customer's rename is projected before the order has a view at all
            await apply(user_renamed(user_id))
        else:
            events.insert(random.randrange(len(events) + 1), user_renamed(user_id))
        await asyncio.gather(*(apply(event) for event in events))
        view = await mongo["orders"].find_one({"_id": order_id})
        users_view = await ReadModel(mongo).users_by_id([user_id])
        placed_by = OrderUser.model_validate(view["user"])
        return {**view, "shows": current_user(placed_by, users_view.get(user_id)).model_dump()}

    for user_first in (True, False, False):
        view = await project(user_first)
        assert (view["version"], view["status"], len(view["history"])) == (6, "DELIVERED", 6)
        assert (view["shows"]["version"], view["shows"]["name"]) == (2, "Customer v2")
