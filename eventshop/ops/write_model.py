"""The write model's current state as the views should show it, read in id-ordered batches.

Rebuild and verify both need "every aggregate of a kind, as a snapshot and as its expected view document";
they read it here, inside one consistent snapshot (REPEATABLE READ), so an order and its items, history and
user are seen as of one moment, however long the read takes. Each kind's rows, and how they become snapshots,
come from the registry of kinds (`eventshop/kinds.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from command.db import WriteDatabase
from eventshop.kinds import KIND_OF
from projection.documents import View
from shared.events import AggregateType, Snapshot


class WriteModelReader:
    """Snapshots of every aggregate of a kind, batch by batch, in id order."""

    def __init__(self, session: AsyncSession, batch_size: int = 500) -> None:
        self.session = session
        self.batch_size = batch_size

    async def count(self, kind: AggregateType) -> int:
        row = KIND_OF[kind].write.row
        return int((await self.session.execute(select(func.count()).select_from(row))).scalar_one())

    async def snapshots(
        self, kind: AggregateType, *, ids: Collection[int] | None = None, changed_since: datetime | None = None
    ) -> AsyncIterator[list[Snapshot]]:
        """Batches of full snapshots (the `data` of an event), optionally only some ids or recent changes."""
        write = KIND_OF[kind].write
        model: Any = write.row
        last_id = 0
        wanted = sorted(set(ids)) if ids is not None else None
        while True:
            stmt = select(model).where(model.id > last_id).order_by(model.id).limit(self.batch_size)
            if wanted is not None:
                chunk = [i for i in wanted if i > last_id][: self.batch_size]
                if not chunk:
                    return
                stmt = stmt.where(model.id.in_(chunk))
            if changed_since is not None:
                stmt = stmt.where(model.updated_at >= changed_since)
            rows = list((await self.session.execute(stmt)).scalars())
            if not rows:
                return
            last_id = rows[-1].id
            yield await write.snapshots(self.session, rows)

    async def documents(self, kind: AggregateType, *, ids: Collection[int] | None = None) -> AsyncIterator[list[View]]:
        """Batches of the view documents the projector would hold for the current state."""
        view = KIND_OF[kind].view
        async for batch in self.snapshots(kind, ids=ids):
            yield [view.of(snapshot) for snapshot in batch]


@asynccontextmanager
async def consistent_snapshot(db: WriteDatabase, batch_size: int = 500) -> AsyncIterator[WriteModelReader]:
    """A REPEATABLE READ transaction: InnoDB fixes its snapshot at the first read, and every later batch
    sees the write model as of that moment (commands keep committing meanwhile, unseen)."""
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin(), AsyncSession(bind=conn, expire_on_commit=False) as session:
            yield WriteModelReader(session, batch_size)
