"""The stock reservation of an order, all lines or none, and the release of what a canceled or expired order
held."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from command.domain.order import Order
from command.domain.product import Product
from shared.events import Event, OrderExpired, OrderRejected, OrderReserved, StockReleased, StockReserved


@dataclass(frozen=True)
class Reserved:
    """Every line fitted: the stock moves, one per line, and the order RESERVED."""

    moves: tuple[StockReserved, ...]
    order: OrderReserved

    @property
    def events(self) -> tuple[Event, ...]:
        return (*self.moves, self.order)


@dataclass(frozen=True)
class Rejected:
    """A line did not fit: the order REJECTED with the reason, and no stock taken at all."""

    reason: str
    order: OrderRejected

    @property
    def events(self) -> tuple[Event, ...]:
        return (self.order,)


Reservation = Reserved | Rejected


def shortfall(order: Order, products: Mapping[int, Product]) -> str | None:
    """Why the order cannot be reserved as a whole (the first line that does not fit), or None."""
    for item in order.state.items:
        product = products.get(item.product_id)
        if product is None or not product.available:
            return f"product {item.product_id} is no longer available"
        if product.stock < item.quantity:
            return (
                f"insufficient stock for product {item.product_id}: "
                f"requested {item.quantity}, available {product.stock}"
            )
    return None


def reserve(
    order: Order, products: Mapping[int, Product], now: datetime, payment_window: timedelta | None = None
) -> Reservation:
    """All lines or none, from the products as they are now (the caller holds their locks); a reserved order
    is the customer's to pay within `payment_window` (None: no deadline)."""
    reason = shortfall(order, products)
    if reason is not None:
        return Rejected(reason, order.reject(reason, now))
    reserved = order.reserve(now, payment_window)  # one that no longer awaits stock is refused before stock moves
    moves = tuple(products[item.product_id].take(item.quantity, order.id, now) for item in order.state.items)
    return Reserved(moves, reserved)


def release(order: Order, products: Mapping[int, Product], now: datetime) -> tuple[StockReleased, ...]:
    """Give back what a canceled or expired order held; an order that holds nothing gives nothing."""
    if not order.owes_stock:
        return ()
    moves = tuple(products[item.product_id].give_back(item.quantity, order.id, now) for item in order.state.items)
    order.released()
    return moves


@dataclass(frozen=True)
class Expired:
    """Unpaid at its deadline: the order EXPIRED, and what it held back on the shelf, one move per line."""

    order: OrderExpired
    moves: tuple[StockReleased, ...]

    @property
    def events(self) -> tuple[Event, ...]:
        return (self.order, *self.moves)


def expire(order: Order, products: Mapping[int, Product], now: datetime) -> Expired | None:
    """An order still RESERVED at its deadline expires and gives its stock back at once (the caller holds the
    order's and its products' locks); None when it is not due (paid, canceled or expired meanwhile, or later)."""
    if not order.due(now):
        return None
    expired = order.expire(now)
    return Expired(expired, release(order, products, now))
