"""Reservations that expire, on the real services: a customer who never pays loses the reservation at its
deadline and the stock goes back on the shelf; one who pays in time keeps it; a payment racing the expiry is
decided by the order's row lock; any number of expirers expire each order once; and a deadline that passed
while no expirer ran is applied when one starts.

The stories run in a lab with a short payment window (the relay, projector and stock worker in-process, the
expirer with the stock worker). The races run on a database of their own, the handlers and expirers called
directly, so nothing but the contenders touches the orders.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from command.db import WriteDatabase
from command.expiry import ReservationExpirer
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.pay_order import PayOrder, pay_order
from command.relay.housekeeping import Housekeeping
from command.stock_worker import handle_order_events
from eventshop.ops.verify import reservation_differences, settled_differences
from shared import metrics
from shared.errors import DomainError
from shared.events import OrderCreated, PaymentMethod
from shared.settings import Settings
from tests.conftest import GraphQLClient, eventually, in_process_admin, unique
from tests.integration.shop import (
    DELETE_ORDER,
    PAY_ORDER,
    error_of,
    place_order,
    read_order,
    read_product,
    register_customer,
    statuses,
    stock_product,
)
from tests.labs import Lab, lab_of, own_database, own_settings, running_system

TTL = 1.5
"""The lab's payment window, in seconds: short enough to wait for, long enough to pay within."""
RESERVED_FIELDS = "id status version reservedUntil history { status at reason }"
READ = f"query($id: ID!, $v: Int) {{ order(id: $id, minVersion: $v) {{ {RESERVED_FIELDS} }} }}"


@pytest.fixture(scope="module")
async def lab(settings: Settings) -> AsyncIterator[Lab]:
    windows = {"order_reservation_ttl_seconds": TTL, "order_expiry_poll_interval": 0.1}
    async with lab_of(settings, "expiry", **windows) as lab:
        async with running_system(lab.settings, lab.write_db, lab.mongo):
            yield lab


@pytest.fixture(scope="module")
async def shop(lab: Lab) -> AsyncIterator[GraphQLClient]:
    async with in_process_admin(lab.settings, lab.write_db, lab.read_model) as admin:
        yield admin


async def topics_of(lab: Lab, aggregate_type: str, aggregate_id: int | str) -> list[str]:
    """The events written for one aggregate, in the order written (the lab's outbox keeps them)."""
    rows = await lab.rows(
        "SELECT topic FROM outbox WHERE aggregate_type = %s AND aggregate_id = %s ORDER BY id",
        aggregate_type,
        int(aggregate_id),
    )
    return [row.topic for row in rows]


async def reserved(shop: GraphQLClient, order_id: str) -> dict[str, Any]:
    order = await read_order_fields(shop, order_id, 2)
    assert order["status"] == "RESERVED", order
    return order


async def read_order_fields(shop: GraphQLClient, order_id: str, version: int) -> dict[str, Any]:
    async def answered() -> dict[str, Any] | None:
        body = await shop.execute(READ, id=order_id, v=version)
        return None if body.get("errors") else body["data"]["order"]

    return await eventually(answered, timeout=60)


def instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp).astimezone(UTC)


async def test_an_unpaid_order_expires_at_its_deadline_and_its_lamps_go_back_on_the_shelf(
    lab: Lab, shop: GraphQLClient
) -> None:
    ada = await register_customer(shop, "Ada Lovelace")
    lamp = await stock_product(shop, unique("lamp"), "12.00", 5)

    # Ada puts three lamps in her cart; the stock worker reserves them and gives her until the deadline to pay.
    order = await place_order(shop, ada, (lamp, 3))
    waiting = await reserved(shop, order["id"])
    reserved_at = instant(waiting["history"][-1]["at"])
    assert instant(waiting["reservedUntil"]) == reserved_at + timedelta(seconds=TTL)
    assert (await read_product(shop, lamp["id"], 2))["stock"] == 2  # type: ignore[index]

    # She never pays. At the deadline the order EXPIRES and the lamps are back, in one transaction.
    expired = await read_order_fields(shop, order["id"], 3)
    assert (expired["status"], expired["reservedUntil"]) == ("EXPIRED", None)
    assert statuses(expired) == ["CREATED", "RESERVED", "EXPIRED"]
    assert expired["history"][-1]["reason"] == "payment not received before the reservation expired"
    assert instant(expired["history"][-1]["at"]) >= instant(waiting["reservedUntil"])
    assert (await read_product(shop, lamp["id"], 3))["stock"] == 5  # type: ignore[index]
    assert await topics_of(lab, "order", order["id"]) == ["order.created", "order.reserved", "order.expired"]
    assert await topics_of(lab, "product", lamp["id"]) == ["product.created", "stock.reserved", "stock.released"]
    (row,) = await lab.rows("SELECT status, stock_held, reserved_until FROM orders WHERE id = %s", int(order["id"]))
    assert (row.status, row.stock_held, row.reserved_until) == ("EXPIRED", 0, None)

    # Paying now is too late: refused, and nothing is written.
    before = await topics_of(lab, "order", order["id"])
    refusal = await error_of(shop, PAY_ORDER, id=order["id"], method="PIX")
    assert (refusal["code"], refusal["status"]) == ("INVALID_STATE", "EXPIRED")
    assert await topics_of(lab, "order", order["id"]) == before
    assert (await read_order_fields(shop, order["id"], 3))["version"] == 3

    # An expired order ended without a sale: it may be deleted, as a canceled one may.
    assert (await shop.data(DELETE_ORDER, id=order["id"]))["deleteOrder"]["version"] == 4
    await read_order(shop, order["id"], 4)
    assert await settled_differences(lab.write_db, lab.mongo, settle=20) == []


async def test_an_order_paid_in_time_keeps_its_stock_after_its_deadline(lab: Lab, shop: GraphQLClient) -> None:
    grace = await register_customer(shop, "Grace Hopper")
    kettle = await stock_product(shop, unique("kettle"), "30.00", 4)

    paid = await place_order(shop, grace, (kettle, 2))
    await reserved(shop, paid["id"])
    answer = (await shop.data(PAY_ORDER, id=paid["id"], method="CREDIT_CARD"))["payOrder"]
    assert (answer["status"], answer["version"]) == ("PAID", 3)

    # An order reserved after it expires: the expirers have passed the paid order's deadline by then.
    later = await place_order(shop, grace, (kettle, 1))
    await reserved(shop, later["id"])
    assert (await read_order_fields(shop, later["id"], 3))["status"] == "EXPIRED"

    kept = await read_order_fields(shop, paid["id"], 3)
    assert (kept["status"], kept["version"], kept["reservedUntil"]) == ("PAID", 3, None)
    assert await topics_of(lab, "order", paid["id"]) == ["order.created", "order.reserved", "order.paid"]
    assert (await read_product(shop, kettle["id"], 4))["stock"] == 2  # type: ignore[index]


# --- races, on a database of their own ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def race_db(settings: Settings) -> AsyncIterator[WriteDatabase]:
    async with own_database(own_settings(settings, "expiryrace"), pool_size=10) as db:
        yield db


async def reserve_due(db: WriteDatabase, product_id: int, user_id: int, count: int, quantity: int = 1) -> list[int]:
    """`count` orders reserved with a payment window of nothing: each due at once."""
    placed = [
        await create_order(db, CreateOrder(user_id, (RequestedLine(product_id, quantity),))) for _ in range(count)
    ]
    await handle_order_events(db, [OrderCreated.of(order) for order in placed], payment_window=timedelta(0))
    return [order.id for order in placed]


async def new_shelf(db: WriteDatabase, stock: int) -> tuple[int, int]:
    user = await create_user(db, CreateUser("Racer", f"{unique('racer')}@example.com"))
    product = await create_product(db, CreateProduct(unique("widget"), Decimal("5.00"), stock))
    return user.id, product.id


async def order_topics(db: WriteDatabase, order_ids: list[int]) -> dict[int, Counter[str]]:
    async with db.engine.connect() as conn:
        marks = ", ".join(str(i) for i in order_ids)
        rows = await conn.exec_driver_sql(
            f"SELECT aggregate_id, topic FROM outbox WHERE aggregate_type = 'order' AND aggregate_id IN ({marks})"
        )
        found: dict[int, Counter[str]] = {i: Counter() for i in order_ids}
        for row in rows:
            found[row.aggregate_id][row.topic] += 1
        return found


async def scalar(db: WriteDatabase, sql: str, *params: Any) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.exec_driver_sql(sql, params)).scalar()


async def test_payment_racing_the_expiry_is_decided_by_the_row_lock_every_time(
    race_db: WriteDatabase, settings: Settings
) -> None:
    """Forty orders, each due the moment it is reserved; for each, a payment and two expirers at once, one or the
    other sent first. Whichever commits first wins: paid and keeping its stock, or expired with its stock back
    once; the payment that lost is INVALID_STATE, the expiry that lost does nothing."""
    user, product = await new_shelf(race_db, 1000)
    expirers = [ReservationExpirer(race_db, settings) for _ in range(2)]
    outcomes: Counter[str] = Counter()
    rounds = 40
    for n in range(rounds):
        (order,) = await reserve_due(race_db, product, user, 1, quantity=2)
        paying = pay_order(race_db, PayOrder(order, PaymentMethod.PIX))
        expiring = [expirer.expire_once() for expirer in expirers]
        contenders = [paying, *expiring] if n % 2 == 0 else [*expiring, paying]
        results = await asyncio.gather(*contenders, return_exceptions=True)
        payment = results[0] if n % 2 == 0 else results[-1]
        expiries = results[1:] if n % 2 == 0 else results[:-1]
        assert all(isinstance(r, int) for r in expiries), expiries  # an expiry that lost does nothing, quietly
        expired = sum(expiries)  # type: ignore[arg-type]
        status = await scalar(race_db, "SELECT status FROM orders WHERE id = %s", order)
        if isinstance(payment, DomainError):
            assert (payment.code, status, expired) == ("INVALID_STATE", "EXPIRED", 1), (payment, status, expired)
        else:
            assert not isinstance(payment, BaseException), payment
            assert (status, expired) == ("PAID", 0), (status, expired)
        outcomes[status] += 1

    assert sum(outcomes.values()) == rounds and set(outcomes) == {"PAID", "EXPIRED"}, outcomes
    ids = [int(i) for (i,) in await _ids(race_db, user)]
    for order, topics in (await order_topics(race_db, ids)).items():
        assert topics["order.paid"] + topics["order.expired"] == 1, (order, topics)
    # Each paid order keeps its two widgets; each expired one gave them back exactly once.
    released = await scalar(
        race_db, "SELECT COUNT(*) FROM outbox WHERE topic = 'stock.released' AND `key` = %s", str(product)
    )
    assert released == outcomes["EXPIRED"]
    assert await scalar(race_db, "SELECT stock FROM products WHERE id = %s", product) == 1000 - 2 * outcomes["PAID"]
    assert (
        await scalar(race_db, "SELECT COUNT(*) FROM orders WHERE user_id = %s AND stock_held", user) == outcomes["PAID"]
    )


async def _ids(db: WriteDatabase, user: int) -> list[Any]:
    async with db.engine.connect() as conn:
        return list(await conn.exec_driver_sql("SELECT id FROM orders WHERE user_id = %s", (user,)))


async def test_deadlines_that_passed_while_no_expirer_ran_are_applied_once_by_many(
    race_db: WriteDatabase, settings: Settings
) -> None:
    """120 orders came due while nothing ran (the relay's metrics see them overdue, verify reports them); four
    expirers then start at once, each taking ten at a time: every order expires once, its stock comes back once."""
    user, product = await new_shelf(race_db, 500)
    due = await reserve_due(race_db, product, user, 120, quantity=3)
    assert await scalar(race_db, "SELECT stock FROM products WHERE id = %s", product) == 500 - 360

    await Housekeeping(race_db.engine, settings).measure_backlog()
    assert metrics.RESERVATIONS_OVERDUE.collect()[0].samples[0].value >= 120
    assert metrics.RESERVATIONS_OVERDUE_OLDEST.collect()[0].samples[0].value > 0
    owed = {d.id for d in await reservation_differences(race_db)}
    assert owed >= set(due)

    expired_before = _expired_total()
    small = settings.model_copy(update={"order_expiry_batch": 10, "order_expiry_poll_interval": 0.05})
    stopping = asyncio.Event()
    running = [asyncio.create_task(ReservationExpirer(race_db, small).run(stopping)) for _ in range(4)]
    try:

        async def all_expired() -> bool:
            left = await scalar(race_db, "SELECT COUNT(*) FROM orders WHERE user_id = %s AND status = 'RESERVED'", user)
            return left == 0

        await eventually(all_expired, timeout=60)
    finally:
        stopping.set()
        await asyncio.gather(*running)

    for order, topics in (await order_topics(race_db, due)).items():
        assert topics == Counter({"order.created": 1, "order.reserved": 1, "order.expired": 1}), (order, topics)
    released = await scalar(
        race_db, "SELECT COUNT(*) FROM outbox WHERE topic = 'stock.released' AND `key` = %s", str(product)
    )
    assert released == 120
    assert await scalar(race_db, "SELECT stock FROM products WHERE id = %s", product) == 500
    assert _expired_total() - expired_before == 120
    assert not set(due) & {d.id for d in await reservation_differences(race_db)}
    await Housekeeping(race_db.engine, settings).measure_backlog()
    assert metrics.RESERVATIONS_OVERDUE.collect()[0].samples[0].value == 0


def _expired_total() -> float:
    return next(s.value for s in metrics.ORDERS_EXPIRED.collect()[0].samples if s.name.endswith("_total"))


async def test_an_order_not_yet_due_is_left_alone_by_the_expirer(race_db: WriteDatabase, settings: Settings) -> None:
    user, product = await new_shelf(race_db, 10)
    order = await create_order(race_db, CreateOrder(user, (RequestedLine(product, 1),)))
    await handle_order_events(race_db, [OrderCreated.of(order)], payment_window=timedelta(minutes=15))
    assert await ReservationExpirer(race_db, settings).expire_once() == 0
    assert await scalar(race_db, "SELECT status FROM orders WHERE id = %s", order.id) == "RESERVED"
    assert order.id not in {d.id for d in await reservation_differences(race_db)}
