"""The Mutation type: each field calls one command handler and answers the state it committed."""

from __future__ import annotations

import strawberry

from command.handlers.cancel_order import CancelOrder, cancel_order
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.delete_order import delete_order
from command.handlers.delete_product import delete_product
from command.handlers.delete_user import delete_user
from command.handlers.pay_order import PayOrder, pay_order
from command.handlers.update_order import UpdateOrder, update_order
from command.handlers.update_product import UpdateProduct, update_product
from command.handlers.update_user import UpdateUser, update_user
from command.idempotency import Idempotency
from command.validation import parse_id
from gateway.context import Info
from gateway.inputs import (
    CancelOrderInput,
    CreateOrderInput,
    CreateProductInput,
    CreateUserInput,
    PayOrderInput,
    UpdateOrderInput,
    UpdateProductInput,
    UpdateUserInput,
)
from gateway.policy import acting_customer
from gateway.types import Deleted, Order, Product, User
from shared.events import OrderSnapshot


def committed(snapshot: OrderSnapshot) -> Order:
    """A mutation's answer: the order as its transaction committed it, its user too (no users view lookup)."""
    return Order.from_snapshot(snapshot, committed=True)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_user(self, info: Info, input: CreateUserInput) -> User:
        user = await create_user(info.context.write_db, CreateUser(name=input.name, email=input.email))
        return User.from_snapshot(user)

    @strawberry.mutation
    async def update_user(
        self, info: Info, id: strawberry.ID, input: UpdateUserInput, expected_version: int | None = None
    ) -> User:
        command = UpdateUser(parse_id(id), name=input.name, email=input.email, expected_version=expected_version)
        user = await update_user(info.context.write_db, command)
        return User.from_snapshot(user)

    @strawberry.mutation
    async def delete_user(self, info: Info, id: strawberry.ID) -> Deleted:
        return Deleted.of(await delete_user(info.context.write_db, parse_id(id)))

    @strawberry.mutation
    async def create_product(self, info: Info, input: CreateProductInput) -> Product:
        command = CreateProduct(name=input.name, description=input.description, price=input.price, stock=input.stock)
        product = await create_product(info.context.write_db, command)
        return Product.from_snapshot(product)

    @strawberry.mutation
    async def update_product(
        self, info: Info, id: strawberry.ID, input: UpdateProductInput, expected_version: int | None = None
    ) -> Product:
        command = UpdateProduct(
            parse_id(id),
            name=input.name,
            description=input.description,
            price=input.price,
            stock=input.stock,
            expected_version=expected_version,
        )
        product = await update_product(info.context.write_db, command)
        return Product.from_snapshot(product)

    @strawberry.mutation
    async def delete_product(self, info: Info, id: strawberry.ID) -> Deleted:
        return Deleted.of(await delete_product(info.context.write_db, parse_id(id)))

    @strawberry.mutation
    async def create_order(self, info: Info, input: CreateOrderInput, idempotency_key: str | None = None) -> Order:
        lines = tuple(
            RequestedLine(parse_id(item.product_id, f"items[{i}].productId"), item.quantity, item.unit_price)
            for i, item in enumerate(input.items)
        )
        command = CreateOrder(parse_id(input.user_id, "userId"), lines)
        ctx = info.context
        idem = Idempotency.of("createOrder", idempotency_key, command, ctx.settings.idempotency_ttl_seconds)
        snapshot = await create_order(ctx.write_db, command, idem)
        return committed(snapshot)

    @strawberry.mutation
    async def update_order(
        self, info: Info, id: strawberry.ID, input: UpdateOrderInput, expected_version: int | None = None
    ) -> Order:
        command = UpdateOrder(parse_id(id), input.status, expected_version=expected_version)
        return committed(await update_order(info.context.write_db, command))

    @strawberry.mutation
    async def pay_order(
        self, info: Info, id: strawberry.ID, input: PayOrderInput, idempotency_key: str | None = None
    ) -> Order:
        command = PayOrder(parse_id(id), input.payment_method)
        ctx = info.context
        idem = Idempotency.of("payOrder", idempotency_key, command, ctx.settings.idempotency_ttl_seconds)
        return committed(await pay_order(ctx.write_db, command, idem, acting_customer(info)))

    @strawberry.mutation
    async def cancel_order(self, info: Info, id: strawberry.ID, input: CancelOrderInput) -> Order:
        command = CancelOrder(parse_id(id), input.reason)
        return committed(await cancel_order(info.context.write_db, command, acting_customer(info)))

    @strawberry.mutation
    async def delete_order(self, info: Info, id: strawberry.ID) -> Deleted:
        return Deleted.of(await delete_order(info.context.write_db, parse_id(id), acting_customer(info)))
