"""Publishing: the leader's batch pipeline from the outbox to Kafka, and the completion of acked rows.

Plain SQL on the leader's autocommit sessions: the relay's measured hot path, where SQLAlchemy's per-row
and per-parameter work showed in the profile. The statements name the table and columns of the
`OutboxRow` model (built per publisher, never at import), and every interpolated value is an int.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncConnection

from command.models import OutboxRow
from command.relay.leadership import STATEMENT_TIMEOUT, LeaderSessions
from shared.logging import get_logger
from shared.metrics import RELAY_PUBLISHED
from shared.settings import Settings
from shared.store_metrics import KAFKA_SEND_ERRORS, KAFKA_SEND_SECONDS
from shared.telemetry import OFF, Telemetry

log = get_logger(__name__)

ACK_TIMEOUT = 30.0
"""Longest wait for a batch's acks (twice the producer's request timeout) before the batch counts as failed."""


@dataclass(frozen=True)
class PendingRow:
    id: int
    topic: str
    key: str
    payload: str | bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class OutboxStatements:
    """The three hot statements, as SQL text with the model's names; ids are filled in per batch."""

    pending: str  # format(excluded=..., limit=...)
    mark: str  # format(ids=...)
    delete: str  # format(ids=...)

    @classmethod
    def of_model(cls) -> OutboxStatements:
        table: Any = OutboxRow.__table__  # type: ignore[attr-defined]
        c = table.c

        def q(name: str) -> str:
            return f"`{name}`"

        outbox, id_ = q(table.name), q(c.id.name)
        read = ", ".join(q(col.name) for col in (c.id, c.topic, c.key, c.payload, c.headers))
        unpublished = f"{q(c.published_at.name)} IS NULL"
        return cls(
            pending=(
                f"SELECT {read} FROM {outbox} WHERE {unpublished} AND {id_} NOT IN ({{excluded}}) "
                f"ORDER BY {id_} LIMIT {{limit}}"
            ),
            mark=f"UPDATE {outbox} SET {q(c.published_at.name)} = UTC_TIMESTAMP(6) WHERE {id_} IN ({{ids}})",
            delete=f"DELETE FROM {outbox} WHERE {id_} IN ({{ids}})",
        )


def _id_list(ids: Iterable[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


class Publisher:
    """Sends the oldest unpublished rows in id order and completes them once Kafka acked them.

    Completing is OUTBOX_COMPLETION: `mark` sets `published_at` and keeps the row until the retention purge
    (an audit trail in MySQL, and clearing `published_at` publishes rows again): the row's 8 bytes rewritten in
    place (the outbox's REDUNDANT row format, `command.models.OutboxRow`) and its `published_at` index entry
    moved; `delete` removes the row and its index entries at once.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        settings: Settings,
        *,
        timeout: float = STATEMENT_TIMEOUT,
        telemetry: Telemetry = OFF,
    ) -> None:
        self.producer = producer
        self.settings = settings
        self.telemetry = telemetry
        self.timeout = timeout
        self.statements = OutboxStatements.of_model()
        self.published = 0
        self._read_ahead: asyncio.Task[list[PendingRow]] | None = None  # the next batch, read during acks
        self._completing: tuple[list[int], asyncio.Task[None]] | None = None  # acked rows being completed

    async def publish_batch(self, sessions: LeaderSessions) -> int:
        """Publish the oldest unpublished rows; returns how many Kafka acked.

        Kafka sends never overlap: a batch is sent only after every ack of the previous one, so a failed
        batch is never overtaken by a later one. The database work around them does overlap: completing a
        batch runs on the leader's second session while the next one is read and sent, and with `delete` a
        full batch also has the next one read while it waits for its acks (with `mark` that read ahead
        measured slower: it meets the index entries the marking is moving). Reads leave out the rows in
        flight and being completed, so one leader never sends a row twice. A row committed after a read,
        with a lower id than rows in it, goes with a later batch; that never reorders one aggregate's
        events, because a handler writes its outbox rows while it holds the aggregate's row lock, so one
        aggregate's rows commit in id order.
        """
        rows = await self._take_read_ahead() or await self.pending(sessions.reader, self._completing_ids())
        if not rows:
            await self._finish_completing()
            return 0
        sending = time.perf_counter()
        futures = [
            await self.telemetry.send(  # producer.send, in a PRODUCER span when OpenTelemetry is on
                self.producer,
                self.settings.topic(row.topic),
                value=row.payload.encode() if isinstance(row.payload, str) else row.payload,
                key=row.key.encode(),
                headers=row.headers,
            )
            for row in rows
        ]
        ids = [row.id for row in rows]
        if self.settings.outbox_completion == "delete" and len(rows) == self.settings.outbox_batch_size:
            self._read_ahead = asyncio.create_task(self.pending(sessions.reader, ids + self._completing_ids()))
        # Every ack (acks=all) before anything is completed. Bounded: after a broker crash an unacked send can
        # wait for ever; timing out makes this an error like any other (leadership released, rows sent again).
        try:
            async with asyncio.timeout(ACK_TIMEOUT):
                await asyncio.gather(*futures)
        except BaseException:
            KAFKA_SEND_ERRORS.inc()
            raise
        KAFKA_SEND_SECONDS.observe(time.perf_counter() - sending)
        RELAY_PUBLISHED.inc(len(rows))
        self.published += len(rows)
        await self._finish_completing()
        self._completing = (ids, asyncio.create_task(self._complete_bounded(sessions.completer, ids)))
        return len(rows)

    async def pending(self, conn: AsyncConnection, excluded_ids: list[int]) -> list[PendingRow]:
        sql = self.statements.pending.format(
            excluded=_id_list(excluded_ids) or "0", limit=int(self.settings.outbox_batch_size)
        )
        async with asyncio.timeout(self.timeout):
            result = await conn.exec_driver_sql(sql)
        rows = cast(list[tuple[int, str, str, str | bytes, object]], result.all())
        headers = _batch_headers([row[4] for row in rows])
        return [
            PendingRow(id_, topic, key, payload, row_headers)
            for (id_, topic, key, payload, _), row_headers in zip(rows, headers, strict=True)
        ]

    async def complete(self, conn: AsyncConnection, ids: list[int]) -> None:
        """Mark or delete rows that Kafka acked (OUTBOX_COMPLETION)."""
        statement = self.statements.delete if self.settings.outbox_completion == "delete" else self.statements.mark
        await conn.exec_driver_sql(statement.format(ids=_id_list(ids)))

    async def _complete_bounded(self, conn: AsyncConnection, ids: list[int]) -> None:
        async with asyncio.timeout(self.timeout):
            await self.complete(conn, ids)

    async def stop(self) -> None:
        """When leadership ends or on an error: let a running completion finish (while the lock is still held,
        so no standby republishes its rows), then drop the read-ahead. Never raises."""
        try:
            await self._finish_completing()
        except Exception as exc:  # its rows stay unpublished: the next leader publishes them again
            log.warning("relay.complete_failed", error=repr(exc))
        read_ahead, self._read_ahead = self._read_ahead, None
        if read_ahead is not None:
            read_ahead.cancel()
            await asyncio.gather(read_ahead, return_exceptions=True)  # its outcome no longer matters

    async def _take_read_ahead(self) -> list[PendingRow]:
        read_ahead, self._read_ahead = self._read_ahead, None
        return await read_ahead if read_ahead is not None else []

    def _completing_ids(self) -> list[int]:
        return self._completing[0] if self._completing is not None else []

    async def _finish_completing(self) -> None:
        """Wait for the batch being completed; a failure surfaces here (its rows are then published again)."""
        completing, self._completing = self._completing, None
        if completing is not None:
            await completing[1]


def _batch_headers(stored: list[object]) -> list[dict[str, str]]:
    """Every row's headers (JSON objects of strings, as the driver returns them: text) parsed in one call: a
    `json.loads` per row was half the reading's Python time (bench relay, py-spy)."""
    if all(isinstance(raw, str) for raw in stored):
        return [_headers(parsed) for parsed in json.loads(f"[{','.join(cast(list[str], stored))}]")]
    return [_headers(raw) for raw in stored]


def _headers(raw: object) -> dict[str, str]:
    if isinstance(raw, str | bytes):
        raw = json.loads(raw)
    return dict(raw) if isinstance(raw, dict) else {}
