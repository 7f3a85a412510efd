"""The product: a name, a description, a positive price with two decimals, and the stock on the shelf."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from command.domain.aggregate import Aggregate, require_utc
from command.validation import MAX_DESCRIPTION, MAX_STOCK, limit_text, require_int, require_price, require_text
from shared.errors import BadUserInput, InsufficientStock
from shared.events import ProductCreated, ProductDeleted, ProductSnapshot, ProductUpdated, StockReleased, StockReserved


def _description(value: str | None) -> str:
    return limit_text(value, "description", max_length=MAX_DESCRIPTION)


def _stock(value: int) -> int:
    return require_int(value, "stock", low=0, high=MAX_STOCK)


@dataclass(frozen=True)
class NewProduct:
    """A product the rules accept, before the database gives it its id."""

    name: str
    description: str
    price: Decimal
    stock: int
    at: datetime

    @classmethod
    def of(cls, name: str | None, description: str | None, price: object, stock: int, now: datetime) -> NewProduct:
        return cls(require_text(name, "name"), _description(description), require_price(price), _stock(stock),
                   require_utc(now))  # fmt: skip

    def created(self, product_id: int) -> tuple[Product, ProductCreated]:
        """The product under the id the database gave it, and the event that announces it."""
        state = ProductSnapshot(
            id=product_id,
            version=1,
            created_at=self.at,
            updated_at=self.at,
            name=self.name,
            description=self.description,
            price=self.price,
            stock=self.stock,
        )
        product = Product(state)
        return product, product._record(ProductCreated.of(state))


@dataclass(frozen=True)
class ProductChanges:
    """The fields an update sets (None: left as it is), each valid."""

    name: str | None = None
    description: str | None = None
    price: Decimal | None = None
    stock: int | None = None

    @classmethod
    def of(
        cls, name: str | None = None, description: str | None = None, price: object = None, stock: int | None = None
    ) -> ProductChanges:
        changes = cls(
            name=None if name is None else require_text(name, "name"),
            description=None if description is None else _description(description),
            price=None if price is None else require_price(price),
            stock=None if stock is None else _stock(stock),
        )
        if changes == cls():
            raise BadUserInput("give at least one field to change", field="input")
        return changes


@dataclass
class Product(Aggregate[ProductSnapshot]):
    deleted = ProductDeleted

    @property
    def stock(self) -> int:
        return self.state.stock

    @property
    def available(self) -> bool:
        return self.state.deleted_at is None

    def change(
        self, changes: ProductChanges, now: datetime, expected_version: int | None = None
    ) -> list[ProductUpdated]:
        """`product.updated`, or no event when the product already has these values."""
        self.require_version(expected_version)
        state = self._revise(asdict(changes), now)
        return [] if state is None else [self._record(ProductUpdated.of(state))]

    def take(self, quantity: int, order_id: int, now: datetime) -> StockReserved:
        """Stock taken for one line of an order; never more than the shelf holds."""
        if quantity > self.stock:
            raise InsufficientStock(
                f"product {self.id} has {self.stock} in stock, {quantity} requested", available=self.stock
            )
        state = self._change(now, stock=self.stock - quantity)
        return self._record(StockReserved.of(state, order_id=order_id, quantity=quantity))

    def give_back(self, quantity: int, order_id: int, now: datetime) -> StockReleased:
        """Stock an order held, back on the shelf."""
        state = self._change(now, stock=self.stock + quantity)
        return self._record(StockReleased.of(state, order_id=order_id, quantity=quantity))
