"""Beanie documents of the read model. Money is integer cents; `version` gates every write.

Each view is written by its own aggregate's events only, by `_id`. The indexes name the queries of
`projection/queries.py` they serve, on MongoDB and on the patched FerretDB alike (devstack/ferretdb.py): every
filtered, sorted page walks one of them to its limit instead of reading the collection.
"""

from __future__ import annotations

from datetime import datetime

from beanie import Document
from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, IndexModel


class UserView(Document):
    id: int  # type: ignore[assignment]
    name: str
    name_lc: str
    email: str
    version: int
    created_at: datetime
    updated_at: datetime
    deleted: bool = False

    class Settings:
        name = "users"
        indexes = [
            # users(first) walks `_id`; users(search): one prefix range on each of these, then `_id` order
            IndexModel([("deleted", ASCENDING), ("name_lc", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("deleted", ASCENDING), ("email", ASCENDING)]),
        ]


class ProductView(Document):
    id: int  # type: ignore[assignment]
    name: str
    name_lc: str
    description: str
    price_cents: int
    stock: int
    in_stock: bool
    """stock > 0, kept with the stock: `inStock` is an equality an index counts, not a range on a number."""
    version: int
    created_at: datetime
    updated_at: datetime
    deleted: bool = False

    class Settings:
        name = "products"
        indexes = [
            # products(orderBy: ID_ASC | NEWEST) walks `_id`; NAME_ASC and search: this one
            IndexModel([("deleted", ASCENDING), ("name_lc", ASCENDING), ("_id", ASCENDING)]),
            # PRICE_ASC, PRICE_DESC (backwards) and price ranges
            IndexModel([("deleted", ASCENDING), ("price_cents", ASCENDING), ("_id", ASCENDING)]),
            # inStock and its count
            IndexModel([("deleted", ASCENDING), ("in_stock", ASCENDING), ("_id", ASCENDING)]),
        ]


class OrderUser(BaseModel):
    id: int
    name: str
    email: str
    version: int


class OrderItemView(BaseModel):
    product_id: int
    product_name: str
    quantity: int
    unit_price_cents: int
    subtotal_cents: int


class StatusChangeView(BaseModel):
    status: str
    at: datetime
    reason: str | None = None


class OrderView(Document):
    id: int  # type: ignore[assignment]
    user_id: int
    user: OrderUser
    """The user as of this order's newest event; readers show the users view's current one (`Order.user`)."""
    items: list[OrderItemView]
    total_cents: int
    status: str
    payment_method: str | None = None
    cancel_reason: str | None = None
    reject_reason: str | None = None
    history: list[StatusChangeView]
    version: int
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None = None
    canceled_at: datetime | None = None
    deleted: bool = False

    class Settings:
        name = "orders"
        indexes = [
            # orders(userId), User.orders (with a status too: the rows of one user are few); orders() walks `_id`
            IndexModel([("deleted", ASCENDING), ("user_id", ASCENDING), ("_id", DESCENDING)]),
            # orders(status)
            IndexModel([("deleted", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)]),
        ]


VIEW_DOCUMENTS: list[type[Document]] = [UserView, ProductView, OrderView]
