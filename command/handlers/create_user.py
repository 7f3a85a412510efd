"""createUser: a new user with a normalised, unique email; emits `user.created`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from command.db import WriteDatabase
from command.handlers.common import email_conflict
from command.models import User
from command.snapshots import user_snapshot
from command.validation import normalize_email, require_text
from shared.events import UserCreated


@dataclass(frozen=True)
class CreateUser:
    name: str
    email: str


async def create_user(db: WriteDatabase, command: CreateUser) -> User:
    name = require_text(command.name, "name")
    email = normalize_email(command.email)
    try:
        async with db.transaction() as tx:
            user = User(name=name, email=email)
            tx.session.add(user)
            await tx.session.flush()  # the unique email index answers here, before the event exists
            tx.record(UserCreated.of(user_snapshot(user)))
    except IntegrityError as exc:
        raise email_conflict(exc) from exc
    return user
