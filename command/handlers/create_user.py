"""createUser: a new user with a normalised, unique email; emits `user.created`."""

from __future__ import annotations

from dataclasses import dataclass

from command.db import WriteDatabase
from command.domain.user import NewUser
from command.store import clock, insert_user, save
from shared.events import UserSnapshot


@dataclass(frozen=True)
class CreateUser:
    name: str
    email: str


async def create_user(db: WriteDatabase, command: CreateUser) -> UserSnapshot:
    new = NewUser.register(command.name, command.email, clock())
    async with db.transaction() as tx:
        user = await insert_user(tx, new)
        await save(tx, user)
    return user.state
