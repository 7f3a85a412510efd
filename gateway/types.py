"""GraphQL object types of the contract, built from aggregate snapshots: a mutation's committed one, or the one a
read model's view gives back (`ViewDocument.snapshot`), each field copied by name (`gateway.snapshots.by_name`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from gateway.connections import Connection, asks_for_total, connection, counted_from_start
from gateway.context import Info
from gateway.enums import OrderStatus, PaymentMethod
from gateway.snapshots import by_name
from projection import documents
from projection.queries import current_user
from shared import events


@strawberry.type
class Deleted:
    id: strawberry.ID
    version: int

    @classmethod
    def of(cls, snapshot: events.Snapshot) -> Deleted:
        """The answer of a delete: which aggregate, at the version its deletion committed."""
        return cls(id=strawberry.ID(str(snapshot.id)), version=snapshot.version)


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
