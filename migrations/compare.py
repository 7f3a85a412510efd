"""How a database is compared with the models (autogenerate, and the schema drift test): one set of options."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, DateTime
from sqlalchemy.types import TypeEngine


def compare_type(
    context: Any,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """Timestamps by their full DDL type: Alembic's own comparison misses DATETIME against DATETIME(6), and a
    lost fractional part would silently cut microseconds. Everything else: Alembic's comparison (None)."""
    if isinstance(metadata_type, DateTime):
        dialect = context.dialect
        return bool(inspected_type.compile(dialect=dialect) != metadata_type.compile(dialect=dialect))
    return None


COMPARE_OPTIONS: dict[str, Any] = {"compare_type": compare_type, "compare_server_default": True}
