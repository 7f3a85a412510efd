"""Is this failure an outage of a store or the broker (wait for it), or the message's own (retry, then DLQ)?

One classification for every consumer and start-up: the MySQL client error numbers of a lost or refused
connection, FerretDB's answers when its PostgreSQL is away, and the drivers' connection errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError

from shared.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


def is_infrastructure_outage(error: BaseException | None) -> bool:
    """A store or broker that cannot be reached right now (as opposed to a message that cannot work)."""
    from pymongo.errors import ConnectionFailure, OperationFailure
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OperationalError):
        code = getattr(error.orig, "args", (None,))[0]
        return code in MYSQL_CONNECTION_ERRORS or not isinstance(code, int)
    if isinstance(error, OperationFailure) and error.code == FERRETDB_INTERNAL_ERROR:
        return FERRETDB_STORAGE_UNAVAILABLE.search(str(error)) is not None
    return isinstance(error, ConnectionFailure | InterfaceError | KafkaConnectionError | ConnectionError)


# Can't connect, lost connection, server gone away, server shutting down, too many connections.
MYSQL_CONNECTION_ERRORS = frozenset({2002, 2003, 2006, 2013, 2055, 1053, 1040, 1927})
FERRETDB_INTERNAL_ERROR = 1
FERRETDB_STORAGE_UNAVAILABLE = re.compile(r"failed to connect to|SQLSTATE (08|57P0)|conn closed|unexpected EOF")
"""FerretDB answers InternalError when its PostgreSQL is down or restarting: connection refused (pgx), a
connection exception (SQLSTATE class 08) or an operator shutdown (57P01-57P03)."""


async def when_available(
    connect: Callable[[], Awaitable[T]], stopping: asyncio.Event, *, what: str, delay: float = 1.0
) -> T | None:
    """`connect()`, again every `delay` seconds while the store or broker is unreachable; None if asked to
    stop first. Any other failure is raised: retrying cannot fix a wrong setting."""
    while not stopping.is_set():
        try:
            return await connect()
        except Exception as exc:
            if not is_infrastructure_outage(exc):
                raise
            log.warning("infrastructure.unavailable", what=what, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
    return None
