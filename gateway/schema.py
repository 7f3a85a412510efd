"""The Strawberry schema: queries read MongoDB views, mutations call one command handler each."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import strawberry
from graphql import DocumentNode
from graphql.error import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

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
from gateway.errors import ErrorCodes
from gateway.feed import Listener
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
from gateway.limits import limit_extensions
from gateway.observability import OperationMetrics
from gateway.persisted import RememberValidPersistedQueries
from gateway.policy import enforce, owner_scope
from gateway.reads import wait_for_version
from gateway.scalars import DecimalScalar
from gateway.types import (
    Connection,
    Deleted,
    Order,
    OrderStatus,
    Product,
    ProductOrderBy,
    User,
    asks_for_total,
    connection,
    counted_from_start,
)
from projection.documents import OrderView
from projection.queries import current_user
from shared.errors import NotFound
from shared.events import AggregateType, OrderSnapshot
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry

QUERY_CACHE_SIZE = 1000
K = TypeVar("K")
V = TypeVar("V")


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
        user = await delete_user(info.context.write_db, parse_id(id))
        return Deleted(id=strawberry.ID(str(user.id)), version=user.version)

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
        product = await delete_product(info.context.write_db, parse_id(id))
        return Deleted(id=strawberry.ID(str(product.id)), version=product.version)

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
        return committed(await pay_order(ctx.write_db, command, idem))

    @strawberry.mutation
    async def cancel_order(self, info: Info, id: strawberry.ID, input: CancelOrderInput) -> Order:
        command = CancelOrder(parse_id(id), input.reason)
        return committed(await cancel_order(info.context.write_db, command))

    @strawberry.mutation
    async def delete_order(self, info: Info, id: strawberry.ID) -> Deleted:
        snapshot = await delete_order(info.context.write_db, parse_id(id))
        return Deleted(id=strawberry.ID(str(snapshot.id)), version=snapshot.version)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def order_status_changed(self, info: Info, order_id: strawberry.ID) -> AsyncGenerator[Order, None]:
        """First the order as the read model has it now, then each newer version, in order; and the order
        again when its user changes (a rename writes the users view only)."""
        oid = parse_id(order_id, "orderId")
        ctx = info.context
        async with ctx.feed.listen((AggregateType.ORDER, oid)) as listener:
            current = await ctx.read_model.order(oid)
            if current is None:  # perhaps just created: give the projector the read-your-writes wait
                await ctx.feed.wait_for_version(
                    AggregateType.ORDER,
                    oid,
                    1,
                    lambda: ctx.read_model.version_of(AggregateType.ORDER, oid),
                    ctx.settings.read_wait_timeout,
                )
                current = await ctx.read_model.order(oid)
            if current is None:
                raise NotFound(f"order {oid} not found", field="orderId")
            # Before the first answer resolves Order.user, so a rename is either in it or announced after it.
            ctx.feed.follow(listener, (AggregateType.USER, current.user_id))
            view = (await ctx.read_model.users_by_id([current.user_id])).get(current.user_id)
            shown_user = current_user(current.user, view).version
            yield Order.from_doc(current)
            async for document in order_changes(listener, current, shown_user, lambda: ctx.read_model.order(oid)):
                yield Order.from_doc(document)

    @strawberry.subscription
    async def order_updates(self, info: Info, user_id: strawberry.ID | None = None) -> AsyncGenerator[Order, None]:
        """Every change of every order of one user (or of all orders: admins; customers get their own)."""
        uid = owner_scope(info, user_id)
        async with info.context.feed.listen(("order-of-user", uid)) as listener:
            last_seen: dict[int, int] = {}
            while True:
                order = OrderView.model_validate((await listener.queue.get()).document)
                if order.version > last_seen.get(order.id, 0):
                    last_seen[order.id] = order.version
                    yield Order.from_doc(order)


async def order_changes(
    listener: Listener, sent: OrderView, shown_user: int, reread: Callable[[], Awaitable[OrderView | None]]
) -> AsyncIterator[OrderView]:
    """The order's announced versions above the last one sent (never a duplicate or a step back), and the last
    one sent again when its user's view reaches a version newer than the user the client saw (`shown_user`):
    Order.user resolves from the users view at read time. A users view the client already saw (its creation
    projected late, a redelivery) sends nothing."""
    while True:
        changes = [await listener.queue.get()]
        newer: list[OrderView] = []
        if listener.overflowed:  # the client fell behind: skip to the current state
            listener.overflowed = False
            while not listener.queue.empty():
                changes.append(listener.queue.get_nowait())
            newer.append(await reread() or sent)
        newer += [  # parsed only when newer: most announcements a subscriber gets are not
            OrderView.model_validate(c.document)
            for c in changes
            if c.kind == AggregateType.ORDER and c.document["version"] > sent.version
        ]
        newer = [order for order in newer if order.version > sent.version]
        if newer:
            sent = max(newer, key=lambda order: order.version)
        renamed = max((c.document["version"] for c in changes if c.kind == AggregateType.USER), default=0)
        if newer or renamed > shown_user:
            shown_user = max(shown_user, renamed, sent.user.version)
            yield sent
            if sent.deleted:
                return


class LRUCache(OrderedDict[K, V]):
    """At most `size` entries; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_recent(self, key: K) -> V | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


class ParsedDocuments(SchemaExtension):
    """A document this schema parsed before is not parsed again. Keyed by the text and the parse options, the
    token limit among them (MaxTokensLimiter sets it when the operation starts, before any parse); only parsed
    documents are kept, so a document over the limit is refused, with its code, every time. Strawberry parses
    when no document is set, and its errors take the usual way."""

    def __init__(self, cache: LRUCache[tuple[str, tuple[tuple[str, Any], ...]], DocumentNode]) -> None:
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        key = (context.query or "", tuple(sorted(context.parse_options.items())))
        known = self.cache.get_recent(key)
        if known is not None:
            context.graphql_document = known
        yield
        if known is None and context.graphql_document is not None:
            self.cache.put(key, context.graphql_document)


class EventshopSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Logging happens in ErrorCodes, once per unexpected error; expected errors are not noise."""


def create_schema(settings: Settings, telemetry: Telemetry = OFF) -> strawberry.Schema:
    """The gateway's schema with the limits of `settings`, its operations traced by `telemetry`; made by the app
    factory and `eventshop export-schema`."""
    # Every operation passes the access policy (gateway/policy.py); a field without a rule is refused.
    # Here rather than at import: the guard is part of every schema made, whoever imports the types.
    enforce(Query, Mutation, Subscription, User)
    parsed: LRUCache[tuple[str, tuple[tuple[str, Any], ...]], DocumentNode] = LRUCache(QUERY_CACHE_SIZE)
    return EventshopSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={Decimal: DecimalScalar}),
        extensions=[
            lambda: OperationMetrics(telemetry),
            lambda: ErrorCodes(suggestions=settings.graphql_introspection),
            *limit_extensions(
                max_depth=settings.max_query_depth,
                max_aliases=settings.max_query_aliases,
                max_tokens=settings.max_query_tokens,
                max_directives=settings.max_query_directives,
                introspection=settings.graphql_introspection,
                cache_size=QUERY_CACHE_SIZE,  # clients send the same few documents over and over
            ),
            lambda: ParsedDocuments(parsed),  # parsed once each, too (bounded)
            RememberValidPersistedQueries,  # APQ: a query sent with its hash is stored once it validated
        ],
    )
