"""One description of the MySQL schema: the SQLModel models. A database migrated to head by Alembic must be
exactly what the models say (tables, columns, types, nullability, server defaults, indexes, unique keys,
foreign keys), so a model changed without a migration, or a migration without its model, fails here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData
from sqlmodel import SQLModel

import command.models  # noqa: F401 - every table of the write model in SQLModel.metadata
from command.db import WriteDatabase
from migrations.compare import COMPARE_OPTIONS
from shared.settings import Settings
from tests.labs import own_database, own_settings


@pytest.fixture(scope="module")
async def fresh_db(settings: Settings) -> AsyncIterator[WriteDatabase]:
    """A database of its own, migrated from nothing to head (the shared test database may have been migrated
    by an older checkout, or have tables that tests made)."""
    async with own_database(own_settings(settings, "drift"), pool_size=1) as db:
        yield db


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
