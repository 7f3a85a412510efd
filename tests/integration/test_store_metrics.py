"""The stores as the clients see them: each MySQL statement and MongoDB command is counted with its latency, and
connections are counted in use only while they are."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from command.db import WriteDatabase
from shared.settings import Settings


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_mysql_statements_and_pooled_connections_are_counted(settings: Settings) -> None:
    db = WriteDatabase(settings.mysql_dsn, pool_size=2)
    selects = sample("eventshop_store_command_duration_seconds_count", store="mysql", command="SELECT")
    failed = sample("eventshop_store_command_errors_total", store="mysql", command="SELECT")
    try:
        async with db.transaction() as tx:
            in_use = sample("eventshop_store_connections", store="mysql", state="in_use")
            await tx.connection.exec_driver_sql("SELECT 1")
            await tx.connection.exec_driver_sql("SELECT 2")
        assert sample("eventshop_store_connections", store="mysql", state="in_use") == in_use - 1
        assert sample("eventshop_store_connections", store="mysql", state="waiting") == 0
        assert sample("eventshop_store_command_duration_seconds_count", store="mysql", command="SELECT") == selects + 2
        try:
            async with db.transaction() as tx:
                await tx.connection.exec_driver_sql("SELECT no_such_column FROM outbox")
        except Exception:  # noqa: BLE001 - the failure is what is counted
            pass
        assert sample("eventshop_store_command_errors_total", store="mysql", command="SELECT") == failed + 1
    finally:
        await db.dispose()


async def test_mongodb_commands_are_counted_by_name(mongo: AsyncDatabase[dict[str, Any]]) -> None:
    finds = sample("eventshop_store_command_duration_seconds_count", store="mongodb", command="find")
    await mongo["users"].find_one({"_id": -1})
    await mongo["users"].find_one({"_id": -2})
    assert sample("eventshop_store_command_duration_seconds_count", store="mongodb", command="find") == finds + 2
    assert sample("eventshop_store_connections", store="mongodb", state="waiting") == 0
