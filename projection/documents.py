"""Beanie documents of the read model. Money is integer cents; `version` gates every write."""

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
    version: int
    created_at: datetime
    updated_at: datetime
    deleted: bool = False

    class Settings:
        name = "products"
        indexes = [
            IndexModel([("deleted", ASCENDING), ("name_lc", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("deleted", ASCENDING), ("price_cents", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("deleted", ASCENDING), ("stock", ASCENDING)]),
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
            IndexModel([("deleted", ASCENDING), ("user_id", ASCENDING), ("_id", DESCENDING)]),
            IndexModel([("deleted", ASCENDING), ("status", ASCENDING), ("_id", DESCENDING)]),
            IndexModel([("user.id", ASCENDING)]),
        ]


VIEW_DOCUMENTS: list[type[Document]] = [UserView, ProductView, OrderView]
