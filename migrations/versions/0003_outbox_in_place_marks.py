"""The outbox marks rows published in place; processed_events is purged by age.

- `outbox` to ROW_FORMAT=REDUNDANT: that format keeps the room of a NULL fixed-size column in the record, so
  setting `published_at` rewrites it in place; in DYNAMIC (the default) a NULL takes no room and each mark
  re-inserted the whole row. Rebuilt online (concurrent reads and writes go on).
- `ix_processed_events_processed_at`: the retention purge of the stock worker's dedup table walks it.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ROW_FORMAT=REDUNDANT, ALGORITHM=INPLACE, LOCK=NONE")
    op.create_index("ix_processed_events_processed_at", "processed_events", ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_processed_events_processed_at", table_name="processed_events")
    op.execute("ALTER TABLE outbox ROW_FORMAT=DYNAMIC, ALGORITHM=INPLACE, LOCK=NONE")
