"""Orders by status and age: how many orders await their stock decision and since when (the relay's metrics).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_status_created_at", "orders", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_status_created_at", table_name="orders")
