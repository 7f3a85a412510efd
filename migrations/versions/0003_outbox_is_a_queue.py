"""outbox: published rows are deleted by the relay, so `published_at` and its index go.

Every row left in the outbox is one still to publish (Kafka keeps the events). Rows that an older relay
had marked published are deleted here; downgrading brings the column back with every row unpublished.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM outbox WHERE published_at IS NOT NULL")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_column("outbox", "published_at")


def downgrade() -> None:
    op.add_column("outbox", sa.Column("published_at", mysql.DATETIME(fsp=6), nullable=True))
    op.create_index("ix_outbox_published_at", "outbox", ["published_at", "id"])
