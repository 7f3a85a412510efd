"""The write model's current state as the views should show it, read in id-ordered batches.

Rebuild and verify both need "every user/product/order, as a snapshot and as its expected view
document"; they read it here, inside one consistent snapshot (REPEATABLE READ), so an order and its
items, history and user are seen as of one moment, however long the read takes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from command.db import WriteDatabase
from command.models import OrderItemRow, OrderRow, ProductRow, StatusChangeRow, UserRow
from command.snapshots import order_snapshot, product_snapshot, user_snapshot
from projection.documents import VIEW_OF, View
from shared.events import AggregateType, Snapshot


@dataclass(frozen=True)
class ViewKind:
    kind: AggregateType
    model: type[Any]
    """The write model's table of the aggregate."""
    as_of_event: frozenset[str] = frozenset()
    """Fields that hold another aggregate as of this aggregate's newest event (not compared by verify)."""

    @property
    def document(self) -> Callable[[Snapshot], View]:
        """The view document of a snapshot, as the projector makes it."""
        return VIEW_OF[self.kind].of

    @property
    def collection(self) -> str:
        """The live collection name of the view."""
        return VIEW_OF[self.kind].collection


VIEW_KINDS: tuple[ViewKind, ...] = (
    ViewKind(AggregateType.USER, UserRow),
    ViewKind(AggregateType.PRODUCT, ProductRow),
    ViewKind(AggregateType.ORDER, OrderRow, frozenset({"user"})),
)
BY_KIND = {v.kind: v for v in VIEW_KINDS}


class WriteModelReader:
    """Snapshots of every aggregate of a kind, batch by batch, in id order."""

    def __init__(self, session: AsyncSession, batch_size: int = 500) -> None:
        self.session = session
        self.batch_size = batch_size

    async def count(self, kind: AggregateType) -> int:
        model = BY_KIND[kind].model
        return int((await self.session.execute(select(func.count()).select_from(model))).scalar_one())

    async def snapshots(
        self, kind: AggregateType, *, ids: Collection[int] | None = None, changed_since: datetime | None = None
    ) -> AsyncIterator[list[Snapshot]]:
        """Batches of full snapshots (the `data` of an event), optionally only some ids or recent changes."""
        model = BY_KIND[kind].model
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
            yield await self._snapshots(kind, rows)

    async def _snapshots(self, kind: AggregateType, rows: list[Any]) -> list[Snapshot]:
        if kind is AggregateType.USER:
            return [user_snapshot(row) for row in rows]
        if kind is AggregateType.PRODUCT:
            return [product_snapshot(row) for row in rows]
        return await self._order_snapshots(rows)

    async def _order_snapshots(self, orders: list[OrderRow]) -> list[Snapshot]:
        ids = [o.id for o in orders]
        items = (await self.session.execute(select(OrderItemRow).where(col(OrderItemRow.order_id).in_(ids)))).scalars()
        history = (
            await self.session.execute(select(StatusChangeRow).where(col(StatusChangeRow.order_id).in_(ids)))
        ).scalars()
        user_ids = sorted({o.user_id for o in orders})
        users = {
            u.id: u
            for u in (await self.session.execute(select(UserRow).where(col(UserRow.id).in_(user_ids)))).scalars()
        }
        items_of: dict[int, list[OrderItemRow]] = {i: [] for i in ids}  # type: ignore[misc]
        history_of: dict[int, list[StatusChangeRow]] = {i: [] for i in ids}  # type: ignore[misc]
        for item in items:
            items_of[item.order_id].append(item)
        for change in history:
            history_of[change.order_id].append(change)
        return [
            order_snapshot(o, items_of[o.id], history_of[o.id], users[o.user_id])  # type: ignore[index]
            for o in orders
        ]

    async def documents(self, kind: AggregateType, *, ids: Collection[int] | None = None) -> AsyncIterator[list[View]]:
        """Batches of the view documents the projector would hold for the current state."""
        document = BY_KIND[kind].document
        async for batch in self.snapshots(kind, ids=ids):
            yield [document(snapshot) for snapshot in batch]


@asynccontextmanager
async def consistent_snapshot(db: WriteDatabase, batch_size: int = 500) -> AsyncIterator[WriteModelReader]:
    """A REPEATABLE READ transaction: InnoDB fixes its snapshot at the first read, and every later batch
    sees the write model as of that moment (commands keep committing meanwhile, unseen)."""
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin(), AsyncSession(bind=conn, expire_on_commit=False) as session:
            yield WriteModelReader(session, batch_size)
