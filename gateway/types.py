"""GraphQL object types of the contract, built from the read model's view documents (projection/documents.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Generic, TypeVar

import strawberry
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from gateway.context import Info
from projection import documents
from projection.queries import D, Page, current_user
from shared.events import OrderStatus, PaymentMethod
from shared.money import from_cents

# The domain's enums are the GraphQL enums (same names, same values).
strawberry.enum(OrderStatus)
strawberry.enum(PaymentMethod)


@strawberry.enum
class ProductOrderBy(Enum):
    ID_ASC = "ID_ASC"
    NAME_ASC = "NAME_ASC"
    PRICE_ASC = "PRICE_ASC"
    PRICE_DESC = "PRICE_DESC"
    NEWEST = "NEWEST"


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
    def from_doc(cls, view: documents.UserView) -> User:
        return cls(
            id=strawberry.ID(str(view.id)),
            name=view.name,
            email=view.email,
            version=view.version,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )

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
    def from_doc(cls, view: documents.ProductView) -> Product:
        return cls(
            id=strawberry.ID(str(view.id)),
            name=view.name,
            description=view.description,
            price=from_cents(view.price_cents),
            stock=view.stock,
            version=view.version,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


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
    placed_by: strawberry.Private[documents.OrderUser]  # the user as of the order's newest event
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
    def from_doc(cls, view: documents.OrderView) -> Order:
        return cls(
            id=strawberry.ID(str(view.id)),
            user_id=strawberry.ID(str(view.user_id)),
            placed_by=view.user,
            items=[
                OrderItem(
                    product_id=strawberry.ID(str(item.product_id)),
                    product_name=item.product_name,
                    quantity=item.quantity,
                    unit_price=from_cents(item.unit_price_cents),
                    subtotal=from_cents(item.subtotal_cents),
                )
                for item in view.items
            ],
            total_amount=from_cents(view.total_cents),
            status=view.status,
            payment_method=view.payment_method,
            cancel_reason=view.cancel_reason,
            reject_reason=view.reject_reason,
            history=[StatusChange(status=h.status, at=h.at, reason=h.reason) for h in view.history],
            version=view.version,
            created_at=view.created_at,
            updated_at=view.updated_at,
            paid_at=view.paid_at,
            canceled_at=view.canceled_at,
            reserved_until=view.reserved_until,
        )


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
