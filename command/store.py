"""The handlers' I/O: load aggregates from the write model, rows locked in one way, and save what they became.

A handler is load -> decide -> save: `lock_*` reads the aggregate's rows with `SELECT ... FOR UPDATE` (products
in id order, so concurrent transactions never deadlock) or `insert_*` writes a new one, the domain
(`command.domain`) checks the rules and keeps the events of each change, and `save` writes the changed rows and
those events to the outbox in the same transaction: a change cannot be saved without its event.

Every statement is SQLAlchemy Core on the models' tables (the models stay the one description of each table):
the ORM's identity map and unit of work cost more than they give to a handler that reads a few rows, decides in
the domain and writes back only what changed. The statements are built once, with bound parameters, so each
one's compiled form comes from the engine's cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Insert, Row, Select, Table, Update, bindparam, case, insert, select, update
from sqlalchemy.exc import IntegrityError

from command import models
from command.db import Transaction, is_duplicate_key
from command.domain.aggregate import Aggregate
from command.domain.customer import Customer
from command.domain.order import NewOrder, Order
from command.domain.product import NewProduct, Product
from command.domain.user import NewUser, User
from command.kinds import TABLE_OF
from command.snapshots import order_snapshot, product_snapshot, user_snapshot
from shared.errors import Conflict, NotFound
from shared.events import OrderStatus, Snapshot, StatusChange
from shared.utc import aware, naive

USERS: Table = models.UserRow.__table__  # type: ignore[attr-defined]
PRODUCTS: Table = models.ProductRow.__table__  # type: ignore[attr-defined]
ORDERS: Table = models.OrderRow.__table__  # type: ignore[attr-defined]
ORDER_ITEMS: Table = models.OrderItemRow.__table__  # type: ignore[attr-defined]
ORDER_HISTORY: Table = models.StatusChangeRow.__table__  # type: ignore[attr-defined]


def clock() -> datetime:
    """Now, for the rules: aware UTC to the millisecond, the precision both the write and read models keep."""
    return aware(models.db_now())


class Locking(Enum):
    NONE = "none"
    SHARE = "share"  # LOCK IN SHARE MODE: read by others, changed by none until this transaction ends
    UPDATE = "update"  # FOR UPDATE


@cache
def _by_id(table: Table, *, many: bool, locking: Locking) -> Select[Any]:
    """The rows of `table` with one id (`:id`, a plain equality, as a waiting lock shows in the process list) or
    several (`:ids`), in id order, locked in that order."""
    key = table.c.id
    stmt = select(table).where(key.in_(bindparam("ids", expanding=True)) if many else key == bindparam("id"))
    stmt = stmt.order_by(key)
    if locking is Locking.NONE:
        return stmt
    return stmt.with_for_update(read=locking is Locking.SHARE)


@cache
def _of_orders(table: Table) -> Select[Any]:
    """The items or history lines of some orders, each order's in the order they were written."""
    return select(table).where(table.c.order_id.in_(bindparam("order_ids", expanding=True))).order_by(table.c.id)


async def _rows(tx: Transaction, table: Table, ids: Iterable[int], *, locking: Locking) -> dict[int, Row[Any]]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}  # nothing to lock is no statement
    many = len(wanted) > 1
    params = {"ids": wanted} if many else {"id": wanted[0]}
    result = await tx.execute(_by_id(table, many=many, locking=locking), params)
    return {row.id: row for row in result}


async def lock(tx: Transaction, table: Table, ids: Iterable[int]) -> dict[int, Row[Any]]:
    """SELECT ... FOR UPDATE of the rows with these ids that exist, deleted or not, in id order: every
    transaction takes its locks in the same order, so two of them never wait on each other. The save writes
    back what changed since."""
    rows = await _rows(tx, table, ids, locking=Locking.UPDATE)
    tx.rows.update(((table.name, row_id), dict(row._mapping)) for row_id, row in rows.items())
    return rows


async def lock_live(tx: Transaction, table: Table, row_id: int, label: str) -> Row[Any]:
    """The locked row of an aggregate that exists and is not deleted."""
    row = (await lock(tx, table, (row_id,))).get(row_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"{label} {row_id} not found")
    return row


async def lock_user(tx: Transaction, user_id: int) -> User:
    return User(user_snapshot(await lock_live(tx, USERS, user_id, "user")))


async def lock_product(tx: Transaction, product_id: int) -> Product:
    return Product(product_snapshot(await lock_live(tx, PRODUCTS, product_id, "product")))


async def lock_products(tx: Transaction, ids: Iterable[int]) -> dict[int, Product]:
    """The products that exist (deleted ones too: the rules say what they mean), locked in id order."""
    return {pid: Product(product_snapshot(row)) for pid, row in (await lock(tx, PRODUCTS, ids)).items()}


async def read_user(tx: Transaction, user_id: int) -> User | None:
    """The user as committed, without a lock (an order only copies its name and email)."""
    row = (await _rows(tx, USERS, (user_id,), locking=Locking.NONE)).get(user_id)
    return None if row is None else User(user_snapshot(row))


async def read_products(tx: Transaction, ids: Iterable[int]) -> dict[int, Product]:
    """The products as committed, share-locked in id order: placing an order only reads them (the stock worker
    reserves), but its items' foreign keys lock them too, and taken in the order of the request's lines those locks
    deadlocked with a reservation locking the same products in id order (tests/integration/test_lock_order.py)."""
    rows = await _rows(tx, PRODUCTS, ids, locking=Locking.SHARE)
    return {pid: Product(product_snapshot(row)) for pid, row in rows.items()}


async def lock_order(tx: Transaction, order_id: int, customer: Customer | None = None) -> Order:
    """The live order, locked, with everything its events carry; NOT_FOUND when missing or deleted. A customer
    must own it, checked on the row just locked (an order's owner never changes, so a deleted order of another
    user is FORBIDDEN too)."""
    order = await find_order(tx, order_id)
    if customer is not None:
        customer.require_owner(order_id, None if order is None else order.state.user_id)
    if order is None or order.state.deleted_at is not None:
        raise NotFound(f"order {order_id} not found")
    return order


async def find_order(tx: Transaction, order_id: int) -> Order | None:
    """The order (deleted too), locked, with its items, its history and its user as they are now: every
    order event carries them."""
    return (await find_orders(tx, (order_id,))).get(order_id)


async def find_orders(tx: Transaction, order_ids: Iterable[int]) -> dict[int, Order]:
    """The orders that exist (deleted too), locked in id order, each with its items, history and user: four
    statements however many orders (the stock worker decides a poll's orders together)."""
    rows = await lock(tx, ORDERS, order_ids)
    if not rows:
        return {}
    ids = {"order_ids": list(rows)}
    items: dict[int, list[Row[Any]]] = {order_id: [] for order_id in rows}
    history: dict[int, list[Row[Any]]] = {order_id: [] for order_id in rows}
    for line in await tx.execute(_of_orders(ORDER_ITEMS), ids):
        items[line.order_id].append(line)
    for line in await tx.execute(_of_orders(ORDER_HISTORY), ids):
        history[line.order_id].append(line)
    users = await _rows(tx, USERS, {row.user_id for row in rows.values()}, locking=Locking.NONE)
    return {
        order_id: Order(
            order_snapshot(row, items[order_id], history[order_id], users[row.user_id]),
            stock_held=row.stock_held,
            stored_history=len(history[order_id]),
        )
        for order_id, row in rows.items()
    }


@cache
def _due_orders() -> Select[Any]:
    """The ids of RESERVED orders whose deadline has come (`:now`), earliest first, at most `:limit`, locked: one
    range of `ix_orders_status_reserved_until`. Rows another transaction holds are skipped (it is deciding them),
    not waited for."""
    return (
        select(ORDERS.c.id)
        .where(ORDERS.c.status == OrderStatus.RESERVED.value, ORDERS.c.reserved_until <= bindparam("now"))
        .order_by(ORDERS.c.reserved_until)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


async def lock_due_orders(tx: Transaction, now: datetime, limit: int) -> list[int]:
    """Up to `limit` RESERVED orders due at `now` that no other transaction holds, locked; their ids. The caller
    reads them (`find_orders`) under these locks and decides each again."""
    return [row.id for row in await tx.execute(_due_orders(), {"now": _column(now), "limit": limit})]


async def insert_user(tx: Transaction, new: NewUser) -> User:
    """The new user's row; the user under the id the database gave, its creation pending. A live user with the
    same email is CONFLICT."""
    try:
        user_id = await _insert(tx, USERS, new)
    except IntegrityError as exc:
        raise email_conflict(exc) from exc
    return _inserted(tx, new.created(user_id)[0])


async def insert_product(tx: Transaction, new: NewProduct) -> Product:
    """The new product's row; the product under the id the database gave, its creation pending."""
    return _inserted(tx, new.created(await _insert(tx, PRODUCTS, new))[0])


@cache
def _inserting(table: Table) -> Insert:
    return insert(table)


async def _insert(tx: Transaction, table: Table, new: NewUser | NewProduct) -> int:
    """The row of a new user or product (the database gives the id, and the unique indexes answer, here)."""
    values = {k: _column(v) for k, v in asdict(new).items() if k != "at"}
    at = _column(new.at)
    result = await tx.execute(_inserting(table), {**values, "version": 1, "created_at": at, "updated_at": at})
    return int(result.lastrowid)


async def insert_order(tx: Transaction, new: NewOrder) -> Order:
    """The new order's row, its items (one INSERT) and its first history line; the order under the id the
    database gave, its creation pending. Built from the order in memory: nothing written is read back."""
    at = _column(new.at)
    result = await tx.execute(
        _inserting(ORDERS),
        {
            "user_id": new.user.id,
            "status": _column(new.history[-1].status),
            "total_amount": new.total_amount,
            "stock_held": False,
            "version": 1,
            "created_at": at,
            "updated_at": at,
        },
    )
    order_id = int(result.lastrowid)
    items = [{**item.model_dump(), "order_id": order_id} for item in new.items]
    await tx.execute(_inserting(ORDER_ITEMS), items)
    await _add_history(tx, order_id, new.history)
    return _inserted(tx, new.created(order_id)[0])


A = TypeVar("A", bound=Aggregate[Any])


def _inserted(tx: Transaction, aggregate: A) -> A:
    """A new aggregate whose row this transaction wrote as its state is: the save compares against it."""
    table = TABLE_OF[type(aggregate)]
    tx.rows[(table.name, aggregate.id)] = _columns(table, aggregate)
    return aggregate


async def save(tx: Transaction, *aggregates: Aggregate[Any]) -> None:
    """Write what the aggregates became onto the rows this transaction locked or inserted, and their pending
    events to the outbox: only the columns that changed (nothing when nothing did), one UPDATE for all the rows
    of one table that changed the same columns (a reservation's products), an order's new history lines, then
    every aggregate's events, in the order the aggregates are given, in one INSERT."""
    changes: dict[tuple[Table, tuple[str, ...]], dict[int, dict[str, Any]]] = {}
    for aggregate in aggregates:
        table = TABLE_OF[type(aggregate)]
        stored = tx.rows[(table.name, aggregate.id)]
        changed = {name: value for name, value in _columns(table, aggregate).items() if stored[name] != value}
        if changed:
            changes.setdefault((table, tuple(changed)), {})[aggregate.id] = changed
            stored.update(changed)
    for (table, names), rows in changes.items():
        await tx.execute(_updating(table, names, rows))
    for aggregate in aggregates:
        if isinstance(aggregate, Order):
            await _add_history(tx, aggregate.id, aggregate.state.history[aggregate.stored_history :])
            aggregate.stored_history = len(aggregate.state.history)
    await tx.write_outbox([event for aggregate in aggregates for event in aggregate.collect_events()])


def _updating(table: Table, names: tuple[str, ...], rows: Mapping[int, Mapping[str, Any]]) -> Update:
    """The UPDATE of these columns of these rows: plain values for one row, `CASE id WHEN ...` for several."""
    if len(rows) == 1:
        ((row_id, values),) = rows.items()
        return update(table).where(table.c.id == row_id).values(values)
    per_row = {
        name: case({row_id: values[name] for row_id, values in rows.items()}, value=table.c.id) for name in names
    }
    return update(table).where(table.c.id.in_(list(rows))).values(per_row)


def _columns(table: Table, aggregate: Aggregate[Any]) -> dict[str, Any]:
    """The aggregate's state as the row's columns (the snapshot's fields that are columns of the table)."""
    state: Snapshot = aggregate.state
    values = {name: _column(getattr(state, name)) for name in _snapshot_columns(table, type(state))}
    if isinstance(aggregate, Order):
        values["stock_held"] = aggregate.stock_held
    return values


@cache
def _snapshot_columns(table: Table, snapshot: type[Snapshot]) -> tuple[str, ...]:
    """The fields of a snapshot type that are columns of its table (the id never changes)."""
    return tuple(name for name in snapshot.model_fields if name in table.c and name != "id")


def email_conflict(exc: IntegrityError) -> Exception:
    """The unique index on live users' emails, as the client's error; any other violation stays a bug."""
    if is_duplicate_key(exc, "active_email"):
        return Conflict("email is already taken", field="email")
    return exc


async def _add_history(tx: Transaction, order_id: int, lines: Iterable[StatusChange]) -> None:
    rows: list[Mapping[str, Any]] = [
        {"order_id": order_id, "status": _column(line.status), "reason": line.reason, "at": _column(line.at)}
        for line in lines
    ]
    if rows:
        await tx.execute(_inserting(ORDER_HISTORY), rows[0] if len(rows) == 1 else rows)


def _column(value: Any) -> Any:
    """The write model keeps naive UTC and plain strings; the domain, aware UTC and enums."""
    if isinstance(value, datetime):
        return naive(value)
    if isinstance(value, Enum):
        return value.value
    return value
