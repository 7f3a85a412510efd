"""The documents of the read model, as pydantic models. Money is integer cents; `version` gates every write.

Plain pydantic, not Beanie: every read and write here is one pymongo call on a collection the caller hands in
(a process holds several read models: rebuild's fresh collections, the tests' labs, the bench), and Beanie binds
each document class to the one database `init_beanie` saw last. A `find_one` by `_id` through Beanie also measured
1.24 ms against 0.88 ms through pymongo on the same store.

Each view is written by its own aggregate's events only, by `_id`. The indexes name the queries of
`projection/queries.py` they serve, on MongoDB and on the patched FerretDB alike (devstack/ferretdb.py): every
filtered, sorted page walks one of them to its limit instead of reading the collection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from shared.events import AggregateType, OrderStatus, PaymentMethod


class ViewDocument(BaseModel):
    """What every view is: its aggregate's id as `_id`, the aggregate's version (which gates every write), and
    whether the aggregate is deleted (a deleted view stays, so that an older event cannot bring it back)."""

    model_config = ConfigDict(populate_by_name=True)
    kind: ClassVar[AggregateType]
    collection: ClassVar[str]
    indexes: ClassVar[list[IndexModel]]
    """Each names the queries of `projection/queries.py` it serves."""

    id: int = Field(alias="_id")
    version: int
    created_at: datetime
    updated_at: datetime
    deleted: bool = False

    def stored(self) -> dict[str, Any]:
        """The document as MongoDB stores it (`_id`, BSON types): what is written and announced."""
        return self.model_dump(by_alias=True)


class UserView(ViewDocument):
    kind = AggregateType.USER

    name: str
    name_lc: str
    email: str

    collection = "users"
    indexes = [
        # users(first) walks `_id`; users(search): one prefix range on each of these, then `_id` order
        IndexModel([("deleted", ASCENDING), ("name_lc", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("deleted", ASCENDING), ("email", ASCENDING)]),
    ]


class ProductView(ViewDocument):
    kind = AggregateType.PRODUCT

    name: str
    name_lc: str
    description: str
    price_cents: int
    stock: int
    in_stock: bool
    """stock > 0, kept with the stock: `inStock` is an equality an index counts, not a range on a number."""

    collection = "products"
    indexes = [
        # products(orderBy: ID_ASC | NEWEST) walks `_id`; NAME_ASC and search: this one
        IndexModel([("deleted", ASCENDING), ("name_lc", ASCENDING), ("_id", ASCENDING)]),
        # PRICE_ASC, PRICE_DESC (backwards) and price ranges
        IndexModel([("deleted", ASCENDING), ("price_cents", ASCENDING), ("_id", ASCENDING)]),
        # inStock and its count
        IndexModel([("deleted", ASCENDING), ("in_stock", ASCENDING), ("_id", ASCENDING)]),
    ]


class OrderUser(BaseModel):
    """Who placed an order: a part of OrderView, and the projection of the users view that `Order.user` reads
    (`ReadModel.users_by_id`), hence `_id` accepted for `id`."""

    id: int = Field(validation_alias=AliasChoices("id", "_id"))
    name: str
    email: str
    version: int

    projection: ClassVar[dict[str, int]] = {"_id": 1, "name": 1, "email": 1, "version": 1}
    """The fields of the users view it is read from."""


class OrderItemView(BaseModel):
    product_id: int
    product_name: str
    quantity: int
    unit_price_cents: int
    subtotal_cents: int


class StatusChangeView(BaseModel):
    status: OrderStatus
    at: datetime
    reason: str | None = None


class OrderView(ViewDocument):
    kind = AggregateType.ORDER

    user_id: int
    user: OrderUser
    """The user as of this order's newest event; readers show the users view's current one (`Order.user`)."""
    items: list[OrderItemView]
    total_cents: int
    status: OrderStatus
    payment_method: PaymentMethod | None = None
    cancel_reason: str | None = None
    reject_reason: str | None = None
    history: list[StatusChangeView]
    paid_at: datetime | None = None
    canceled_at: datetime | None = None
    reserved_until: datetime | None = None

    collection = "orders"
    indexes = [
        # orders(userId), User.orders (with a status too: the rows of one user are few); orders() walks `_id`
        IndexModel([("deleted", ASCENDING), ("user_id", ASCENDING), ("_id", DESCENDING)]),
        # orders(status)
        IndexModel([("deleted", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)]),
    ]


View = UserView | ProductView | OrderView

VIEW_DOCUMENTS: list[type[View]] = [UserView, ProductView, OrderView]
VIEW_OF: dict[AggregateType, type[View]] = {view.kind: view for view in VIEW_DOCUMENTS}
"""The view of each kind of aggregate."""
