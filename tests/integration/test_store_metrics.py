"""The stores as the clients see them: each MySQL statement and MongoDB command is counted with its latency, and
connections are counted in use only while they are."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from command.db import WriteDatabase
from shared.settings import Settings


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_mysql_statements_and_pooled_connections_are_counted(settings: Settings) -> None:
    """`DO` statements, which nothing else in the process sends (the session's pipeline runs beside this test)."""
    db = WriteDatabase(settings.mysql_dsn, pool_size=2)
    done = sample("eventshop_store_command_duration_seconds_count", store="mysql", command="DO")
    failed = sample("eventshop_store_command_errors_total", store="mysql", command="DO")
    try:
        async with db.transaction() as tx:
            assert sample("eventshop_store_connections", store="mysql", state="in_use") >= 1
            await tx.execute(text("DO 1"))
            await tx.execute(text("DO 2"))
        assert sample("eventshop_store_command_duration_seconds_count", store="mysql", command="DO") == done + 2
        with pytest.raises(DBAPIError):
            async with db.transaction() as tx:
                await tx.execute(text("DO no_such_function()"))
        assert sample("eventshop_store_command_errors_total", store="mysql", command="DO") == failed + 1
    finally:
        await db.dispose()


async def test_mongodb_commands_are_counted_by_name(mongo: AsyncDatabase[dict[str, Any]]) -> None:
    """`dbStats` commands, which nothing else in the process sends."""
    stats = sample("eventshop_store_command_duration_seconds_count", store="mongodb", command="dbStats")
    await mongo.command("dbStats")
    await mongo.command("dbStats")
    assert sample("eventshop_store_command_duration_seconds_count", store="mongodb", command="dbStats") == stats + 2
