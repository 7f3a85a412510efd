"""The consumer loop: partition (or lane) order, retry with backoff, a DLQ, commits after the effects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, RetryCallState, retry_if_not_exception_type, wait_exponential_jitter

from shared import tracing
from shared.events import Event, dlq_topic, parse_event
from shared.logging import get_logger
from shared.metrics import CONSUMER_LAG, DLQ_MESSAGES, dead_letters_counted
from shared.outages import is_infrastructure_outage
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry, dead_lettered

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = get_logger(__name__)

T = TypeVar("T")


class _AssignmentListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assigned: asyncio.Event) -> None:
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.assigned.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            self.assigned.set()


class PoisonMessage(Exception):
    """A message that can never succeed (undecodable, invalid): straight to the DLQ, no retry."""


class ShuttingDown(Exception):
    """Raised out of a retry backoff when the loop is asked to stop: the message is neither
    dead-lettered nor committed, so the next run handles it again."""


Lane = Callable[[T], tuple[Hashable, int]]
"""A message's lane and its place in it: messages of one lane are handled one at a time in that order."""
Decoded = tuple[ConsumerRecord[bytes, bytes], T | BaseException]
"""A record and its decoded message, or why it cannot be decoded."""
Batch = Callable[[list[tuple[ConsumerRecord[bytes, bytes], T]]], Awaitable[None]]
"""Handles a whole poll's messages at once, all or nothing (one transaction)."""


class ConsumerLoop(Generic[T]):
    """Consume, handle each message in partition order (or in its lane, see `sequence`), commit only after
    every effect of the poll is durable.

    Transient failures are retried with exponential backoff and jitter; undecodable messages and
    messages that exhaust their retries go to `<topic>.dlq` with the error, and the loop moves on.
    A failed DLQ publish raises: the loop stops without committing, so nothing is dropped silently.
    Asked to stop during a backoff, the loop stops at once without committing (the message comes back).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        name: str,
        group_id: str | None,
        topics: list[str],
        handle: Callable[[T, ConsumerRecord[bytes, bytes]], Awaitable[None]],
        decode: Callable[[bytes | None], T],
        producer: AIOKafkaProducer,
        auto_offset_reset: str = "earliest",
        max_records: int = 500,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        sequence: Lane[T] | None = None,
        max_lanes: int = 32,
        handle_batch: Batch[T] | None = None,
        telemetry: Telemetry = OFF,
    ) -> None:
        self.settings = settings
        self.name = name
        self.group_id = group_id
        self.topics = topics
        self.handle = handle
        self.decode = decode
        self.producer = producer
        self.auto_offset_reset = auto_offset_reset
        self.max_records = max_records
        self.before_commit = before_commit
        self.sequence = sequence
        self.handle_batch = handle_batch
        self.telemetry = telemetry
        self._lane_slots = asyncio.Semaphore(max_lanes)
        self.consumer: AIOKafkaConsumer | None = None
        self._assigned = asyncio.Event()
        self._stopping = asyncio.Event()
        self.ready = False
        self.processed = 0
        self.dead_lettered = 0

    def _retrying(self, failures: list[BaseException]) -> AsyncRetrying:
        """Backoff with jitter. A failing message gets `consumer_retries` retries, then the DLQ;
        an unavailable database or broker is waited for without limit: it is not the message's fault."""
        s = self.settings

        def give_up(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if is_infrastructure_outage(error):
                if not self._stopping.is_set():
                    log.warning("consumer.waiting_for_infrastructure", consumer=self.name, error=repr(error))
                return self._stopping.is_set()
            failures.append(error)  # type: ignore[arg-type]
            return len(failures) > s.consumer_retries

        async def backoff(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)
            if self._stopping.is_set():
                raise ShuttingDown(f"{self.name}: stopping during a retry backoff")

        return AsyncRetrying(
            stop=give_up,
            sleep=backoff,
            wait=wait_exponential_jitter(
                multiplier=s.consumer_retry_initial, max=s.consumer_retry_max, jitter=s.consumer_retry_initial
            ),
            retry=retry_if_not_exception_type(PoisonMessage),
            reraise=True,
        )

    async def start(self) -> None:
        dead_letters_counted(self.topics, self.name)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset,
            max_poll_records=self.max_records,
            session_timeout_ms=10_000,  # a crashed consumer's partitions move on within seconds
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=600_000,
        )
        if self.group_id is None:
            self.consumer.subscribe(self.topics)
        else:
            self.consumer.subscribe(self.topics, listener=_AssignmentListener(self._assigned))
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
            self.ready = False

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll until `stopping` is set; finishes the batch in hand, commits it, then returns."""
        self._stopping = stopping
        if self.consumer is None:
            await self.start()
        assert self.consumer is not None
        try:
            while not stopping.is_set() and not self.ready:
                with contextlib.suppress(TimeoutError):
                    await self.wait_ready(timeout=1.0)
            while not stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if not batches:
                    continue
                errors = [] if await self._process_batch(batches) else await self._process_lanes(batches)
                for error in errors:
                    if not (stopping.is_set() and (isinstance(error, ShuttingDown) or is_infrastructure_outage(error))):
                        raise error
                if errors:
                    return  # asked to stop while retrying: nothing committed, redelivered later
                self._measure_lag(batches)
                if self.before_commit is not None:
                    await self.before_commit()
                if self.group_id is not None:
                    await self._commit()
        finally:
            await self.stop()

    async def _process_lanes(
        self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> list[BaseException]:
        """Every lane (partition, or `sequence` key) at once, each message alone; what failed them."""
        # Every lane finishes (or gives up) before anything else happens: no handler is left running behind a
        # stopped consumer.
        outcomes = await asyncio.gather(
            *(self._process_lane(lane) for lane in self._lanes(batches)), return_exceptions=True
        )
        return [e for e in outcomes if isinstance(e, BaseException)]

    async def _process_batch(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> bool:
        """The poll through `handle_batch` in one go; False when it must go message by message instead.

        The batch is only the fast path: a poll with an undecodable message, or whose batch failed (a poison
        message, an outage, a concurrent redelivery), is handled again one message at a time, where retries and
        the DLQ apply to each message alone. With tracing on, each message keeps its own span and so goes alone.
        """
        if self.handle_batch is None or self.telemetry.enabled:
            return False
        messages: list[tuple[ConsumerRecord[bytes, bytes], T]] = []
        for records in batches.values():
            for record in records:
                message = _decoded(self.decode, record)
                if isinstance(message, BaseException):
                    return False
                messages.append((record, message))
        try:
            await self.handle_batch(messages)
        except Exception as exc:
            log.info("consumer.batch_failed", consumer=self.name, messages=len(messages), error=repr(exc))
            return False
        self.processed += len(messages)
        return True

    async def _commit(self) -> None:
        """Commit consumed positions. If the broker is unavailable, the next commit covers them;
        until then a restart only redelivers (consumers are idempotent)."""
        assert self.consumer is not None
        try:
            await self.consumer.commit()
        except KafkaError as exc:
            log.warning("consumer.commit_failed", consumer=self.name, error=repr(exc))

    def _measure_lag(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        assert self.consumer is not None
        for tp, records in batches.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lag = highwater - (records[-1].offset + 1)
                CONSUMER_LAG.labels(group=self.group_id or "-", topic=tp.topic, partition=tp.partition).set(lag)

    def _lanes(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> list[list[Decoded[T]]]:
        """The poll's messages in lanes: one per partition, or with `sequence` one per key over all partitions,
        each in the order `sequence` gives (an undecodable message goes alone, to its DLQ)."""
        if self.sequence is None:
            return [[(record, _decoded(self.decode, record)) for record in records] for records in batches.values()]
        keyed: dict[Hashable, list[tuple[int, Decoded[T]]]] = {}
        alone: list[list[Decoded[T]]] = []
        for records in batches.values():
            for record in records:
                message = _decoded(self.decode, record)
                if isinstance(message, BaseException):
                    alone.append([(record, message)])
                    continue
                key, place = self.sequence(message)
                keyed.setdefault(key, []).append((place, (record, message)))
        return alone + [[item for _, item in sorted(lane, key=lambda p: p[0])] for lane in keyed.values()]

    async def _process_lane(self, lane: list[Decoded[T]]) -> None:
        async with self._lane_slots:
            for record, message in lane:
                await self.process(record, message)

    async def process(self, record: ConsumerRecord[bytes, bytes], message: T | BaseException | None = None) -> None:
        headers = dict(record.headers or ())
        tracing.bind(_text(headers.get("correlation_id")), _text(headers.get("traceparent")))
        with self.telemetry.consuming(record, headers, consumer=self.name, group=self.group_id) as span:
            await self._process(record, span, _decoded(self.decode, record) if message is None else message)

    async def _process(
        self, record: ConsumerRecord[bytes, bytes], span: Span | None, message: T | BaseException
    ) -> None:
        if isinstance(message, BaseException):  # undecodable: retrying cannot help
            dead_lettered(span, message, dlq_topic(record.topic), attempts=0)
            await self.dead_letter(record, message, attempts=0)
            return
        try:
            await self.handle(message, record)  # the usual case, without the retry machinery's cost
        except Exception as first:
            await self._retry(record, span, message, first)
            return
        self.processed += 1

    async def _retry(
        self, record: ConsumerRecord[bytes, bytes], span: Span | None, message: T, first: Exception
    ) -> None:
        """Retry with backoff after `first` failed the first attempt (counted as one); then the DLQ."""
        failures: list[BaseException] = []
        pending: Exception | None = first
        try:
            async for attempt in self._retrying(failures):
                with attempt:
                    if pending is not None:
                        error, pending = pending, None
                        raise error
                    await self.handle(message, record)
        except Exception as exc:
            if isinstance(exc, ShuttingDown) or is_infrastructure_outage(exc):
                raise  # shutting down while waiting: no DLQ, no commit; redelivered after restart
            attempts = len(failures) if not isinstance(exc, PoisonMessage) else 0
            log.warning(
                "consumer.failed",
                consumer=self.name,
                topic=record.topic,
                offset=record.offset,
                error=repr(exc),
                attempts=attempts,
            )
            dead_lettered(span, exc, dlq_topic(record.topic), attempts=attempts)
            await self.dead_letter(record, exc, attempts=attempts)
            return
        self.processed += 1

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], exc: BaseException, *, attempts: int) -> None:
        headers = list(record.headers or ())
        headers += [
            ("dlq.original_topic", record.topic.encode()),
            ("dlq.original_partition", str(record.partition).encode()),
            ("dlq.original_offset", str(record.offset).encode()),
            ("dlq.error_type", type(exc).__name__.encode()),
            ("dlq.error_message", str(exc)[:2000].encode()),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.consumer", self.name.encode()),
        ]
        # Awaiting the ack: if the DLQ cannot take it, this raises and the offset is never committed.
        await self.producer.send_and_wait(dlq_topic(record.topic), record.value, key=record.key, headers=headers)
        self.dead_lettered += 1
        DLQ_MESSAGES.labels(topic=record.topic, consumer=self.name).inc()
        log.error(
            "consumer.dead_lettered",
            consumer=self.name,
            topic=record.topic,
            offset=record.offset,
            error=repr(exc),
            attempts=attempts,
        )

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment()) if self.consumer else set()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until partitions are assigned and their start offsets resolved: from then on, nothing
        published is missed, even by a new group that starts at the latest offsets."""
        async with asyncio.timeout(timeout):
            await self._assigned.wait()
            assert self.consumer is not None
            for tp in self.assignment():
                await self.consumer.position(tp)
        self.ready = True


def _decoded(decode: Callable[[bytes | None], T], record: ConsumerRecord[bytes, bytes]) -> T | BaseException:
    try:
        return decode(record.value)
    except Exception as exc:
        return exc


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode(errors="replace")


def decode_event(raw: bytes | None) -> Event:
    try:
        return parse_event(raw)
    except Exception as exc:
        raise PoisonMessage(f"cannot decode event: {exc}") from exc
