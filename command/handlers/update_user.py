"""updateUser: change name and/or email of a live user; emits `user.updated` (nothing when nothing changes)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from command.db import WriteDatabase
from command.domain.user import UserChanges
from command.store import clock, email_conflict, lock_user, save
from shared.events import UserSnapshot


@dataclass(frozen=True)
class UpdateUser:
    user_id: int
    name: str | None = None
    email: str | None = None
    expected_version: int | None = None


async def update_user(db: WriteDatabase, command: UpdateUser) -> UserSnapshot:
    changes = UserChanges.of(command.name, command.email)
    try:
        async with db.transaction() as tx:
            user = await lock_user(tx, command.user_id)
            user.change(changes, clock(), command.expected_version)
            await save(tx, user)
    except IntegrityError as exc:  # the email's unique index answers the save's UPDATE
        raise email_conflict(exc) from exc
    return user.state
