"""One description of the MySQL schema: the SQLModel models. A database migrated to head by Alembic must be
exactly what the models say (tables, columns, types, nullability, server defaults, indexes, unique keys,
foreign keys), so a model changed without a migration, or a migration without its model, fails here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import command.models  # noqa: F401 - every table of the write model in SQLModel.metadata
from command.db import WriteDatabase
from migrations.compare import COMPARE_OPTIONS
from shared.settings import Settings
from tests.conftest import migrate


@pytest.fixture(scope="module")
async def fresh_db(settings: Settings) -> AsyncIterator[WriteDatabase]:
    """A database of its own, migrated from nothing to head (the shared test database may have been migrated
    by an older checkout, or have tables that tests made)."""
    url = make_url(settings.mysql_dsn)
    name = f"{url.database}_drift_{uuid.uuid4().hex[:8]}"
    server = WriteDatabase(url.set(database="").render_as_string(hide_password=False), pool_size=1)
    async with server.engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    own = settings.model_copy(update={"mysql_dsn": url.set(database=name).render_as_string(hide_password=False)})
    db = WriteDatabase(own.mysql_dsn, pool_size=1)
    try:
        await asyncio.to_thread(migrate, own)
        yield db
    finally:
        await db.dispose()
        async with server.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        await server.dispose()


async def differences(db: WriteDatabase, metadata: MetaData) -> list[Any]:
    def compare(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts=COMPARE_OPTIONS)
        return list(compare_metadata(context, metadata))

    async with db.engine.connect() as conn:
        return await conn.run_sync(compare)


async def test_the_migrated_schema_is_exactly_the_models(fresh_db: WriteDatabase) -> None:
    assert await differences(fresh_db, SQLModel.metadata) == []


async def test_a_model_that_lost_an_index_is_a_difference(fresh_db: WriteDatabase) -> None:
    """The comparison can fail: the models without the outbox's `published_at` index differ from the database."""
    models = MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(models)
    outbox = models.tables["outbox"]
    outbox.indexes = {i for i in outbox.indexes if i.name != "ix_outbox_published_at"}
    found = await differences(fresh_db, models)
    assert [(d[0], d[1].name) for d in found if d[0] == "remove_index"] == [("remove_index", "ix_outbox_published_at")]
