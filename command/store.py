"""The handlers' I/O: load aggregates from the write model, rows locked in one way, and save what they became.

A handler is load -> decide -> save: `lock_*` reads the aggregate's rows with `SELECT ... FOR UPDATE` (products
in id order, so concurrent transactions never deadlock), the domain (`command.domain`) checks the rules and
returns the events, `save` writes the rows and the handler records the events in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select

from command import models
from command.db import Transaction, is_duplicate_key
from command.domain.aggregate import Aggregate
from command.domain.order import NewOrder, Order
from command.domain.product import NewProduct, Product
from command.domain.user import NewUser, User
from command.snapshots import order_snapshot, product_snapshot, user_snapshot
from shared.errors import Conflict, NotFound
from shared.events import Snapshot, StatusChange

Row = TypeVar("Row", bound=SQLModel)

ROW_OF: dict[type[Aggregate[Any]], type[SQLModel]] = {
    User: models.User,
    Product: models.Product,
    Order: models.Order,
}


def clock() -> datetime:
    """Now, for the rules: aware UTC to the millisecond, the precision both the write and read models keep."""
    return models.db_now().replace(tzinfo=UTC)


async def lock(tx: Transaction, model: type[Row], ids: Iterable[int]) -> dict[int, Row]:
    """SELECT ... FOR UPDATE of the rows with these ids that exist, deleted or not, in id order: every
    transaction takes its locks in the same order, so two of them never wait on each other."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    key = col(model.id)  # type: ignore[attr-defined]
    stmt = (
        select(model)
        # One id (an aggregate's own row) is a plain equality, as a waiting lock shows in the process list.
        .where(key == wanted[0] if len(wanted) == 1 else key.in_(wanted))
        .order_by(key)
        .with_for_update()
        .execution_options(populate_existing=True)  # the row as committed, even if the session read it before
    )
    rows = {row.id: row for row in (await tx.session.execute(stmt)).scalars()}  # type: ignore[attr-defined]
    tx.rows.update(((model, row_id), row) for row_id, row in rows.items())
    return rows


async def lock_live(tx: Transaction, model: type[Row], row_id: int, label: str) -> Row:
    """The locked row of an aggregate that exists and is not deleted."""
    row = (await lock(tx, model, (row_id,))).get(row_id)
    if row is None or row.deleted_at is not None:  # type: ignore[attr-defined]
        raise NotFound(f"{label} {row_id} not found")
    return row


async def lock_user(tx: Transaction, user_id: int) -> User:
    return User(user_snapshot(await lock_live(tx, models.User, user_id, "user")))


async def lock_product(tx: Transaction, product_id: int) -> Product:
    return Product(product_snapshot(await lock_live(tx, models.Product, product_id, "product")))


async def lock_products(tx: Transaction, ids: Iterable[int]) -> dict[int, Product]:
    """The products that exist (deleted ones too: the rules say what they mean), locked in id order."""
    return {pid: Product(product_snapshot(row)) for pid, row in (await lock(tx, models.Product, ids)).items()}


async def read_user(tx: Transaction, user_id: int) -> User | None:
    """The user as committed, without a lock (an order only copies its name and email)."""
    row = await tx.session.get(models.User, user_id)
    return None if row is None else User(user_snapshot(row))


async def read_products(tx: Transaction, ids: Iterable[int]) -> dict[int, Product]:
    """The products as committed, without a lock: placing an order only reads them (the stock worker reserves)."""
    stmt = select(models.Product).where(col(models.Product.id).in_(sorted(set(ids))))
    return {row.id: Product(product_snapshot(row)) for row in (await tx.session.execute(stmt)).scalars()}  # type: ignore[misc]


async def lock_order(tx: Transaction, order_id: int) -> Order:
    """The live order, locked, with everything its events carry; NOT_FOUND when missing or deleted."""
    order = await find_order(tx, order_id)
    if order is None or order.state.deleted_at is not None:
        raise NotFound(f"order {order_id} not found")
    return order


async def find_order(tx: Transaction, order_id: int) -> Order | None:
    """The order (deleted too), locked, with its items, its history and its user as they are now: every
    order event carries them."""
    row = (await lock(tx, models.Order, (order_id,))).get(order_id)
    if row is None:
        return None
    items = await tx.session.execute(
        select(models.OrderItem).where(models.OrderItem.order_id == order_id).order_by(col(models.OrderItem.id))
    )
    history = await tx.session.execute(
        select(models.OrderStatusChange)
        .where(models.OrderStatusChange.order_id == order_id)
        .order_by(col(models.OrderStatusChange.id))
    )
    lines = list(history.scalars())
    user = await tx.session.get(models.User, row.user_id)
    assert user is not None, "users are only ever soft-deleted"
    state = order_snapshot(row, list(items.scalars()), lines, user)
    return Order(state, stock_held=row.stock_held, stored_history=len(lines))


async def insert_user(tx: Transaction, new: NewUser) -> int:
    """The new user's row; its id. A live user with the same email is CONFLICT."""
    try:
        return await _insert(tx, models.User, new)
    except IntegrityError as exc:
        raise email_conflict(exc) from exc


async def insert_product(tx: Transaction, new: NewProduct) -> int:
    return await _insert(tx, models.Product, new)


async def _insert(tx: Transaction, model: type[Row], new: NewUser | NewProduct) -> int:
    fields = {k: v for k, v in asdict(new).items() if k != "at"}
    row = model(**fields, created_at=_column(new.at), updated_at=_column(new.at))
    tx.session.add(row)
    await tx.session.flush()  # the database gives the id (and the unique indexes answer) here
    row_id: int = row.id  # type: ignore[attr-defined]
    tx.rows[(model, row_id)] = row
    return row_id


async def insert_order(tx: Transaction, new: NewOrder) -> int:
    """The new order's row, its items (one INSERT) and its first history line; its id."""
    row = models.Order(
        user_id=new.user.id,
        status=new.history[-1].status,
        total_amount=new.total_amount,
        created_at=_column(new.at),
        updated_at=_column(new.at),
    )
    tx.session.add(row)
    await tx.session.flush()
    order_id: int = row.id  # type: ignore[assignment]
    tx.rows[(models.Order, order_id)] = row
    items = [{**item.model_dump(), "order_id": order_id} for item in new.items]
    await tx.session.execute(insert(models.OrderItem), items)
    _add_history(tx, order_id, new.history)
    return order_id


def save(tx: Transaction, *aggregates: Aggregate[Any]) -> None:
    """Write what the aggregates became onto the rows this transaction loaded (the flush sends the changes)."""
    for aggregate in aggregates:
        row = tx.rows[(ROW_OF[type(aggregate)], aggregate.id)]
        _write(row, aggregate.state)
        if isinstance(aggregate, Order):
            row.stock_held = aggregate.stock_held
            _add_history(tx, aggregate.id, aggregate.state.history[aggregate.stored_history :])
            aggregate.stored_history = len(aggregate.state.history)


def email_conflict(exc: IntegrityError) -> Exception:
    """The unique index on live users' emails, as the client's error; any other violation stays a bug."""
    if is_duplicate_key(exc, "active_email"):
        return Conflict("email is already taken", field="email")
    return exc


def _write(row: Any, state: Snapshot) -> None:
    """The snapshot's columns onto the row; unchanged values are not sent."""
    for name in type(state).model_fields:
        if hasattr(row, name):
            setattr(row, name, _column(getattr(state, name)))


def _add_history(tx: Transaction, order_id: int, lines: Iterable[StatusChange]) -> None:
    tx.session.add_all(
        models.OrderStatusChange(order_id=order_id, status=line.status, reason=line.reason, at=_column(line.at))
        for line in lines
    )


def _column(value: Any) -> Any:
    """The write model keeps naive UTC; the domain, aware UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
