"""Reservations that expire: an order's payment deadline, indexed for the expirer, and the EXPIRED status.

- `orders.reserved_until`: when a RESERVED order that is still unpaid expires (NULL in every other status).
- `ix_orders_status_reserved_until`: the due RESERVED orders, earliest deadline first, as one index range.
- The status checks of `orders` and `order_status_history` admit EXPIRED.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BEFORE = "'CREATED','RESERVED','REJECTED','PAID','PROCESSING','SHIPPED','DELIVERED','CANCELED'"
AFTER = f"{BEFORE},'EXPIRED'"
CHECKS = (("orders", "ck_orders_status"), ("order_status_history", "ck_history_status"))


def _statuses(allowed: str) -> None:
    """DROP CONSTRAINT, not DROP CHECK: MariaDB and MySQL 8 both know it. Dropped, then added in a statement of its
    own: one ALTER that drops and adds the same name is not accepted everywhere."""
    for table, name in CHECKS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (status IN ({allowed}))")


def upgrade() -> None:
    op.add_column("orders", sa.Column("reserved_until", mysql.DATETIME(fsp=6), nullable=True))
    op.create_index("ix_orders_status_reserved_until", "orders", ["status", "reserved_until"])
    _statuses(AFTER)


def downgrade() -> None:
    # The older schema has no EXPIRED: such orders become what it knows of an order ended unpaid.
    op.execute("UPDATE orders SET status = 'CANCELED' WHERE status = 'EXPIRED'")
    op.execute("UPDATE order_status_history SET status = 'CANCELED' WHERE status = 'EXPIRED'")
    _statuses(BEFORE)
    op.drop_index("ix_orders_status_reserved_until", table_name="orders")
    op.drop_column("orders", "reserved_until")
