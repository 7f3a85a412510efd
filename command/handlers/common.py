"""Row loading with locks, and mapping of unique-key violations, for the handlers."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

from command.db import Transaction, is_duplicate_key
from command.models import db_now
from shared.errors import Conflict, NotFound

Row = TypeVar("Row", bound=SQLModel)


async def lock_live(tx: Transaction, model: type[Row], row_id: int, label: str) -> Row:
    """SELECT ... FOR UPDATE of a row that exists and is not soft-deleted."""
    stmt = select(model).where(model.id == row_id, model.deleted_at.is_(None)).with_for_update()  # type: ignore[attr-defined]
    row = (await tx.session.execute(stmt)).scalars().first()
    if row is None:
        raise NotFound(f"{label} {row_id} not found")
    return row


def bump(row: SQLModel) -> None:
    """Every change of an aggregate: version + 1 and a fresh updated_at."""
    row.version += 1  # type: ignore[attr-defined]
    row.updated_at = db_now()  # type: ignore[attr-defined]


def email_conflict(exc: IntegrityError) -> Exception:
    if is_duplicate_key(exc, "active_email"):
        return Conflict("email is already taken", field="email")
    return exc
