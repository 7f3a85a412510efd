"""Who owns an order, for the gateway's access policy on reads (`Query.order`, `orderStatusChanged`); the order
commands check their owner on the row they lock instead (`command.domain.customer`)."""

from __future__ import annotations

from sqlmodel import col, select

from command.db import WriteDatabase
from command.models import OrderRow


async def order_owner(write_db: WriteDatabase, order_id: int) -> int | None:
    """The user id of an order (deleted ones included), or None if it never existed. One primary-key read, in
    SQLAlchemy Core: its compiled-statement cache makes it as cheap as the plain SQL it replaced."""
    async with write_db.engine.connect() as conn:
        owner = await conn.scalar(select(col(OrderRow.user_id)).where(col(OrderRow.id) == order_id))
    return None if owner is None else int(owner)
