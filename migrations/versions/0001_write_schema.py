"""The whole write schema: aggregates, items, status history, outbox, processed events, idempotency keys.

Compatible with MySQL 8.4 and MariaDB 10.11+. Money is DECIMAL(12,2); timestamps are DATETIME(6) in UTC.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = mysql.DATETIME(fsp=6)
MONEY = sa.Numeric(12, 2)
ID = sa.BigInteger
TABLE_ARGS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
STATUSES = "'CREATED','RESERVED','REJECTED','PAID','PROCESSING','SHIPPED','DELIVERED','CANCELED'"


def _audit() -> list[sa.Column]:
    return [
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    ]


def upgrade() -> None:
    _customers_and_products()
    _orders()
    _outbox_and_bookkeeping()


def _customers_and_products() -> None:
    op.create_table(
        "users",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        *_audit(),
        sa.Column("deleted_at", TS, nullable=True),
        # Unique among live users only: a soft-deleted user frees its email.
        sa.Column(
            "active_email",
            sa.String(320),
            sa.Computed("IF(deleted_at IS NULL, email, NULL)", persisted=True),
        ),
        sa.CheckConstraint("version >= 1", name="ck_users_version"),
        **TABLE_ARGS,
    )
    op.create_index("uq_users_active_email", "users", ["active_email"], unique=True)

    op.create_table(
        "products",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("stock", sa.Integer, nullable=False),
        *_audit(),
        sa.Column("deleted_at", TS, nullable=True),
        sa.CheckConstraint("stock >= 0", name="ck_products_stock_not_negative"),
        sa.CheckConstraint("price > 0", name="ck_products_price_positive"),
        **TABLE_ARGS,
    )


def _orders() -> None:
    """Orders, their items (prices at order time) and their status history."""
    op.create_table(
        "orders",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", name="fk_orders_user"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_amount", MONEY, nullable=False),
        sa.Column("payment_method", sa.String(32), nullable=True),
        sa.Column("cancel_reason", sa.String(500), nullable=True),
        sa.Column("reject_reason", sa.String(500), nullable=True),
        sa.Column("stock_held", sa.Boolean, nullable=False, server_default=sa.false()),
        *_audit(),
        sa.Column("paid_at", TS, nullable=True),
        sa.Column("canceled_at", TS, nullable=True),
        sa.Column("deleted_at", TS, nullable=True),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_orders_status"),
        sa.CheckConstraint("total_amount >= 0", name="ck_orders_total"),
        **TABLE_ARGS,
    )
    op.create_index("ix_orders_user_id", "orders", ["user_id", "id"])

    op.create_table(
        "order_items",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id", name="fk_items_order"), nullable=False),
        sa.Column("product_id", ID, sa.ForeignKey("products.id", name="fk_items_product"), nullable=False),
        sa.Column("product_name", sa.String(255), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("subtotal", MONEY, nullable=False),
        sa.UniqueConstraint("order_id", "product_id", name="uq_items_order_product"),
        sa.CheckConstraint("quantity BETWEEN 1 AND 10000", name="ck_items_quantity"),
        **TABLE_ARGS,
    )

    op.create_table(
        "order_status_history",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id", name="fk_history_order"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_history_status"),
        **TABLE_ARGS,
    )


def _outbox_and_bookkeeping() -> None:
    """The outbox, the consumers' processed events and the idempotency keys of retried commands."""
    op.create_table(
        "outbox",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("aggregate_type", sa.String(32), nullable=False),
        sa.Column("aggregate_id", ID, nullable=False),
        sa.Column("aggregate_version", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=True),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        **TABLE_ARGS,
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at", "id"])

    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("processed_at", TS, nullable=False),
        **TABLE_ARGS,
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("operation", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        **TABLE_ARGS,
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    for table in (
        "idempotency_keys",
        "processed_events",
        "outbox",
        "order_status_history",
        "order_items",
        "orders",
        "products",
        "users",
    ):
        op.drop_table(table)
