"""A Transaction's Core statements run on the driver (command/driver.py) as SQLAlchemy would run them: the same
values stored and read back (JSON, booleans, decimals, IN lists, column defaults), the same errors, the same
statements seen by the engine's listeners."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from command.db import WriteDatabase, is_duplicate_key
from command.models import IdempotencyKey, ProductRow, db_now

KEYS: Any = IdempotencyKey.__table__  # type: ignore[attr-defined]
PRODUCTS: Any = ProductRow.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def products(write_db: WriteDatabase) -> AsyncIterator[list[int]]:
    """Three products, inserted with one multi-row INSERT on the driver (the scalar defaults filled in)."""
    now = db_now()
    name = uuid.uuid4().hex[:10]
    rows = [
        {
            "name": f"{name}-{i}",
            "description": "",
            "price": Decimal("1.25") * (i + 1),
            "created_at": now,
            "updated_at": now,
        }
        for i in range(3)
    ]
    async with write_db.transaction() as tx:
        result = await tx.execute(insert(PRODUCTS), rows)
        assert result.rowcount == 3
        found = await tx.execute(select(PRODUCTS.c.id).where(PRODUCTS.c.name.like(f"{name}-%")).order_by(PRODUCTS.c.id))
        ids = [row.id for row in found]
    yield ids
    async with write_db.transaction() as tx:
        await tx.execute(PRODUCTS.delete().where(PRODUCTS.c.id.in_(ids)))


async def test_rows_come_back_typed_with_in_lists_expanded_per_call(
    write_db: WriteDatabase, products: list[int]
) -> None:
    by_ids = select(PRODUCTS).where(PRODUCTS.c.id.in_(bindparam("ids", expanding=True))).order_by(PRODUCTS.c.id)
    async with write_db.transaction() as tx:
        three = (await tx.execute(by_ids, {"ids": products})).all()
        one = (await tx.execute(by_ids, {"ids": products[1:2]})).one()
    assert [row.id for row in three] == products
    assert [row.price for row in three] == [Decimal("1.25"), Decimal("2.50"), Decimal("3.75")]
    assert [(row.stock, row.version) for row in three] == [(0, 1)] * 3  # the columns' scalar defaults
    assert one._mapping["id"] == products[1] and one.name.endswith("-1")


async def test_values_embedded_in_statements_are_taken_from_each_statement(
    write_db: WriteDatabase, products: list[int]
) -> None:
    """The same statement shape with other literal values (`.values({...})`) is one compiled form, each run with its
    own values."""
    async with write_db.transaction() as tx:
        for pid, stock in zip(products, (7, 8, 9), strict=True):
            changed = await tx.execute(update(PRODUCTS).where(PRODUCTS.c.id == pid).values(stock=stock))
            assert changed.rowcount == 1
        stocks = await tx.execute(select(PRODUCTS.c.stock).where(PRODUCTS.c.id.in_(products)).order_by(PRODUCTS.c.id))
    assert [row.stock for row in stocks] == [7, 8, 9]


async def test_json_round_trips_and_a_duplicate_key_is_sqlalchemys_integrity_error(write_db: WriteDatabase) -> None:
    now = db_now()
    key = {"operation": "driverTest", "key": uuid.uuid4().hex, "request_hash": "h", "created_at": now}
    response = {"id": 1, "items": [{"quantity": 2}], "note": "ünïcode"}
    async with write_db.transaction() as tx:
        await tx.execute(insert(KEYS), {**key, "response": response, "expires_at": now + timedelta(hours=1)})
    with pytest.raises(IntegrityError) as refused:
        async with write_db.transaction() as tx:
            await tx.execute(insert(KEYS), {**key, "response": {}, "expires_at": now})
    assert is_duplicate_key(refused.value, "PRIMARY")
    async with write_db.transaction() as tx:
        this_key = (KEYS.c.operation == key["operation"]) & (KEYS.c.key == key["key"])
        stored = (await tx.execute(select(KEYS.c.response).where(this_key))).scalar_one()
        await tx.execute(KEYS.delete().where(this_key))
    assert stored == response  # the first write stands, as JSON in and out


async def test_the_engine_listeners_see_each_statement_as_sent(write_db: WriteDatabase, products: list[int]) -> None:
    seen: list[tuple[str, Any, bool]] = []

    def sent(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        seen.append((statement, params, many))

    engine = write_db.engine.sync_engine
    event.listen(engine, "after_cursor_execute", sent)
    try:
        async with write_db.transaction() as tx:
            await tx.execute(
                select(PRODUCTS.c.id).where(PRODUCTS.c.id.in_(bindparam("ids", expanding=True))), {"ids": products[:2]}
            )
    finally:
        event.remove(engine, "after_cursor_execute", sent)
    ((statement, params, many),) = seen
    assert statement.count("%s") == 2 and tuple(params) == tuple(products[:2]) and not many
