"""deleteUser: soft delete (orders keep their user snapshot); frees the email; emits `user.deleted`."""

from __future__ import annotations

from command.db import WriteDatabase
from command.handlers.common import bump, lock_live
from command.models import User, db_now
from command.snapshots import user_snapshot
from shared.events import UserDeleted


async def delete_user(db: WriteDatabase, user_id: int) -> User:
    async with db.transaction() as tx:
        user = await lock_live(tx, User, user_id, "user")
        user.deleted_at = db_now()
        bump(user)
        await tx.session.flush()
        tx.record(UserDeleted.of(user_snapshot(user)))
    return user
