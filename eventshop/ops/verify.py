"""Write model vs read model, field by field.

For every user, product and order of the write model (live and soft-deleted), the view document the
projectors should hold is computed as they compute it (`ViewDocument.of`) and compared, in its stored
form (`ViewDocument.stored()`, what the projector writes), with the stored document as MongoDB returns it:
unparsed, so that a missing, extra or mistyped field shows rather than being defaulted or coerced.
Timestamps are compared at millisecond precision, the most MongoDB keeps. View documents without an
aggregate in the write model are reported too (`_id` "unexpected"), and so are the reservations the expirer
owes (`reservation_differences`): a RESERVED order past its payment deadline, an EXPIRED one still holding stock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import and_, or_, select

from command.db import WriteDatabase
from command.models import db_now
from command.store import ORDERS
from eventshop.kinds import KINDS
from eventshop.ops.write_model import consistent_snapshot
from projection.kinds import VIEW_OF
from projection.store import Doc
from shared.events import AggregateType, OrderStatus

MISSING = "<missing>"
ID_BATCH = 1000


@dataclass(frozen=True)
class Difference:
    kind: AggregateType
    id: int
    field: str
    """A dotted path into the document (`items[0].quantity`), or `_id` when a whole document is missing."""
    expected: Any
    actual: Any


def comparable(value: Any) -> Any:
    """Timestamps as aware UTC with milliseconds (MongoDB's precision); containers recursively."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        aware = aware.astimezone(UTC)
        return aware.replace(microsecond=aware.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [comparable(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # True == 1 in Python, not in a view document
        return type(a) is type(b) and a == b
    return bool(a == b)


def diff_documents(expected: Any, actual: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, expected, actual) of every leaf that differs; both sides already `comparable`."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual)):
            where = f"{path}.{key}" if path else key
            found += diff_documents(expected.get(key, MISSING), actual.get(key, MISSING), where)
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [(f"{path}.length" if path else "length", len(expected), len(actual))]
        found = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found += diff_documents(e, a, f"{path}[{i}]")
        return found
    return [] if _same(expected, actual) else [(path, expected, actual)]


def compare(kind: AggregateType, expected: Doc | None, actual: Doc | None, doc_id: int) -> list[Difference]:
    if expected is None and actual is None:
        return []
    ignored = VIEW_OF[kind].as_of_event
    expected = None if expected is None else {k: v for k, v in expected.items() if k not in ignored}
    actual = None if actual is None else {k: v for k, v in actual.items() if k not in ignored}
    if expected is None:
        return [Difference(kind, doc_id, "_id", "no such aggregate in the write model", "unexpected view document")]
    if actual is None:
        return [Difference(kind, doc_id, "_id", "view document", "missing")]
    return [
        Difference(kind, doc_id, where, e, a)
        for where, e, a in diff_documents(comparable(expected), comparable(actual))
    ]


async def differences(
    write_db: WriteDatabase,
    read_db: AsyncDatabase[Doc],
    *,
    ids: Mapping[AggregateType, Collection[int]] | None = None,
) -> list[Difference]:
    """Every difference between the write model and the views, or only for `ids` (per kind) when given."""
    found: list[Difference] = []
    async with consistent_snapshot(write_db) as reader:
        for view in KINDS:
            if ids is not None and view.kind not in ids:
                continue
            scope = None if ids is None else ids[view.kind]
            collection = read_db[view.collection]
            seen: set[int] = set()
            async for batch in reader.documents(view.kind, ids=scope):
                stored = {d["_id"]: d async for d in collection.find({"_id": {"$in": [e.id for e in batch]}})}
                for expected in batch:
                    seen.add(expected.id)
                    found += compare(view.kind, expected.stored(), stored.get(expected.id), expected.id)
            found += await _unexpected(view.kind, collection, seen, scope)
    if ids is None or AggregateType.ORDER in ids:
        found += await reservation_differences(write_db, ids=None if ids is None else ids[AggregateType.ORDER])
    return found


async def reservation_differences(write_db: WriteDatabase, *, ids: Collection[int] | None = None) -> list[Difference]:
    """What the expirer owes, from the write model alone: a RESERVED order past its payment deadline (none once
    the expirers have caught up: the settle re-check tells their lag from a stuck expiry) and an EXPIRED order
    still holding stock (never: its stock goes back in the transaction that expires it)."""
    now = db_now()
    overdue = and_(ORDERS.c.status == OrderStatus.RESERVED.value, ORDERS.c.reserved_until <= now)
    held = and_(ORDERS.c.status == OrderStatus.EXPIRED.value, ORDERS.c.stock_held)
    query = select(ORDERS.c.id, ORDERS.c.status, ORDERS.c.reserved_until).where(or_(overdue, held))
    if ids is not None:
        query = query.where(ORDERS.c.id.in_(sorted(ids)))
    async with write_db.engine.connect() as conn:
        rows = list(await conn.execute(query.order_by(ORDERS.c.id)))
    order = AggregateType.ORDER
    return [
        Difference(order, row.id, "write model: status", "EXPIRED", f"RESERVED, due {row.reserved_until}")
        if row.status == OrderStatus.RESERVED.value
        else Difference(order, row.id, "write model: stock_held", False, True)
        for row in rows
    ]


async def _unexpected(
    kind: AggregateType, collection: AsyncCollection[Doc], seen: set[int], scope: Collection[int] | None
) -> list[Difference]:
    """View documents whose aggregate the write model does not have."""
    if scope is not None:
        extra = set(scope) - seen
        query: Doc = {"_id": {"$in": sorted(extra)}}
        if not extra:
            return []
    else:
        query = {}
    return [
        compare(kind, None, doc, doc["_id"])[0]
        async for doc in collection.find(query, {"_id": 1}).sort("_id", 1).batch_size(ID_BATCH)
        if doc["_id"] not in seen
    ]


async def settled_differences(
    write_db: WriteDatabase, read_db: AsyncDatabase[Doc], *, settle: float = 0.0, interval: float = 0.25
) -> list[Difference]:
    """`differences`, then the differing documents checked again for up to `settle` seconds.

    On a running system the views trail the write model by the projection lag; a difference that
    disappears within `settle` was lag, not an inconsistency.
    """
    found = await differences(write_db, read_db)
    deadline = time.monotonic() + settle
    while found and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        scope: dict[AggregateType, set[int]] = {}
        for difference in found:
            scope.setdefault(difference.kind, set()).add(difference.id)
        found = await differences(write_db, read_db, ids=scope)
    return found
