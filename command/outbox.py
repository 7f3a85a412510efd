"""The outbox writer: events are rows in the same transaction as the entity change."""

from __future__ import annotations

import asyncio
from typing import Any

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


def outbox_row(event: Event) -> OutboxRow:
    return OutboxRow(**outbox_values(event))


def outbox_values(event: Event) -> dict[str, Any]:
    """The event's outbox row as column values (the write side inserts them with one Core INSERT)."""
    return {
        "event_id": str(event.event_id),
        "topic": event.event_type.value,
        "key": event.key.decode(),
        "aggregate_type": event.aggregate_type.value,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "payload": event.model_dump(mode="json"),
        "headers": {k: v.decode() for k, v in event.kafka_headers()},
        "created_at": db_now(),
    }
