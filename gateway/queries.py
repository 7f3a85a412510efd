"""The Query type: each field reads one MongoDB view (through projection's ReadModel) and answers API types."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from command.validation import parse_id
from gateway.connections import Connection, asks_for_total, connection, counted_from_start
from gateway.context import Info
from gateway.enums import OrderStatus, ProductOrderBy
from gateway.policy import owner_scope
from gateway.reads import wait_for_version
from gateway.types import Order, Product, User
from shared.events import AggregateType


@strawberry.type
class Query:
    @strawberry.field
    async def user(self, info: Info, id: strawberry.ID, min_version: int | None = None) -> User | None:
        user_id = parse_id(id)
        ctx = info.context
        await wait_for_version(ctx, AggregateType.USER, user_id, min_version)
        doc = await ctx.read_model.user(user_id)
        return None if doc is None else User.from_doc(doc)

    @strawberry.field
    async def users(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        search: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[User]:
        page = await info.context.read_model.list_users(
            counted_from_start(info, first, last),
            after,
            search,
            last=last,
            before=before,
            with_total=asks_for_total(info),
        )
        return connection(page, User.from_doc)

    @strawberry.field
    async def product(self, info: Info, id: strawberry.ID, min_version: int | None = None) -> Product | None:
        product_id = parse_id(id)
        ctx = info.context
        await wait_for_version(ctx, AggregateType.PRODUCT, product_id, min_version)
        doc = await ctx.read_model.product(product_id)
        return None if doc is None else Product.from_doc(doc)

    @strawberry.field
    async def products(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        search: str | None = None,
        in_stock: bool | None = None,
        min_price: Decimal | None = None,
        max_price: Decimal | None = None,
        order_by: ProductOrderBy = ProductOrderBy.ID_ASC,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Product]:
        page = await info.context.read_model.list_products(
            counted_from_start(info, first, last),
            after,
            search=search,
            in_stock=in_stock,
            min_price=min_price,
            max_price=max_price,
            order=order_by,
            last=last,
            before=before,
            with_total=asks_for_total(info),
        )
        return connection(page, Product.from_doc)

    @strawberry.field
    async def order(self, info: Info, id: strawberry.ID, min_version: int | None = None) -> Order | None:
        order_id = parse_id(id)
        ctx = info.context
        await wait_for_version(ctx, AggregateType.ORDER, order_id, min_version)
        doc = await ctx.read_model.order(order_id)
        return None if doc is None else Order.from_doc(doc)

    @strawberry.field
    async def orders(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        user_id: strawberry.ID | None = None,
        status: OrderStatus | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Order]:
        page = await info.context.read_model.list_orders(
            counted_from_start(info, first, last),
            after,
            user_id=owner_scope(info, user_id),  # a customer who names no user gets their own orders
            status=status,
            last=last,
            before=before,
            with_total=asks_for_total(info),
        )
        return connection(page, Order.from_doc)
