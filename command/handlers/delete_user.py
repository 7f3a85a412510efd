"""deleteUser: soft delete (orders keep their user snapshot); frees the email; emits `user.deleted`."""

from __future__ import annotations

from command.db import WriteDatabase
from command.handlers.soft_delete import soft_delete
from command.store import lock_user
from shared.events import UserSnapshot


async def delete_user(db: WriteDatabase, user_id: int) -> UserSnapshot:
    return await soft_delete(db, lock_user, user_id)
