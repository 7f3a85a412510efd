"""Leadership of the outbox relay: a MySQL named lock (GET_LOCK) held by a session of its own.

If the process dies, the server ends its sessions and frees the lock, so a standby takes over. Every wait
here is bounded (`timeout`), and giving leadership up never raises: a relay that loses its sessions (a
MariaDB restart, a network cut, KILL) ends them, whatever state they are in, and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.logging import get_logger

log = get_logger(__name__)

LOCK_PREFIX = "eventshop.outbox_relay"
STATEMENT_TIMEOUT = 30.0
"""Longest wait for one statement or connection on the relay's sessions (a dead peer cannot stall it)."""
LEADERLESS_WARNING_SECONDS = 30.0
"""A relay that has not led for this long while no session holds the lock says so (and again as often)."""

TAKE = text("SELECT GET_LOCK(:name, 0), IS_USED_LOCK(:name)")
STILL_OURS = text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()")
RELEASE = text("SELECT RELEASE_LOCK(:name)")


def lock_name(database: str | None) -> str:
    """One leader per database: GET_LOCK names are server-wide."""
    return f"{LOCK_PREFIX}.{database}"


@dataclass(frozen=True)
class LeaderSessions:
    reader: AsyncConnection  # holds the lock; reads the outbox
    completer: AsyncConnection  # completes acked rows while the reader goes on


class Leadership:
    """Takes, checks and gives up the relay's lock; the leader's two autocommit sessions come with it."""

    def __init__(
        self,
        engine: AsyncEngine,
        name: str,
        *,
        timeout: float = STATEMENT_TIMEOUT,
        leaderless_warning: float = LEADERLESS_WARNING_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.name = name
        self.timeout = timeout
        self.leaderless_warning = leaderless_warning
        self.clock = clock
        self.sessions: LeaderSessions | None = None
        self._standby_since: float | None = None
        self._warned_at: float | None = None

    async def take(self) -> LeaderSessions | None:
        """The leader's sessions: ours already, or taken now if the lock is free; None while another holds it."""
        if self.sessions is not None:
            return self.sessions
        reader = await self._autocommit_connection()
        try:
            async with asyncio.timeout(self.timeout):
                acquired, holder = (await reader.execute(TAKE, {"name": self.name})).one()
            completer = await self._autocommit_connection() if acquired == 1 else None
        except BaseException:
            await end_session(reader)  # the server frees a named lock only when its session ends
            raise
        if completer is None:
            await give_back(reader)  # holds no lock: back to the pool (a standby asks again soon)
            self._note_standby(holder)
            return None
        self.sessions = LeaderSessions(reader, completer)
        self._standby_since = self._warned_at = None
        log.info("relay.leader")
        return self.sessions

    async def confirm(self) -> bool:
        """Still holding the lock, with both sessions alive (an idle one may have been dropped); else released."""
        sessions = self.sessions
        if sessions is None:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                ours = (await sessions.reader.execute(STILL_OURS, {"name": self.name})).scalar()
                await sessions.completer.exec_driver_sql("SELECT 1")
        except Exception as exc:
            log.warning("relay.leadership_lost", error=repr(exc))
            ours = 0
        if ours != 1:
            await self.release()
            return False
        return True

    async def release(self) -> None:
        """Give the lock up and end both sessions. Never raises: every step's failure means the session is
        gone already, and ending a session is what frees its lock."""
        sessions, self.sessions = self.sessions, None
        if sessions is None:
            return
        await end_session(sessions.completer)
        if not sessions.reader.invalidated:
            # Frees the lock at once for a standby; ending the session below would free it too.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await sessions.reader.execute(RELEASE, {"name": self.name})
        await end_session(sessions.reader)

    async def _autocommit_connection(self) -> AsyncConnection:
        async with asyncio.timeout(self.timeout):
            conn = await self.engine.connect()
            try:
                return await conn.execution_options(isolation_level="AUTOCOMMIT")
            except BaseException:
                await end_session(conn)
                raise

    def _note_standby(self, holder: object) -> None:
        """A standby is silent while another session leads; after `leaderless_warning` with the lock free
        (GET_LOCK refused or failed, yet no one holds it) it warns, and again every `leaderless_warning`."""
        now = self.clock()
        if self._standby_since is None:
            self._standby_since = now
            log.info("relay.standby", holder=holder)
        if holder is not None:
            return
        waited = now - self._standby_since
        if waited >= self.leaderless_warning and (
            self._warned_at is None or now - self._warned_at >= self.leaderless_warning
        ):
            self._warned_at = now
            log.warning("relay.cannot_lead", lock=self.name, waited_seconds=round(waited, 1))


async def give_back(conn: AsyncConnection) -> None:
    """Return a connection that holds no lock to the pool; if that fails, its session is ended instead."""
    try:
        async with asyncio.timeout(STATEMENT_TIMEOUT):
            await conn.close()
    except Exception:
        await end_session(conn)


async def end_session(conn: AsyncConnection, timeout: float = STATEMENT_TIMEOUT) -> None:
    """End the database session itself (never back to the pool), whatever state it is in; never raises.

    `invalidate()` closes the driver's socket; `close()` then only forgets the connection. A connection
    whose close failed half-way is already closed for SQLAlchemy, and invalidating it would raise.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await conn.invalidate()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await conn.close()
