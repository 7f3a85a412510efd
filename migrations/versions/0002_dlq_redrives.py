"""dlq_redrives: which dead-lettered messages an operator sent back to their topic, and where they landed.

`eventshop dlq redrive` skips a message that has a row here unless forced; every redrive adds a row,
so a forced second redrive keeps the history of the first.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE_ARGS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def upgrade() -> None:
    op.create_table(
        "dlq_redrives",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("dlq_topic", sa.String(255), nullable=False),
        sa.Column("dlq_partition", sa.Integer, nullable=False),
        sa.Column("dlq_offset", sa.BigInteger, nullable=False),
        sa.Column("target_topic", sa.String(255), nullable=False),
        sa.Column("target_partition", sa.Integer, nullable=False),
        sa.Column("target_offset", sa.BigInteger, nullable=False),
        sa.Column("redriven_at", mysql.DATETIME(fsp=6), nullable=False),
        **TABLE_ARGS,
    )
    op.create_index("ix_dlq_redrives_message", "dlq_redrives", ["dlq_topic", "dlq_partition", "dlq_offset"])


def downgrade() -> None:
    op.drop_table("dlq_redrives")
