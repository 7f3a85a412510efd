"""GraphQL input types of the contract."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from gateway.enums import OrderStatus, PaymentMethod


@strawberry.input
class CreateUserInput:
    name: str
    email: str


@strawberry.input
class UpdateUserInput:
    name: str | None = None
    email: str | None = None


@strawberry.input
class CreateProductInput:
    name: str
    price: Decimal
    stock: int
    description: str = ""


@strawberry.input
class UpdateProductInput:
    name: str | None = None
    description: str | None = None
    price: Decimal | None = None
    stock: int | None = None


@strawberry.input
class OrderItemInput:
    product_id: strawberry.ID
    quantity: int
    unit_price: Decimal | None = None


@strawberry.input
class CreateOrderInput:
    user_id: strawberry.ID
    items: list[OrderItemInput]


@strawberry.input
class UpdateOrderInput:
    status: OrderStatus


@strawberry.input
class PayOrderInput:
    payment_method: PaymentMethod


@strawberry.input
class CancelOrderInput:
    reason: str
