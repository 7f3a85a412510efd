"""The deletion of a user, a product or an order: the same move for each, marked deleted in a new version (the
aggregate refuses it when its rules say so), with its event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from command.db import Transaction, WriteDatabase
from command.domain.aggregate import Aggregate, S
from command.store import clock, save


async def soft_delete(
    db: WriteDatabase, lock: Callable[[Transaction, int], Awaitable[Aggregate[S]]], aggregate_id: int
) -> S:
    async with db.transaction() as tx:
        aggregate = await lock(tx, aggregate_id)
        aggregate.delete(clock())
        await save(tx, aggregate)
    return aggregate.state
