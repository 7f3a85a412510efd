"""A synthetic shop that grows a step at a time, as the write side's events (full snapshots, command/snapshots.py).

Deterministic for a seed. Each `grow` yields, in the order a busy shop produces them: `user.created` for the
new customers, `product.created` for the new products (every tenth one out of stock, never ordered), then per
new order `order.created`, `stock.reserved` per line, `order.reserved` and, for a share of them, `order.paid`
or `order.canceled` with `stock.released` per line. The shop keeps what the read model must end up holding
(`expected_versions`), so a build can be checked, not only timed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bench.samples import envelope
from projection.documents import OrderView, ProductView, UserView
from projection.store import Doc
from shared.events import AggregateType, Event, Topic
from shared.money import format_money

T0 = datetime(2025, 1, 1, tzinfo=UTC)

FIRST_NAMES = (
    "Ana", "Beatriz", "Bruno", "Carla", "Carlos", "Daniel", "Eduarda", "Felipe", "Fernanda", "Gabriela",
    "Gustavo", "Heitor", "Helena", "Igor", "Isabela", "Joana", "Julia", "Karina", "Laura", "Leonardo",
    "Lucas", "Manuela", "Marcos", "Mariana", "Marta", "Miguel", "Nicolas", "Olivia", "Paulo", "Pedro",
    "Rafaela", "Renata", "Samuel", "Sofia", "Tatiana", "Thiago", "Valentina", "Vitor", "William", "Yasmin",
)  # fmt: skip
LAST_NAMES = (
    "Almeida", "Alves", "Barbosa", "Carvalho", "Costa", "Fernandes", "Ferreira", "Gomes", "Lima", "Lopes",
    "Martins", "Oliveira", "Pereira", "Ribeiro", "Rodrigues", "Santos", "Silva", "Soares", "Souza", "Vieira",
)  # fmt: skip
ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Ergonomic", "Portable", "Premium", "Smart", "Vintage", "Wireless")
NOUNS = (
    "Backpack", "Blender", "Chair", "Desk Lamp", "Headphones", "Jacket", "Kettle", "Keyboard", "Mug", "Notebook",
    "Sneakers", "Speaker", "Tent", "Watch", "Water Bottle",
)  # fmt: skip
PAYMENT_METHODS = ("CREDIT_CARD", "DEBIT_CARD", "PIX", "BOLETO", "BANK_TRANSFER")
PAID_SHARE, CANCELED_SHARE = 0.3, 0.1


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def user_name(user_id: int) -> tuple[str, str]:
    """A customer's name and email, a function of the id (orders carry them without a lookup)."""
    first = FIRST_NAMES[(user_id * 7) % len(FIRST_NAMES)]
    last = LAST_NAMES[(user_id * 13) % len(LAST_NAMES)]
    return f"{first} {last}", f"{first.lower()}.{last.lower()}{user_id}@example.com"


def user_snapshot(user_id: int) -> Doc:
    name, email = user_name(user_id)
    created = _at(user_id * 60)
    return {
        "id": user_id,
        "name": name,
        "email": email,
        "version": 1,
        "created_at": created,
        "updated_at": created,
        "deleted_at": None,
    }


@dataclass
class ProductState:
    id: int
    name: str
    price: Decimal
    stock: int
    version: int = 1
    updated: float = 0.0

    def snapshot(self) -> Doc:
        return {
            "id": self.id,
            "name": self.name,
            "description": f"{self.name}: sturdy, light and easy to clean. Ships in recyclable packaging.",
            "price": format_money(self.price),
            "stock": self.stock,
            "version": self.version,
            "created_at": _at(self.id * 90),
            "updated_at": _at(max(self.id * 90, self.updated)),
            "deleted_at": None,
        }


@dataclass
class OrderDraft:
    """An order as it moves through CREATED -> RESERVED -> PAID | CANCELED, one snapshot per version."""

    id: int
    user_id: int
    lines: list[tuple[ProductState, int, Decimal]]  # product, quantity, unit price at order time
    created: float
    history: list[Doc] = field(default_factory=list)
    status: str = "CREATED"
    payment_method: str | None = None
    cancel_reason: str | None = None
    paid_at: str | None = None
    canceled_at: str | None = None

    def advance(self, status: str, at: float, reason: str | None = None) -> Doc:
        self.status = status
        self.history.append({"status": status, "at": _at(at), "reason": reason})
        return self.snapshot(at)

    def snapshot(self, updated: float) -> Doc:
        name, email = user_name(self.user_id)
        items = [
            {
                "product_id": product.id,
                "product_name": product.name,
                "quantity": quantity,
                "unit_price": format_money(price),
                "subtotal": format_money(price * quantity),
            }
            for product, quantity, price in self.lines
        ]
        return {
            "id": self.id,
            "user_id": self.user_id,
            "user": {"id": self.user_id, "name": name, "email": email, "version": 1},
            "items": items,
            "total_amount": format_money(sum((p * q for _, q, p in self.lines), Decimal(0))),
            "status": self.status,
            "payment_method": self.payment_method,
            "cancel_reason": self.cancel_reason,
            "reject_reason": None,
            "history": list(self.history),
            "version": len(self.history),
            "created_at": _at(self.created),
            "updated_at": _at(updated),
            "paid_at": self.paid_at,
            "canceled_at": self.canceled_at,
            "deleted_at": None,
        }


class Shop:
    """The shop's aggregates so far; `grow(orders, users, products)` yields the events that make it that big."""

    def __init__(self, seed: int = 17) -> None:
        self.rng = random.Random(seed)
        self.users = 0
        self.products: list[ProductState] = []
        self.orders = 0
        self.order_versions: dict[int, int] = {}

    @property
    def orderable(self) -> list[ProductState]:
        return [p for p in self.products if p.stock > 0]

    def grow(self, orders: int, users: int, products: int) -> Iterator[Event]:
        for user_id in range(self.users + 1, users + 1):
            yield envelope(Topic.USER_CREATED, AggregateType.USER, user_snapshot(user_id))
        self.users = max(self.users, users)
        for product_id in range(len(self.products) + 1, products + 1):
            product = ProductState(
                product_id,
                f"{self.rng.choice(ADJECTIVES)} {self.rng.choice(NOUNS)} {product_id:05d}",
                Decimal(self.rng.randint(199, 49_999)) / 100,
                0 if product_id % 10 == 0 else 1_000_000,
            )
            self.products.append(product)
            yield envelope(Topic.PRODUCT_CREATED, AggregateType.PRODUCT, product.snapshot())
        orderable = self.orderable
        for order_id in range(self.orders + 1, orders + 1):
            yield from self._order(order_id, orderable)
        self.orders = max(self.orders, orders)

    def _order(self, order_id: int, orderable: list[ProductState]) -> Iterator[Event]:
        rng = self.rng
        lines = rng.sample(orderable, min(len(orderable), rng.choice((1, 1, 2, 2, 2, 3, 3, 4))))
        at = float(order_id * 20)
        order = OrderDraft(order_id, rng.randint(1, self.users), [(p, rng.randint(1, 3), p.price) for p in lines], at)
        yield envelope(Topic.ORDER_CREATED, AggregateType.ORDER, order.advance("CREATED", at))
        yield from self._stock(order, Topic.STOCK_RESERVED, -1, at + 1)
        yield envelope(Topic.ORDER_RESERVED, AggregateType.ORDER, order.advance("RESERVED", at + 1))
        outcome = rng.random()
        if outcome < PAID_SHARE:
            order.payment_method, order.paid_at = rng.choice(PAYMENT_METHODS), _at(at + 60)
            yield envelope(Topic.ORDER_PAID, AggregateType.ORDER, order.advance("PAID", at + 60))
        elif outcome < PAID_SHARE + CANCELED_SHARE:
            order.cancel_reason, order.canceled_at = "changed my mind", _at(at + 120)
            snapshot = order.advance("CANCELED", at + 120, order.cancel_reason)
            yield envelope(Topic.ORDER_CANCELED, AggregateType.ORDER, snapshot, reason=order.cancel_reason)
            yield from self._stock(order, Topic.STOCK_RELEASED, +1, at + 121)
        self.order_versions[order_id] = len(order.history)

    def _stock(self, order: OrderDraft, topic: Topic, sign: int, at: float) -> Iterator[Event]:
        for product, quantity, _ in order.lines:
            product.stock += sign * quantity
            product.version += 1
            product.updated = at
            extra = {"order_id": order.id, "quantity": quantity}
            yield envelope(topic, AggregateType.PRODUCT, product.snapshot(), **extra)

    def expected_versions(self) -> dict[str, dict[int, int]]:
        """Collection name -> id -> the version its view must hold once every event is projected."""
        return {
            UserView.collection: dict.fromkeys(range(1, self.users + 1), 1),
            ProductView.collection: {p.id: p.version for p in self.products},
            OrderView.collection: dict(self.order_versions),
        }
