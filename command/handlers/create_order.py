"""createOrder: an order in CREATED with prices and names snapshotted from the products.

The stock is not reserved here: the stock worker does it on `order.created`, all lines or none.
Lines that already exceed the current stock fail fast with INSUFFICIENT_STOCK.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlmodel import select

from command.db import WriteDatabase
from command.idempotency import Idempotency, recall, remember, retry_on_key_race
from command.models import Order, OrderItem, OrderStatus, Product, User
from command.orders import add_history, record_order_event
from command.validation import MAX_ORDER_LINES, MAX_QUANTITY, require_int, require_price
from shared.errors import BadUserInput, InsufficientStock, NotFound, PriceChanged
from shared.events import OrderCreated, OrderSnapshot
from shared.money import MAX_AMOUNT


@dataclass(frozen=True)
class OrderLine:
    product_id: int
    quantity: int
    unit_price: Decimal | None = None


@dataclass(frozen=True)
class CreateOrder:
    user_id: int
    lines: tuple[OrderLine, ...]


def validate_lines(lines: tuple[OrderLine, ...]) -> None:
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


async def create_order(db: WriteDatabase, command: CreateOrder, idem: Idempotency | None = None) -> OrderSnapshot:
    """Returns the committed order snapshot."""
    validate_lines(command.lines)
    return await retry_on_key_race(lambda: _create(db, command, idem))


async def _create(db: WriteDatabase, command: CreateOrder, idem: Idempotency | None) -> OrderSnapshot:
    async with db.transaction() as tx:
        if (earlier := await recall(tx, idem)) is not None:
            return earlier
        user = await tx.session.get(User, command.user_id)
        if user is None or user.deleted_at is not None:
            raise NotFound(f"user {command.user_id} not found", field="userId")
        ids = sorted(line.product_id for line in command.lines)
        result = await tx.session.execute(select(Product).where(Product.id.in_(ids)))  # type: ignore[union-attr]
        products = {p.id: p for p in result.scalars() if p.deleted_at is None}
        total = Decimal("0.00")
        items = []
        for i, line in enumerate(command.lines):
            product = products.get(line.product_id)
            if product is None:
                raise NotFound(f"product {line.product_id} not found", field=f"items[{i}].productId")
            if line.unit_price is not None and line.unit_price != product.price:
                raise PriceChanged(
                    f"product {product.id} costs {product.price}, not {line.unit_price}",
                    field=f"items[{i}].unitPrice",
                    current_price=str(product.price),
                )
            if line.quantity > product.stock:
                raise InsufficientStock(
                    f"product {product.id} has {product.stock} in stock, {line.quantity} requested",
                    field=f"items[{i}].quantity",
                    available=product.stock,
                )
            subtotal = product.price * line.quantity
            total += subtotal
            items.append((line.product_id, product.name, line.quantity, product.price, subtotal))
        if total > MAX_AMOUNT:
            raise BadUserInput(f"order total {total} exceeds {MAX_AMOUNT}", field="items")
        order = Order(user_id=user.id, status=OrderStatus.CREATED, total_amount=total)  # type: ignore[arg-type]
        tx.session.add(order)
        await tx.session.flush()
        order_id = order.id
        assert order_id is not None
        tx.session.add_all(
            OrderItem(
                order_id=order_id,
                product_id=product_id,
                product_name=name,
                quantity=quantity,
                unit_price=price,
                subtotal=subtotal,
            )
            for product_id, name, quantity, price, subtotal in items
        )
        add_history(tx, order)
        data = await record_order_event(tx, order, OrderCreated)
        await remember(tx, idem, data)
        return data
