"""The write pool pings a connection only when it was idle: a session that died meanwhile is replaced before a
command meets it, and a busy pool sends no ping at all."""

from __future__ import annotations

import asyncio

import asyncmy.errors
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from command.db import WriteDatabase
from shared.outages import is_infrastructure_outage
from shared.settings import Settings
from tests.conftest import eventually


async def session_id(db: WriteDatabase) -> int:
    async with db.transaction() as tx:
        return int((await tx.execute(text("SELECT CONNECTION_ID() AS session_id"))).scalar_one())


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


async def rollbacks(db: WriteDatabase) -> int:
    """ROLLBACKs the (one) pooled session has received so far, as MariaDB counts them."""
    async with db.transaction() as tx:
        row = (await tx.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'"))).one()
        return int(row[1])


async def test_a_connection_back_from_a_committed_transaction_gets_no_extra_rollback(settings: Settings) -> None:
    """The pool's reset-on-return was a ROLLBACK round trip after every COMMIT; it is off, the transaction ends
    itself. A transaction that fails is still rolled back, once."""
    db = WriteDatabase(settings.mysql_dsn, pool_size=1)
    try:
        first = await rollbacks(db)
        await session_id(db)
        assert await rollbacks(db) == first  # two transactions came back to the pool: no ROLLBACK sent
        with pytest.raises(RuntimeError):
            async with db.transaction():
                raise RuntimeError("the command failed")
        assert await rollbacks(db) == first + 1
    finally:
        await db.dispose()


async def test_a_connection_closed_inside_a_transaction_leaves_nothing_behind(settings: Settings) -> None:
    """Without the pool's reset, closing a connection still rolls back what it left open: no row is written and
    no lock is held by the pooled session."""
    db = WriteDatabase(settings.mysql_dsn, pool_size=1)
    probe = "pool_reset_probe"
    try:
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {probe} (id INT PRIMARY KEY) ENGINE=InnoDB")
            await conn.exec_driver_sql(f"DELETE FROM {probe}")
        async with db.engine.connect() as conn:  # autobegins; closed without a commit
            await conn.exec_driver_sql(f"INSERT INTO {probe} VALUES (1)")
        other = WriteDatabase(settings.mysql_dsn, pool_size=1)
        try:
            async with other.engine.begin() as conn:
                await conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
                # The row lock of the insert would make this wait and fail; its row would be counted.
                await conn.exec_driver_sql(f"INSERT INTO {probe} VALUES (1)")
                assert (await conn.exec_driver_sql(f"SELECT COUNT(*) FROM {probe}")).scalar_one() == 1
                await conn.exec_driver_sql(f"DELETE FROM {probe}")
        finally:
            await other.dispose()
    finally:
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {probe}")
        await db.dispose()


async def test_a_transaction_cancelled_mid_statement_leaves_a_working_pool(settings: Settings) -> None:
    """A task cancelled while its statement runs (a client gone, a timeout, a stopped seed) leaves the session in
    an unknown state: it is dropped, and the next transaction gets a working one."""
    db = WriteDatabase(settings.mysql_dsn, pool_size=1)
    watcher = WriteDatabase(settings.mysql_dsn, pool_size=1)

    async def sleeping() -> None:
        async with db.transaction() as tx:
            await tx.execute(text("SELECT SLEEP(30) AS slept"))

    async def in_flight() -> bool:
        async with watcher.engine.connect() as conn:
            sql = "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(30)%%'"
            return bool((await conn.exec_driver_sql(sql)).scalar())

    try:
        task = asyncio.create_task(sleeping())
        await eventually(in_flight, timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await session_id(db) > 0  # a fresh session, no "Cancelled during execution"
    finally:
        await db.dispose()
        await watcher.dispose()


async def test_a_transaction_that_cannot_connect_raises_sqlalchemys_operational_error(settings: Settings) -> None:
    """Connecting goes through the pool, not `Engine.connect`: the driver's refusal is still raised as SQLAlchemy
    raises it, which the outage handling (shared/outages.py) recognises."""
    closed_port = make_url(settings.mysql_dsn).set(port=1)
    db = WriteDatabase(closed_port.render_as_string(hide_password=False), pool_size=1)
    try:
        with pytest.raises(OperationalError) as refused:
            async with db.transaction():
                pass
        assert isinstance(refused.value.orig, asyncmy.errors.OperationalError)
        assert is_infrastructure_outage(refused.value)
    finally:
        await db.dispose()


async def test_a_commit_that_fails_raises_sqlalchemys_error_and_the_pool_opens_a_new_session(
    settings: Settings,
) -> None:
    """The driver commits: a session killed before its COMMIT fails the transaction as SQLAlchemy would have
    (OperationalError), and the dead connection is dropped rather than pooled again."""
    db = WriteDatabase(settings.mysql_dsn, pool_size=1, idle_before_ping=3600.0)  # no ping: the commit meets it
    try:
        with pytest.raises(OperationalError):
            async with db.transaction() as tx:
                doomed = int((await tx.execute(text("SELECT CONNECTION_ID() AS session_id"))).scalar_one())
                await kill(settings, doomed)
        assert await session_id(db) != doomed
    finally:
        await db.dispose()


async def test_a_failed_transaction_whose_rollback_fails_raises_its_own_error(settings: Settings) -> None:
    """The command's error is the one raised, not the ROLLBACK's; the session that could not roll back is
    dropped, so no pooled session keeps an open transaction."""
    db = WriteDatabase(settings.mysql_dsn, pool_size=1, idle_before_ping=3600.0)
    try:
        with pytest.raises(RuntimeError, match="the command failed"):
            async with db.transaction() as tx:
                doomed = int((await tx.execute(text("SELECT CONNECTION_ID() AS session_id"))).scalar_one())
                await kill(settings, doomed)
                raise RuntimeError("the command failed")
        assert await session_id(db) != doomed
    finally:
        await db.dispose()
