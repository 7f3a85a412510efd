"""Alembic environment: async engine from `MYSQL_DSN` (or the URL passed in by `eventshop migrate`)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from migrations.compare import COMPARE_OPTIONS
from shared.settings import Settings

config = context.config


def _run(connection: Connection) -> None:
    # The models are the schema's one description: `alembic revision --autogenerate` writes what differs.
    import command.models  # noqa: F401 - every table in SQLModel.metadata (imported when a migration runs)

    context.configure(connection=connection, target_metadata=SQLModel.metadata, **COMPARE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


def main() -> None:
    url = config.get_main_option("sqlalchemy.url") or Settings().mysql_dsn
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_async(url))


main()
