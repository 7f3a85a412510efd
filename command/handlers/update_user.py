"""updateUser: change name and/or email of a live user; emits `user.updated`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from command.db import WriteDatabase
from command.handlers.common import bump, email_conflict, lock_live
from command.models import User
from command.snapshots import user_snapshot
from command.validation import check_expected_version, normalize_email, require_text
from shared.errors import BadUserInput
from shared.events import UserUpdated


@dataclass(frozen=True)
class UpdateUser:
    user_id: int
    name: str | None = None
    email: str | None = None
    expected_version: int | None = None


async def update_user(db: WriteDatabase, command: UpdateUser) -> User:
    if command.name is None and command.email is None:
        raise BadUserInput("give at least one of name, email", field="input")
    name = require_text(command.name, "name") if command.name is not None else None
    email = normalize_email(command.email) if command.email is not None else None
    try:
        async with db.transaction() as tx:
            user = await lock_live(tx, User, command.user_id, "user")
            check_expected_version(user.version, command.expected_version)
            if (name is None or name == user.name) and (email is None or email == user.email):
                return user  # nothing changes: no new version, no event
            user.name = name or user.name
            user.email = email or user.email
            bump(user)
            await tx.session.flush()
            tx.record(UserUpdated.of(user_snapshot(user)))
    except IntegrityError as exc:
        raise email_conflict(exc) from exc
    return user
