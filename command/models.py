"""The write model: SQLModel entities mapped onto the Alembic-managed MySQL schema.

Timestamps are naive UTC `DATETIME(6)`; `shared.events.utcnow()`-style aware values are
converted at the edges (snapshots).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Numeric, String, Text
from sqlmodel import Field, SQLModel

from shared.events import OrderStatus, PaymentMethod


def db_now() -> datetime:
    """Naive UTC for DATETIME(6) columns, truncated to milliseconds: the read model (BSON dates) keeps
    milliseconds, so a mutation's answer and a later query show the same instant."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000, tzinfo=None)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    name: str = Field(sa_column=Column(String(255), nullable=False))
    email: str = Field(sa_column=Column(String(320), nullable=False))
    version: int = 1
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(), nullable=True))


class Product(SQLModel, table=True):
    __tablename__ = "products"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    name: str = Field(sa_column=Column(String(255), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    price: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    stock: int = 0
    version: int = 1
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(), nullable=True))


class Order(SQLModel, table=True):
    __tablename__ = "orders"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: OrderStatus = Field(sa_column=Column(String(16), nullable=False))
    total_amount: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    payment_method: PaymentMethod | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    cancel_reason: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    reject_reason: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    stock_held: bool = False
    version: int = 1
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))
    paid_at: datetime | None = Field(default=None, sa_column=Column(DateTime(), nullable=True))
    canceled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(), nullable=True))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(), nullable=True))


class OrderItem(SQLModel, table=True):
    __tablename__ = "order_items"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    order_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    product_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    product_name: str = Field(sa_column=Column(String(255), nullable=False))
    quantity: int
    unit_price: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    subtotal: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))


class OrderStatusChange(SQLModel, table=True):
    __tablename__ = "order_status_history"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    order_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: OrderStatus = Field(sa_column=Column(String(16), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    event_id: str = Field(sa_column=Column(String(36), nullable=False))
    topic: str = Field(sa_column=Column(String(100), nullable=False))
    key: str = Field(sa_column=Column(String(100), nullable=False))
    aggregate_type: str = Field(sa_column=Column(String(32), nullable=False))
    aggregate_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    aggregate_version: int
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    headers: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))
    published_at: datetime | None = Field(default=None, sa_column=Column(DateTime(), nullable=True))


class ProcessedEvent(SQLModel, table=True):
    __tablename__ = "processed_events"

    consumer: str = Field(sa_column=Column(String(100), primary_key=True))
    event_id: str = Field(sa_column=Column(String(36), primary_key=True))
    processed_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    operation: str = Field(sa_column=Column(String(64), primary_key=True))
    key: str = Field(sa_column=Column(String(255), primary_key=True))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(DateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(), nullable=False))
