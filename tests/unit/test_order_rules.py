"""The order's rules, told as the shop lives them, with no service at all: place the order, reserve the stock,
pay, ship; and every move the rules refuse, with the error code the client gets. What only the databases can
show (locks, the outbox, the projections) is in tests/integration.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from command.domain import stock
from command.domain.customer import Customer
from command.domain.order import NewOrder, Order, check_request
from command.domain.product import Product
from command.domain.stock import Expired, Rejected, Reserved
from command.domain.user import User
from command.handlers.create_order import CreateOrder, RequestedLine
from shared.events import (
    OrderCanceled,
    OrderCreated,
    OrderDeleted,
    OrderExpired,
    OrderPaid,
    OrderRejected,
    OrderReserved,
    OrderStatus,
    OrderUpdated,
    PaymentMethod,
    ProductSnapshot,
    StockReleased,
    StockReserved,
    UserSnapshot,
)
from shared.settings import Settings
from tests.doubles import refused

OPENING = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def minute(n: int) -> datetime:
    return OPENING + timedelta(minutes=n)


def customer(name: str = "Ada Lovelace", *, deleted: bool = False) -> User:
    return User(
        UserSnapshot(
            id=1, version=1, created_at=OPENING, updated_at=OPENING, name=name, email="ada@example.com",
            deleted_at=OPENING if deleted else None,
        )
    )  # fmt: skip


def shelf(*products: tuple[int, str, str, int]) -> dict[int, Product]:
    """Products by id from (id, name, price, stock)."""
    return {
        pid: Product(
            ProductSnapshot(
                id=pid, version=1, created_at=OPENING, updated_at=OPENING, name=name, description="",
                price=Decimal(price), stock=count,
            )
        )
        for pid, name, price, count in products
    }  # fmt: skip


def asks(*lines: tuple[Any, ...]) -> CreateOrder:
    """Ada's request: (product id, quantity[, the unit price she saw])."""
    return CreateOrder(1, tuple(RequestedLine(*line) for line in lines))


def placed(request: CreateOrder, products: dict[int, Product], order_id: int = 7) -> tuple[Order, OrderCreated]:
    check_request(request)
    return NewOrder.place(request, customer(), products, minute(0)).created(order_id)


def statuses(order: Order) -> list[str]:
    return [change.status.value for change in order.state.history]


def test_an_order_is_placed_reserved_paid_shipped_and_delivered() -> None:
    products = shelf((10, "Keyboard", "49.90", 10), (11, "Mouse", "19.95", 5))

    # Ada orders two keyboards (guarding the price she saw) and three mice.
    order, created = placed(asks((10, 2, Decimal("49.90")), (11, 3)), products)
    assert isinstance(created, OrderCreated) and created.data == order.state
    assert (order.id, order.version, order.status) == (7, 1, OrderStatus.CREATED)
    assert [(i.product_name, i.quantity, i.unit_price, i.subtotal) for i in order.state.items] == [
        ("Keyboard", 2, Decimal("49.90"), Decimal("99.80")),
        ("Mouse", 3, Decimal("19.95"), Decimal("59.85")),
    ]
    assert order.state.total_amount == Decimal("159.65")  # computed by the shop, not sent by the client
    assert (order.state.user.name, order.state.user_id) == ("Ada Lovelace", 1)
    assert statuses(order) == ["CREATED"] and order.awaits_stock

    # The stock worker reserves every line: one stock move per line, then the order RESERVED.
    reservation = stock.reserve(order, products, minute(1))
    assert isinstance(reservation, Reserved)
    assert [(m.aggregate_id, m.order_id, m.quantity, m.data.stock) for m in reservation.moves] == [
        (10, 7, 2, 8),
        (11, 7, 3, 2),
    ]
    assert all(isinstance(m, StockReserved) for m in reservation.moves)
    assert isinstance(reservation.order, OrderReserved) and reservation.events[-1] is reservation.order
    assert (products[10].stock, products[10].version, products[11].stock) == (8, 2, 2)
    assert (order.status, order.version, order.stock_held) == (OrderStatus.RESERVED, 2, True)

    # Ada pays.
    paid = order.pay(PaymentMethod.CREDIT_CARD, minute(2))
    assert isinstance(paid, OrderPaid) and paid.aggregate_version == 3 and paid.data == order.state
    # Each event occurred at the time the rule was given, as the change it announces: no other clock.
    assert (created.occurred_at, reservation.moves[0].occurred_at, paid.occurred_at) == (
        minute(0),
        minute(1),
        minute(2),
    )
    assert paid.occurred_at == order.state.updated_at
    assert order.state.payment_method is PaymentMethod.CREDIT_CARD and order.state.paid_at == minute(2)

    # The shop processes, ships and delivers, one step at a time.
    steps = (OrderStatus.PROCESSING, OrderStatus.SHIPPED, OrderStatus.DELIVERED)
    moves = [order.fulfil(status, minute(3 + n)) for n, status in enumerate(steps)]
    assert all(isinstance(m, OrderUpdated) for m in moves)
    assert [m.aggregate_version for m in moves] == [4, 5, 6]
    assert statuses(order) == ["CREATED", "RESERVED", "PAID", "PROCESSING", "SHIPPED", "DELIVERED"]
    assert [c.at for c in order.state.history] == [minute(n) for n in range(6)]
    # Paying and fulfilling never touched the stock again; the price Ada ordered at stays hers.
    assert (products[10].stock, products[11].stock) == (8, 2)
    assert order.state.total_amount == Decimal("159.65")


def test_an_order_cannot_be_paid_before_it_is_reserved() -> None:
    order, _ = placed(asks((10, 1)), shelf((10, "Sofa", "499.00", 1)))
    refused(lambda: order.pay(PaymentMethod.PIX, minute(1)), code="INVALID_STATE", status="CREATED")
    assert (order.status, order.version, statuses(order)) == (OrderStatus.CREATED, 1, ["CREATED"])


def test_a_shipped_order_cannot_be_canceled_paid_again_or_deleted() -> None:
    products = shelf((10, "Bike", "900.00", 3))
    order, _ = placed(asks((10, 1)), products)
    stock.reserve(order, products, minute(1))
    order.pay(PaymentMethod.BOLETO, minute(2))
    order.fulfil(OrderStatus.PROCESSING, minute(3))
    order.fulfil(OrderStatus.SHIPPED, minute(4))
    before = order.state

    refused(lambda: order.cancel("too late", minute(5)), code="INVALID_STATE", status="SHIPPED")
    refused(lambda: order.pay(PaymentMethod.PIX, minute(5)), code="INVALID_STATE", status="SHIPPED")
    refused(lambda: order.delete(minute(5)), code="INVALID_STATE", status="SHIPPED")
    assert order.state == before  # a refused move changes nothing


def test_a_shortfall_rejects_the_whole_order_and_takes_no_stock() -> None:
    products = shelf((10, "Desk", "150.00", 10), (11, "Lamp", "20.00", 1))
    order, _ = placed(asks((10, 2), (11, 1)), products)
    products[11].take(1, order_id=6, now=minute(1))  # someone else's order got the last lamp first

    outcome = stock.reserve(order, products, minute(2))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "insufficient stock for product 11: requested 1, available 0"
    assert isinstance(outcome.order, OrderRejected) and outcome.order.reason == outcome.reason
    assert outcome.events == (outcome.order,)  # no stock move at all: not even the desks
    assert (products[10].stock, products[10].version) == (10, 1)
    assert (order.status, order.state.reject_reason, order.stock_held) == (
        OrderStatus.REJECTED,
        outcome.reason,
        False,
    )
    assert [(c.status.value, c.reason) for c in order.state.history] == [
        ("CREATED", None),
        ("REJECTED", outcome.reason),
    ]

    # A rejected order cannot be paid or canceled, but it can be deleted.
    refused(lambda: order.pay(PaymentMethod.PIX, minute(3)), code="INVALID_STATE", status="REJECTED")
    refused(lambda: order.cancel("x", minute(3)), code="INVALID_STATE", status="REJECTED")
    deleted = order.delete(minute(3))
    assert isinstance(deleted, OrderDeleted) and order.state.deleted_at == minute(3) and order.version == 3


def test_a_product_taken_off_the_shelf_rejects_the_order_waiting_for_it() -> None:
    products = shelf((10, "Quill", "9.00", 3))
    order, _ = placed(asks((10, 1)), products)
    products[10].delete(minute(1))
    outcome = stock.reserve(order, products, minute(2))
    assert isinstance(outcome, Rejected) and outcome.reason == "product 10 is no longer available"
    # And one the write model no longer has at all.
    other, _ = placed(asks((10, 1)), shelf((10, "Quill", "9.00", 3)), order_id=8)
    outcome = stock.reserve(other, {}, minute(2))
    assert isinstance(outcome, Rejected) and outcome.reason == "product 10 is no longer available"


def test_a_reserved_order_is_canceled_and_its_stock_comes_back() -> None:
    products = shelf((10, "Lamp", "12.00", 4), (11, "Bulb", "2.50", 10))
    order, _ = placed(asks((10, 3), (11, 4)), products)
    stock.reserve(order, products, minute(1))

    canceled = order.cancel("  found a cheaper lamp  ", minute(2))
    assert isinstance(canceled, OrderCanceled) and canceled.reason == "found a cheaper lamp"
    assert (order.state.cancel_reason, order.state.canceled_at, order.version) == (
        "found a cheaper lamp",
        minute(2),
        3,
    )
    assert order.owes_stock

    released = stock.release(order, products, minute(3))
    assert all(isinstance(m, StockReleased) for m in released)
    assert [(m.aggregate_id, m.quantity, m.data.stock) for m in released] == [(10, 3, 4), (11, 4, 10)]
    assert not order.stock_held and order.version == 3  # giving the stock back is not a move of the order
    assert stock.release(order, products, minute(4)) == ()  # and it is given back once
    assert (products[10].stock, products[11].stock) == (4, 10)
    refused(lambda: order.cancel("again", minute(5)), code="INVALID_STATE", status="CANCELED")


def test_an_order_canceled_before_its_reservation_holds_no_stock() -> None:
    products = shelf((10, "Guitar", "350.00", 3))
    order, _ = placed(asks((10, 2)), products)
    order.cancel("ordered by mistake", minute(1))
    assert not order.awaits_stock and not order.owes_stock
    assert stock.release(order, products, minute(2)) == ()
    refused(lambda: stock.reserve(order, products, minute(2)), code="INVALID_STATE", status="CANCELED")
    assert (products[10].stock, products[10].version) == (3, 1)


WINDOW = timedelta(minutes=15)
"""The payment window of these stories: a reservation waits a quarter of an hour for its payment."""


def test_an_unpaid_reservation_expires_at_its_deadline_and_its_stock_comes_back() -> None:
    products = shelf((10, "Lamp", "12.00", 4), (11, "Bulb", "2.50", 10))
    order, _ = placed(asks((10, 3), (11, 4)), products)

    # Reserved at minute 1: Ada has until minute 16 to pay.
    reserved = stock.reserve(order, products, minute(1), WINDOW)
    assert isinstance(reserved, Reserved) and reserved.order.data.reserved_until == minute(16)
    assert (products[10].stock, products[11].stock) == (1, 6)

    # A minute before the deadline nothing is due, and expiring is refused.
    assert not order.due(minute(15)) and stock.expire(order, products, minute(15)) is None
    refused(lambda: order.expire(minute(15)), code="INVALID_STATE", status="RESERVED")
    assert (order.status, order.version, products[10].version) == (OrderStatus.RESERVED, 2, 2)

    # She never pays: at minute 16 the order expires and both lines go back, in the same decision.
    outcome = stock.expire(order, products, minute(16))
    assert isinstance(outcome, Expired) and isinstance(outcome.order, OrderExpired)
    assert outcome.events == (outcome.order, *outcome.moves)
    assert all(isinstance(m, StockReleased) for m in outcome.moves)
    assert [(m.aggregate_id, m.order_id, m.quantity, m.data.stock) for m in outcome.moves] == [
        (10, 7, 3, 4),
        (11, 7, 4, 10),
    ]
    assert (order.status, order.version, order.stock_held, order.state.reserved_until) == (
        OrderStatus.EXPIRED, 3, False, None,
    )  # fmt: skip
    assert outcome.order.data == order.state
    assert [(c.status.value, c.at) for c in order.state.history][-1] == ("EXPIRED", minute(16))
    assert order.state.history[-1].reason == "payment not received before the reservation expired"

    # Expired is final: not expired again, not paid, not canceled, no stock given back twice; it may be deleted.
    assert stock.expire(order, products, minute(17)) is None
    assert stock.release(order, products, minute(17)) == ()
    refused(lambda: order.pay(PaymentMethod.PIX, minute(17)), code="INVALID_STATE", status="EXPIRED")
    refused(lambda: order.cancel("too late", minute(17)), code="INVALID_STATE", status="EXPIRED")
    assert (products[10].stock, products[11].stock) == (4, 10)
    assert isinstance(order.delete(minute(18)), OrderDeleted)


def test_an_order_paid_or_canceled_before_its_deadline_never_expires() -> None:
    products = shelf((10, "Tent", "120.00", 5))
    paid, _ = placed(asks((10, 1)), products, order_id=7)
    stock.reserve(paid, products, minute(1), WINDOW)
    paid.pay(PaymentMethod.CREDIT_CARD, minute(15))  # in time; the deadline goes with the reservation
    assert paid.state.reserved_until is None
    assert stock.expire(paid, products, minute(60)) is None and paid.status is OrderStatus.PAID
    refused(lambda: paid.expire(minute(60)), code="INVALID_STATE", status="PAID")

    canceled, _ = placed(asks((10, 1)), products, order_id=8)
    stock.reserve(canceled, products, minute(1), WINDOW)
    canceled.cancel("changed my mind", minute(2))
    assert stock.expire(canceled, products, minute(60)) is None and canceled.status is OrderStatus.CANCELED
    assert canceled.owes_stock  # the cancel's own release gives it back (the stock worker, on order.canceled)
    assert products[10].stock == 3


def test_a_reservation_without_a_payment_window_waits_for_ever() -> None:
    products = shelf((10, "Chair", "80.00", 2))
    order, _ = placed(asks((10, 1)), products)
    stock.reserve(order, products, minute(1))  # ORDER_RESERVATION_TTL_SECONDS=0: no window
    assert order.state.reserved_until is None
    assert not order.due(minute(60 * 24 * 365)) and stock.expire(order, products, minute(60 * 24 * 365)) is None
    refused(lambda: order.expire(minute(60 * 24 * 365)), code="INVALID_STATE", status="RESERVED")


def test_the_payment_window_is_a_quarter_of_an_hour_unless_set_and_zero_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORDER_RESERVATION_TTL_SECONDS", raising=False)

    def window(**values: object) -> timedelta | None:
        return Settings(_env_file=None, **values).payment_window  # type: ignore[arg-type]

    assert window() == WINDOW
    assert window(order_reservation_ttl_seconds=2.5) == timedelta(seconds=2.5)
    assert window(order_reservation_ttl_seconds=0) is None
    with pytest.raises(ValidationError):
        window(order_reservation_ttl_seconds=-1)


def test_an_order_that_awaits_its_stock_does_not_expire() -> None:
    order, _ = placed(asks((10, 1)), shelf((10, "Bike", "900.00", 1)))
    assert not order.due(minute(60))
    refused(lambda: order.expire(minute(60)), code="INVALID_STATE", status="CREATED")


def test_fulfilment_moves_one_step_at_a_time_and_only_fulfilment() -> None:
    products = shelf((10, "Chair", "80.00", 10))
    order, _ = placed(asks((10, 1)), products)
    refused(lambda: order.fulfil(OrderStatus.PROCESSING, minute(1)), code="INVALID_STATE", status="CREATED")
    stock.reserve(order, products, minute(1))
    refused(lambda: order.fulfil(OrderStatus.PROCESSING, minute(2)), code="INVALID_STATE", status="RESERVED")
    refused(lambda: order.delete(minute(2)), code="INVALID_STATE", status="RESERVED")
    order.pay(PaymentMethod.PIX, minute(2))
    refused(lambda: order.fulfil(OrderStatus.SHIPPED, minute(3)), code="INVALID_STATE", status="PAID")

    def move_to(status: OrderStatus) -> Callable[[], object]:
        return lambda: order.fulfil(status, minute(3))

    # updateOrder moves fulfilment only: the other statuses have commands of their own, or none.
    for status in ("CREATED", "RESERVED", "REJECTED", "PAID", "CANCELED", "EXPIRED"):
        refused(move_to(OrderStatus(status)), code="BAD_USER_INPUT", field="input.status")
    # The caller's view of the order must be the current one.
    refused(lambda: order.fulfil(OrderStatus.PROCESSING, minute(3), 2), code="CONFLICT", actual_version=3)
    assert order.fulfil(OrderStatus.PROCESSING, minute(3), expected_version=3).aggregate_version == 4


@pytest.mark.parametrize(
    ("reason", "field"), [("", "reason"), ("   ", "reason"), ("x" * 501, "reason")], ids=["empty", "blank", "long"]
)
def test_a_cancel_needs_a_reason_of_at_most_500_characters(reason: str, field: str) -> None:
    order, _ = placed(asks((10, 1)), shelf((10, "Tent", "120.00", 2)))
    refused(lambda: order.cancel(reason, minute(1)), code="BAD_USER_INPUT", field=field)
    assert order.status is OrderStatus.CREATED
    assert order.cancel("x" * 500, minute(1)).reason == "x" * 500


def test_the_total_is_the_sum_of_the_lines_at_the_products_prices() -> None:
    products = shelf((10, "Pen", "1.20", 5), (11, "Ink", "4.00", 2), (12, "Part", "0.01", 10_000))
    order, _ = placed(asks((10, 5, Decimal("1.2")), (11, 2, Decimal("4"))), products)
    assert order.state.total_amount == Decimal("14.00")  # the exact price, written any way, is fine
    many, _ = placed(asks((12, 10_000)), products)
    assert many.state.total_amount == Decimal("100.00")

    # A client holding an old price is told the current one.
    refused(
        lambda: placed(asks((10, 1, Decimal("1.19"))), products),
        code="PRICE_CHANGED", field="items[0].unitPrice", current_price="1.20",
    )  # fmt: skip
    # No total beyond what the money columns hold.
    dear = shelf((20, "Yacht", "9999999999.99", 2))
    refused(lambda: placed(asks((20, 2)), dear), code="BAD_USER_INPUT", field="items")


def test_placing_an_order_needs_a_live_customer_and_products_that_fit() -> None:
    products = shelf((10, "Pen", "1.20", 5), (11, "Ink", "4.00", 2), (12, "Stamp", "0.80", 0))
    products[13] = shelf((13, "Quill", "9.00", 3))[13]
    products[13].delete(minute(0))

    def place(*lines: tuple[Any, ...], who: User | None = None) -> Callable[[], object]:
        return lambda: NewOrder.place(asks(*lines), who or customer(), products, minute(1))

    refused(lambda: NewOrder.place(asks((10, 1)), None, products, minute(1)), code="NOT_FOUND", field="userId")
    refused(place((10, 1), who=customer(deleted=True)), code="NOT_FOUND", field="userId")
    refused(place((10, 1), (99, 1)), code="NOT_FOUND", field="items[1].productId")
    refused(place((13, 1)), code="NOT_FOUND", field="items[0].productId")
    refused(place((10, 6)), code="INSUFFICIENT_STOCK", field="items[0].quantity", available=5)
    refused(place((10, 5), (11, 3)), code="INSUFFICIENT_STOCK", field="items[1].quantity", available=2)
    refused(place((12, 1)), code="INSUFFICIENT_STOCK", field="items[0].quantity", available=0)
    assert products[10].stock == 5  # placing only reads the shelf: the stock worker reserves


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ((), "items"),
        (tuple((n, 1) for n in range(1, 102)), "items"),
        (((10, 0),), "items[0].quantity"),
        (((10, -1),), "items[0].quantity"),
        (((10, 10_001),), "items[0].quantity"),
        (((10, 1), (11, 1), (10, 2)), "items[2]"),
        (((10, 1, Decimal("0")),), "items[0].unitPrice"),
        (((10, 1, Decimal("1.205")),), "items[0].unitPrice"),
    ],
    ids=["no-lines", "101-lines", "zero", "negative", "too-many", "twice", "free", "three-decimals"],
)
def test_a_malformed_request_is_bad_user_input_naming_the_field(lines: tuple[tuple[Any, ...], ...], field: str) -> None:
    refused(lambda: check_request(asks(*lines)), code="BAD_USER_INPUT", field=field)


def test_a_hundred_lines_and_ten_thousand_of_one_thing_are_fine() -> None:
    check_request(asks((1, 10_000), *((n, 1) for n in range(2, 101))))


def test_a_customer_moves_only_their_own_orders() -> None:
    """Staff move any order; a customer's command refuses another user's order, named as the policy named it."""
    ada = Customer(user_id=1, operation="cancelOrder")
    ada.require_owner(7, owner=1)
    refused(lambda: ada.require_owner(7, owner=2), code="FORBIDDEN", field="id")
    refused(lambda: ada.require_owner(8, owner=None), code="NOT_FOUND", field="id")
