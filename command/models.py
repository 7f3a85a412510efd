"""The write model: SQLModel entities, the one description of the MySQL schema.

Alembic migrations bring a database to what these say (tests/integration/test_schema_drift.py compares a
database migrated to head with them: columns, types, defaults, indexes, keys). Timestamps are naive UTC
`DATETIME(6)`; aware values are converted at the edges (`shared.utc`). Lengths and ranges come from the input
rules (`command.validation`), so a limit is stated once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.mysql import DATETIME
from sqlmodel import Field, SQLModel

from command.validation import MAX_EMAIL, MAX_IDEMPOTENCY_KEY, MAX_NAME, MAX_QUANTITY, MAX_REASON
from shared.events import OrderStatus, PaymentMethod

TIMESTAMP = DATETIME(fsp=6)
"""Every timestamp column: microseconds, naive UTC."""
STATUSES = ", ".join(f"'{status.value}'" for status in OrderStatus)


def version_field() -> Any:
    """An aggregate's version: 1 when created, +1 on every change."""
    return Field(default=1, sa_column_kwargs={"server_default": "1"})


def db_now() -> datetime:
    """Naive UTC for DATETIME(6) columns, truncated to milliseconds: the read model (BSON dates) keeps
    milliseconds, so a mutation's answer and a later query show the same instant."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000, tzinfo=None)


class UserRow(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        Index("uq_users_active_email", "active_email", unique=True),
        CheckConstraint("version >= 1", name="ck_users_version"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    name: str = Field(sa_column=Column(String(MAX_NAME), nullable=False))
    email: str = Field(sa_column=Column(String(MAX_EMAIL), nullable=False))
    version: int = version_field()
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
    updated_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(TIMESTAMP, nullable=True))
    # Unique among live users only: a soft-deleted user frees its email. Computed by the server, never written.
    active_email: str | None = Field(
        default=None,
        sa_column=Column(String(MAX_EMAIL), Computed("IF(deleted_at IS NULL, email, NULL)", persisted=True)),
    )


class ProductRow(SQLModel, table=True):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="ck_products_stock_not_negative"),
        CheckConstraint("price > 0", name="ck_products_price_positive"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    name: str = Field(sa_column=Column(String(MAX_NAME), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    price: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    stock: int = 0
    version: int = version_field()
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
    updated_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(TIMESTAMP, nullable=True))


class OrderRow(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_user_id", "user_id", "id"),
        # The orders that await their stock decision (CREATED), oldest first: the relay's undecided metrics.
        Index("ix_orders_status_created_at", "status", "created_at"),
        # The RESERVED orders by payment deadline: the expirer's due orders and the relay's overdue metrics walk
        # only what is due, however many orders the table holds.
        Index("ix_orders_status_reserved_until", "status", "reserved_until"),
        CheckConstraint(f"status IN ({STATUSES})", name="ck_orders_status"),
        CheckConstraint("total_amount >= 0", name="ck_orders_total"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    user_id: int = Field(sa_column=Column(BigInteger, ForeignKey("users.id", name="fk_orders_user"), nullable=False))
    status: OrderStatus = Field(sa_column=Column(String(16), nullable=False))
    total_amount: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    payment_method: PaymentMethod | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    cancel_reason: str | None = Field(default=None, sa_column=Column(String(MAX_REASON), nullable=True))
    reject_reason: str | None = Field(default=None, sa_column=Column(String(MAX_REASON), nullable=True))
    stock_held: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    version: int = version_field()
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
    updated_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
    paid_at: datetime | None = Field(default=None, sa_column=Column(TIMESTAMP, nullable=True))
    canceled_at: datetime | None = Field(default=None, sa_column=Column(TIMESTAMP, nullable=True))
    reserved_until: datetime | None = Field(default=None, sa_column=Column(TIMESTAMP, nullable=True))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(TIMESTAMP, nullable=True))


class OrderItemRow(SQLModel, table=True):
    __tablename__ = "order_items"
    __table_args__ = (
        UniqueConstraint("order_id", "product_id", name="uq_items_order_product"),
        CheckConstraint(f"quantity BETWEEN 1 AND {MAX_QUANTITY}", name="ck_items_quantity"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    order_id: int = Field(sa_column=Column(BigInteger, ForeignKey("orders.id", name="fk_items_order"), nullable=False))
    product_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("products.id", name="fk_items_product"), nullable=False)
    )
    product_name: str = Field(sa_column=Column(String(MAX_NAME), nullable=False))
    quantity: int
    unit_price: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    subtotal: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))


class StatusChangeRow(SQLModel, table=True):
    __tablename__ = "order_status_history"
    __table_args__ = (CheckConstraint(f"status IN ({STATUSES})", name="ck_history_status"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    order_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("orders.id", name="fk_history_order"), nullable=False)
    )
    status: OrderStatus = Field(sa_column=Column(String(16), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(String(MAX_REASON), nullable=True))
    at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_outbox_event_id"),
        # The relay reads unpublished rows in id order, the purge walks published ones by age.
        Index("ix_outbox_published_at", "published_at", "id"),
        # REDUNDANT keeps room for a NULL fixed-size column in the record, so marking a row published rewrites
        # 8 bytes in place; in the compact formats NULL takes no room and every mark re-inserts the whole row
        # (payload and headers included): twice the relay's MySQL work per event (bench relay).
        {"mysql_row_format": "REDUNDANT"},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    event_id: str = Field(sa_column=Column(String(36), nullable=False))
    topic: str = Field(sa_column=Column(String(100), nullable=False))
    key: str = Field(sa_column=Column(String(100), nullable=False))
    aggregate_type: str = Field(sa_column=Column(String(32), nullable=False))
    aggregate_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    aggregate_version: int
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    headers: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
    published_at: datetime | None = Field(default=None, sa_column=Column(TIMESTAMP, nullable=True))


class ProcessedEvent(SQLModel, table=True):
    __tablename__ = "processed_events"
    # The retention purge walks it by age (PROCESSED_EVENTS_RETENTION_SECONDS).
    __table_args__ = (Index("ix_processed_events_processed_at", "processed_at"),)

    consumer: str = Field(sa_column=Column(String(100), primary_key=True))
    event_id: str = Field(sa_column=Column(String(36), primary_key=True))
    processed_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    operation: str = Field(sa_column=Column(String(64), primary_key=True))
    key: str = Field(sa_column=Column(String(MAX_IDEMPOTENCY_KEY), primary_key=True))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
    expires_at: datetime = Field(sa_column=Column(TIMESTAMP, nullable=False))


class DlqRedrive(SQLModel, table=True):
    """One redrive of a dead-lettered message (`eventshop dlq redrive`): where it was and where it landed."""

    __tablename__ = "dlq_redrives"
    __table_args__ = (Index("ix_dlq_redrives_message", "dlq_topic", "dlq_partition", "dlq_offset"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    dlq_topic: str = Field(sa_column=Column(String(255), nullable=False))
    dlq_partition: int
    dlq_offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    target_topic: str = Field(sa_column=Column(String(255), nullable=False))
    target_partition: int
    target_offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    redriven_at: datetime = Field(default_factory=db_now, sa_column=Column(TIMESTAMP, nullable=False))
