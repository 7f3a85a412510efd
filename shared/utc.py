"""Naive and aware UTC: the write model's columns keep naive UTC, everything else says UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: datetime | None) -> datetime | None: ...
def aware(value: datetime | None) -> datetime | None:
    """A time in UTC that says so: a naive one is taken as UTC (the columns' convention)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@overload
def naive(value: datetime) -> datetime: ...
@overload
def naive(value: datetime | None) -> datetime | None: ...
def naive(value: datetime | None) -> datetime | None:
    """A time as a `DATETIME(6)` column keeps it: UTC without the zone."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)
