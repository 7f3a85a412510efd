"""GraphQL object types of the contract, built from aggregate snapshots: a mutation's committed one, or the one a
read model's view gives back (`ViewDocument.snapshot`). A field is copied from the snapshot's field of the same
name (`by_name`), so a type declares its fields and nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, Generic, TypeAlias, TypeVar

import strawberry
from strawberry.types.base import StrawberryList, StrawberryOptional, get_object_definition, has_object_definition
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection
from strawberry.types.private import is_private

from gateway.context import Info
from projection import documents
from projection.queries import D, Page, ProductOrder, current_user
from shared import events
from shared.events import OrderStatus, PaymentMethod

# The domain's enums are the GraphQL enums (same names, same values); so is the read model's product ordering.
strawberry.enum(OrderStatus)
strawberry.enum(PaymentMethod)
strawberry.enum(ProductOrder, name="ProductOrderBy")
ProductOrderBy: TypeAlias = ProductOrder

T = TypeVar("T")
Convert = Callable[[Any], Any]


def by_name(cls: type[T], source: Any, **given: Any) -> T:
    """An object of a GraphQL type whose fields are the same-named fields of `source` (a snapshot): ids as
    strings, nested objects alike; `given` are the fields it does not hold (private ones)."""
    graphql_type: Any = cls
    values = {name: convert(getattr(source, name)) for name, convert in _copied(graphql_type) if name not in given}
    return cls(**values, **given)


@cache
def _copied(cls: Any) -> tuple[tuple[str, Convert], ...]:
    """The fields of a GraphQL type that are data (not resolvers, not private), and how each is copied."""
    return tuple(
        (field.python_name, _copy(field.type))
        for field in get_object_definition(cls, strict=True).fields
        if field.base_resolver is None and not is_private(field.type)
    )


def _copy(graphql_type: Any) -> Convert:
    if graphql_type is strawberry.ID:
        return lambda value: strawberry.ID(str(value))
    if isinstance(graphql_type, StrawberryOptional):
        inner = _copy(graphql_type.of_type)
        return lambda value: None if value is None else inner(value)
    if isinstance(graphql_type, StrawberryList):
        item = _copy(graphql_type.of_type)
        return lambda values: [item(value) for value in values]
    if has_object_definition(graphql_type):
        return lambda value: by_name(graphql_type, value)
    return _same


def _same(value: Any) -> Any:
    return value


@strawberry.type(description="Where a page of a connection lies (Relay cursor connections).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="More items follow this page. Exact after `first`; after `last` it is false (not looked up)."
    )
    has_previous_page: bool = strawberry.field(
        description="More items precede this page. Exact after `last`; after `first` it is false (not looked up)."
    )
    start_cursor: str | None = strawberry.field(description="The cursor of the first edge; null on an empty page.")
    end_cursor: str | None = strawberry.field(description="The cursor of the last edge; null on an empty page.")


@strawberry.type
class Deleted:
    id: strawberry.ID
    version: int


@strawberry.type
class User:
    id: strawberry.ID
    name: str
    email: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_snapshot(cls, snapshot: events.UserSnapshot) -> User:
        return by_name(cls, snapshot)

    @classmethod
    def from_doc(cls, view: documents.UserView) -> User:
        return cls.from_snapshot(view.snapshot())

    @strawberry.field
    async def orders(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        status: OrderStatus | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Order]:
        ctx = info.context
        if after is None and last is None and before is None:  # the usual case, batched (DataLoader)
            page = await ctx.user_orders.load((int(self.id), first, status))
        else:
            page = await ctx.read_model.list_orders(
                counted_from_start(info, first, last),
                after,
                user_id=int(self.id),
                status=status,
                last=last,
                before=before,
                with_total=asks_for_total(info),
            )
        return connection(page, Order.from_doc)


@strawberry.type
class Product:
    id: strawberry.ID
    name: str
    description: str
    price: Decimal
    stock: int
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_snapshot(cls, snapshot: events.ProductSnapshot) -> Product:
        return by_name(cls, snapshot)

    @classmethod
    def from_doc(cls, view: documents.ProductView) -> Product:
        return cls.from_snapshot(view.snapshot())


@strawberry.type
class OrderUser:
    id: strawberry.ID
    name: str
    email: str


@strawberry.type
class OrderItem:
    product_id: strawberry.ID
    product_name: str
    quantity: int
    unit_price: Decimal
    subtotal: Decimal


@strawberry.type
class StatusChange:
    status: OrderStatus
    at: datetime
    reason: str | None


@strawberry.type
class Order:
    id: strawberry.ID
    user_id: strawberry.ID
    placed_by: strawberry.Private[events.OrderUser]  # the user as of the order's newest event
    items: list[OrderItem]
    total_amount: Decimal
    status: OrderStatus
    payment_method: PaymentMethod | None
    cancel_reason: str | None
    reject_reason: str | None
    history: list[StatusChange]
    version: int
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None
    canceled_at: datetime | None
    reserved_until: datetime | None = strawberry.field(
        description="A RESERVED order's payment deadline: unpaid then, it EXPIRES and its stock goes back; "
        "null in every other status and when reservations do not expire."
    )
    # A mutation's answer: the state its transaction committed, the user included.
    committed: strawberry.Private[bool] = False

    @strawberry.field
    async def user(self, info: Info) -> OrderUser:
        """From the users view (one batched `_id` lookup per request), see `current_user`; a mutation's answer
        shows the user it committed with, with no lookup."""
        if self.committed:
            user = self.placed_by
        else:
            user = current_user(self.placed_by, await info.context.users.load(int(self.user_id)))
        return OrderUser(id=self.user_id, name=user.name, email=user.email)

    @classmethod
    def from_snapshot(cls, snapshot: events.OrderSnapshot, *, committed: bool = False) -> Order:
        """The order of a snapshot; `committed` when it is a mutation's answer (its user shown as committed)."""
        return by_name(cls, snapshot, placed_by=snapshot.user, committed=committed)

    @classmethod
    def from_doc(cls, view: documents.OrderView) -> Order:
        return cls.from_snapshot(view.snapshot())


NodeT = TypeVar("NodeT")


@strawberry.type
class Edge(Generic[NodeT]):
    """A node and its cursor (pass it as `after` or `before`); `Edge[User]` is `UserEdge` in the schema."""

    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    """A Relay cursor connection; `Connection[User]` is named `UserConnection` in the schema. `nodes` is
    `edges { node }` without the cursors."""

    nodes: list[NodeT]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]
    cursors: strawberry.Private[Callable[[], list[str]]]

    @strawberry.field
    def edges(self) -> list[Edge[NodeT]]:
        return [Edge(cursor=cursor, node=node) for cursor, node in zip(self.cursors(), self.nodes, strict=True)]

    @strawberry.field
    async def total_count(self) -> int:
        """Counted only when asked for: on a large collection the count costs more than the page."""
        return await self.count()


def counted_from_start(info: Info, first: int, last: int | None) -> int | None:
    """`first` as the read model takes it: None when paging from the end (`last`) and the query left `first` at
    its default; when the query gives both, they go on, and the read model refuses them (BAD_USER_INPUT)."""
    if last is None:
        return first
    field = info.selected_fields[0]
    given = isinstance(field, SelectedField) and field.arguments.get("first") is not None
    return first if given else None


def asks_for_total(info: Info) -> bool:
    """Whether the query selects `totalCount` on this connection (directly or in a fragment). A miss only
    costs time: an unasked-for total is still read when the field resolves."""

    def found(selections: list[Selection]) -> bool:
        for selection in selections:
            if isinstance(selection, SelectedField) and selection.name == "totalCount":
                return True
            if isinstance(selection, FragmentSpread | InlineFragment) and found(selection.selections):
                return True
        return False

    return any(found(field.selections) for field in info.selected_fields)


def connection(page: Page[D], node: Callable[[D], NodeT]) -> Connection[NodeT]:
    return Connection(
        nodes=[node(doc) for doc in page.documents],
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.start_cursor,
            end_cursor=page.end_cursor,
        ),
        count=page.count,
        cursors=lambda: [page.cursor_of(doc) for doc in page.documents],
    )
