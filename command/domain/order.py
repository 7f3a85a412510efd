"""The order: placed with the products' prices and names of the moment, then moved through its life.

```
CREATED --reserve ok--> RESERVED --pay--> PAID --> PROCESSING --> SHIPPED --> DELIVERED
   |  \\--reserve fail--> REJECTED
   \\--cancel--> CANCELED <--cancel-- RESERVED   (cancel from RESERVED releases the stock)
                                       \\--unpaid at its deadline--> EXPIRED   (releases the stock)
```
Every move is a new version, one line in the status history and one event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from command.domain.aggregate import Aggregate, require_utc
from command.domain.product import Product
from command.domain.user import User
from command.validation import MAX_ORDER_LINES, MAX_QUANTITY, MAX_REASON, require_int, require_price, require_text
from shared.errors import BadUserInput, InsufficientStock, InvalidState, NotFound, PriceChanged
from shared.events import (
    OrderCanceled,
    OrderCreated,
    OrderDeleted,
    OrderExpired,
    OrderLine,
    OrderPaid,
    OrderRejected,
    OrderReserved,
    OrderSnapshot,
    OrderStatus,
    OrderUpdated,
    OrderUser,
    PaymentMethod,
    StatusChange,
)
from shared.money import MAX_AMOUNT

ENDED_UNSOLD = (OrderStatus.CANCELED, OrderStatus.EXPIRED)
"""Ended without a sale after the stock may have been reserved: what the order held goes back to the shelf."""
EXPIRY_REASON = "payment not received before the reservation expired"

FULFILMENT_STEPS = {
    OrderStatus.PROCESSING: OrderStatus.PAID,
    OrderStatus.SHIPPED: OrderStatus.PROCESSING,
    OrderStatus.DELIVERED: OrderStatus.SHIPPED,
}
"""Each fulfilment status and the one it is reached from: one step at a time."""


@dataclass(frozen=True)
class RequestedLine:
    """A line as the customer asks for it: a product, how many, and perhaps the price they saw."""

    product_id: int
    quantity: int
    unit_price: Decimal | None = None


class OrderRequest(Protocol):
    """What the customer asks for: who orders, and the lines."""

    @property
    def user_id(self) -> int: ...
    @property
    def lines(self) -> Sequence[RequestedLine]: ...


def check_request(request: OrderRequest) -> None:
    """What a request must be before any product is looked at: 1 to 100 distinct lines of 1 to 10000."""
    lines = request.lines
    if not 1 <= len(lines) <= MAX_ORDER_LINES:
        raise BadUserInput(f"an order has 1 to {MAX_ORDER_LINES} lines", field="items")
    seen: set[int] = set()
    for i, line in enumerate(lines):
        require_int(line.quantity, f"items[{i}].quantity", low=1, high=MAX_QUANTITY)
        if line.unit_price is not None:
            require_price(line.unit_price, f"items[{i}].unitPrice")
        if line.product_id in seen:
            raise BadUserInput(f"product {line.product_id} appears twice; merge the lines", field=f"items[{i}]")
        seen.add(line.product_id)


def _priced(i: int, line: RequestedLine, product: Product | None) -> OrderLine:
    """One line at the product's price and name of the moment; a client's unitPrice is only a guard."""
    if product is None or not product.available:
        raise NotFound(f"product {line.product_id} not found", field=f"items[{i}].productId")
    price = product.state.price
    if line.unit_price is not None and line.unit_price != price:
        raise PriceChanged(
            f"product {product.id} costs {price}, not {line.unit_price}",
            field=f"items[{i}].unitPrice",
            current_price=str(price),
        )
    if line.quantity > product.stock:  # fail fast; the reservation itself is the stock worker's
        raise InsufficientStock(
            f"product {product.id} has {product.stock} in stock, {line.quantity} requested",
            field=f"items[{i}].quantity",
            available=product.stock,
        )
    return OrderLine(
        product_id=product.id,
        product_name=product.state.name,
        quantity=line.quantity,
        unit_price=price,
        subtotal=price * line.quantity,
    )


@dataclass(frozen=True)
class NewOrder:
    """An order the rules accept, before the database gives it its id."""

    user: OrderUser
    items: tuple[OrderLine, ...]
    total_amount: Decimal
    at: datetime

    @classmethod
    def place(
        cls, request: OrderRequest, user: User | None, products: Mapping[int, Product], now: datetime
    ) -> NewOrder:
        """The order of a checked request (`check_request`) by this user, priced from the products; its total
        is the sum of its lines, computed here, never sent by the client."""
        if user is None or user.state.deleted_at is not None:
            raise NotFound(f"user {request.user_id} not found", field="userId")
        items = tuple(_priced(i, line, products.get(line.product_id)) for i, line in enumerate(request.lines))
        total = sum((item.subtotal for item in items), Decimal("0.00"))
        if total > MAX_AMOUNT:
            raise BadUserInput(f"order total {total} exceeds {MAX_AMOUNT}", field="items")
        order_user = OrderUser(id=user.id, name=user.state.name, email=user.state.email, version=user.version)
        return cls(order_user, items, total, require_utc(now))

    @property
    def history(self) -> tuple[StatusChange, ...]:
        return (StatusChange(status=OrderStatus.CREATED, at=self.at),)

    def created(self, order_id: int) -> tuple[Order, OrderCreated]:
        """The order under the id the database gave it, and the event that announces it."""
        state = OrderSnapshot(
            id=order_id,
            version=1,
            created_at=self.at,
            updated_at=self.at,
            user_id=self.user.id,
            user=self.user,
            items=self.items,
            total_amount=self.total_amount,
            status=OrderStatus.CREATED,
            history=self.history,
        )
        order = Order(state, stored_history=len(self.history))
        return order, order._record(OrderCreated.of(state))


@dataclass
class Order(Aggregate[OrderSnapshot]):
    stock_held: bool = False
    """The order holds reserved stock (from its reservation until a cancellation gave it back)."""
    stored_history: int = 0
    """How many lines of the status history the write model holds already; the save appends the others."""

    @property
    def status(self) -> OrderStatus:
        return self.state.status

    @property
    def awaits_stock(self) -> bool:
        """Placed and not yet reserved or rejected (nor canceled before the stock worker got to it)."""
        return self.status is OrderStatus.CREATED

    @property
    def owes_stock(self) -> bool:
        """Canceled or expired while holding stock: the stock goes back to the shelf."""
        return self.stock_held and self.status in ENDED_UNSOLD

    def due(self, now: datetime) -> bool:
        """RESERVED, unpaid, and its payment deadline has come."""
        deadline = self.state.reserved_until
        return self.status is OrderStatus.RESERVED and deadline is not None and require_utc(now) >= deadline

    def reserve(self, now: datetime, payment_window: timedelta | None = None) -> OrderReserved:
        """The stock is the order's until it is paid, or until `payment_window` from now has passed (None: held
        until paid or canceled)."""
        self._require(OrderStatus.CREATED, action="reserve")
        self.stock_held = True
        deadline = None if payment_window is None else require_utc(now) + payment_window
        return self._record(OrderReserved.of(self._move(OrderStatus.RESERVED, now, reserved_until=deadline)))

    def expire(self, now: datetime) -> OrderExpired:
        """Still unpaid at its deadline: EXPIRED, and the stock it held is owed back to the shelf."""
        self._require(OrderStatus.RESERVED, action="expire")
        if not self.due(now):
            raise InvalidState(
                f"order {self.id} is reserved until {self.state.reserved_until}, not due at {now}",
                status=self.status.value,
            )
        return self._record(OrderExpired.of(self._move(OrderStatus.EXPIRED, now, EXPIRY_REASON)))

    def reject(self, reason: str, now: datetime) -> OrderRejected:
        self._require(OrderStatus.CREATED, action="reject")
        state = self._move(OrderStatus.REJECTED, now, reason, reject_reason=reason)
        return self._record(OrderRejected.of(state, reason=reason))

    def pay(self, method: PaymentMethod, now: datetime) -> OrderPaid:
        """Only a reserved order is paid: on CREATED the reservation is not done yet."""
        self._require(OrderStatus.RESERVED, action="pay")
        return self._record(OrderPaid.of(self._move(OrderStatus.PAID, now, payment_method=method, paid_at=now)))

    def fulfil(self, status: OrderStatus, now: datetime, expected_version: int | None = None) -> OrderUpdated:
        """PAID -> PROCESSING -> SHIPPED -> DELIVERED, one step at a time."""
        previous = FULFILMENT_STEPS.get(status)
        if previous is None:
            raise BadUserInput(
                "updateOrder moves fulfilment only (PROCESSING, SHIPPED, DELIVERED); use payOrder or cancelOrder",
                field="input.status",
            )
        self.require_version(expected_version)
        self._require(previous, action=f"move to {status}")
        return self._record(OrderUpdated.of(self._move(status, now)))

    def cancel(self, reason: str, now: datetime) -> OrderCanceled:
        """From CREATED or RESERVED, with a reason (checked first); PAID and later are final."""
        reason = require_text(reason, "reason", max_length=MAX_REASON)
        self._require(OrderStatus.CREATED, OrderStatus.RESERVED, action="cancel")
        state = self._move(OrderStatus.CANCELED, now, reason, cancel_reason=reason, canceled_at=now)
        return self._record(OrderCanceled.of(state, reason=reason))

    def released(self) -> None:
        """The stock it held is back on the shelf (not a new version of the order: nothing it shows changed)."""
        self.stock_held = False

    def delete(self, now: datetime) -> OrderDeleted:
        """Only an order that ended without a sale (CANCELED, REJECTED or EXPIRED); the history is kept."""
        self._require(OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED, action="delete")
        return self._record(OrderDeleted.of(self._change(now, deleted_at=now)))

    def _require(self, *allowed: OrderStatus, action: str) -> None:
        if self.status not in allowed:
            names = ", ".join(s.value for s in allowed)
            raise InvalidState(
                f"cannot {action} order {self.id} in status {self.status}; allowed from {names}",
                status=self.status.value,
            )

    def _move(self, status: OrderStatus, now: datetime, reason: str | None = None, **fields: Any) -> OrderSnapshot:
        """To `status`: a new version, and one line in the status history. A payment deadline lasts only as
        long as the reservation awaits its payment: every move clears it, but the one that sets it."""
        line = StatusChange(status=status, at=require_utc(now), reason=reason)
        fields = {"reserved_until": None, **fields}
        return self._change(now, status=status, history=(*self.state.history, line), **fields)
