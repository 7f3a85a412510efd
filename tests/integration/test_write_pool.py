"""The write pool pings a connection only when it was idle: a session that died meanwhile is replaced before a
command meets it, and a busy pool sends no ping at all."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from command.db import WriteDatabase
from shared.settings import Settings


async def session_id(db: WriteDatabase) -> int:
    async with db.transaction() as tx:
        return int((await tx.connection.exec_driver_sql("SELECT CONNECTION_ID()")).scalar_one())


async def kill(settings: Settings, session: int) -> None:
    """KILL the session from another connection, as a MariaDB restart or a dropped idle session does."""
    other = WriteDatabase(settings.mysql_dsn, pool_size=1)
    try:
        async with other.engine.connect() as conn:
            await conn.exec_driver_sql(f"KILL CONNECTION {session}")
    finally:
        await other.dispose()


async def test_a_pooled_session_that_died_while_idle_is_replaced_before_the_next_transaction(
    settings: Settings,
) -> None:
    db = WriteDatabase(settings.mysql_dsn, pool_size=1, idle_before_ping=0.0)  # every checkout counts as idle
    try:
        first = await session_id(db)
        await kill(settings, first)
        second = await session_id(db)  # the ping found the session dead: a new one, no error
        assert second != first
    finally:
        await db.dispose()


async def test_without_the_idle_ping_the_dead_session_fails_the_next_transaction(settings: Settings) -> None:
    """The check above is not vacuous: a connection used again at once is not pinged, and meets its death."""
    db = WriteDatabase(settings.mysql_dsn, pool_size=1, idle_before_ping=3600.0)
    try:
        await kill(settings, await session_id(db))
        with pytest.raises(OperationalError):
            await session_id(db)
        await session_id(db)  # SQLAlchemy renewed the pool after the disconnect
    finally:
        await db.dispose()
