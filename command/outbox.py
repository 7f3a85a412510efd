"""The outbox writer: events are rows in the same transaction as the entity change."""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Any

from sqlalchemy import Insert, Text, bindparam, insert

from command.models import OutboxRow, db_now
from shared.events import Event


class OutboxSignal:
    """Wakes the relay of this process as soon as a transaction with events commits."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


@cache
def inserting_outbox() -> Insert:
    """The outbox INSERT, its JSON columns bound as text: pydantic writes an event's JSON in one call, where
    `model_dump` and then the JSON column's `json.dumps` took two."""
    table: Any = OutboxRow.__table__  # type: ignore[attr-defined]
    return insert(table).values(payload=bindparam("payload", type_=Text()), headers=bindparam("headers", type_=Text()))


def outbox_values(event: Event) -> dict[str, Any]:
    """The event's outbox row as the parameters of `inserting_outbox` (the write side inserts a transaction's
    rows in one statement)."""
    return {
        "event_id": str(event.event_id),
        "topic": event.event_type.value,
        "key": event.key.decode(),
        "aggregate_type": event.aggregate_type.value,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "payload": event.model_dump_json(),
        "headers": json.dumps({k: v.decode() for k, v in event.kafka_headers()}),
        "created_at": db_now(),
    }
