"""OpenTelemetry spans when `OTEL_ENABLED`: one per GraphQL operation, per published event, per consumed message.

Disabled (the default), every method here is a flag check: no SDK object exists, no exporter thread runs,
and correlation ids and `traceparent`s travel exactly as `shared.tracing` makes them.

A process's tracing is one `Telemetry`: `Telemetry.start()` builds it (enabled: a TracerProvider with a
BatchSpanProcessor, flushed by `shutdown()`), and the process's start-up (`eventshop/runtime.py`) hands it
to each component it builds; a component built without one gets `OFF`. Nothing in this module changes after
import: what traces is whatever `Telemetry` a component was given. Its methods are what the components call
(`send` in the relay, `consuming` in the consumer loop, `graphql_operation` in the gateway). Enabled:

- `graphql_operation()` is the gateway's SERVER span, continuing the request's incoming `traceparent`;
- `send()` wraps the relay's publish in a PRODUCER span, parented on the event's stored `traceparent`,
  and puts the producer span's context into the Kafka `traceparent` header;
- `consuming()` is a CONSUMER span per message, parented on that header.

In-process, the active span's context lives in `shared.tracing.traceparent`, the contextvar the outbox
copies into each event: while a span is open it holds the span's own `traceparent` (and the span id is
bound into the log context), so events written under a mutation or a consumer carry that span as their
parent. Parents are always explicit (incoming header, stored event, Kafka header); spans are not attached
to OpenTelemetry's implicit context.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared import tracing
from shared.logging import get_logger
from shared.settings import Settings

if TYPE_CHECKING:
    import asyncio

    from aiokafka import AIOKafkaProducer, ConsumerRecord
    from aiokafka.structs import RecordMetadata
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = get_logger(__name__)

_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()
# A root span takes the trace id `shared.tracing.bind` already logged for its unit of work (see _IdGenerator).
_root_trace_id: ContextVar[int | None] = ContextVar("otel_root_trace_id", default=None)


class Telemetry:
    """One process's tracing: an SDK provider and its tracer, or nothing at all (disabled, `OFF`)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self.tracer: trace.Tracer | None = provider.get_tracer("eventshop") if provider is not None else None

    @classmethod
    def start(cls, settings: Settings, default_service_name: str, *, exporter: SpanExporter | None = None) -> Telemetry:
        """Tracing as `OTEL_ENABLED` says: `OFF` (no SDK object, no thread) or a started provider.
        `exporter` overrides `OTEL_EXPORTER` (tests)."""
        if not settings.otel_enabled:
            return OFF
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = service_name(settings, default_service_name)
        provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: name}),
            id_generator=_IdGenerator(),
            shutdown_on_exit=False,  # `shutdown()` flushes when the process stops
        )
        exporter = exporter if exporter is not None else make_exporter(settings)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("telemetry.enabled", service=name, exporter=type(exporter).__name__ if exporter else "none")
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._provider.force_flush(timeout_millis) if self._provider is not None else True

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporter; off afterwards (blocking: call in a thread)."""
        provider, self._provider, self.tracer = self._provider, None, None
        if provider is not None:
            provider.shutdown()

    # --- what the components call ------------------------------------------------------------------

    def graphql_operation(self) -> contextlib.AbstractContextManager[Span | None]:
        """A SERVER span around one GraphQL operation (None when disabled); name it with `describe_operation`."""
        if self.tracer is None:
            return _NULL
        parent = tracing.remote_parent.get()
        return _current(_start(self.tracer, "GraphQL Operation", SpanKind.SERVER, parent, _correlation(), adopt=True))

    def send(
        self, producer: AIOKafkaProducer, topic: str, *, value: bytes, key: bytes, headers: Mapping[str, str]
    ) -> Awaitable[asyncio.Future[RecordMetadata]]:
        """`producer.send(...)`; enabled, inside a PRODUCER span (ended at the ack) whose context replaces
        the stored `traceparent` header."""
        if self.tracer is None:
            return producer.send(topic, value=value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
        return _traced_send(self.tracer, producer, topic, value=value, key=key, headers=headers)

    def consuming(
        self, record: ConsumerRecord[bytes, bytes], headers: Mapping[str, bytes], *, consumer: str, group: str | None
    ) -> contextlib.AbstractContextManager[Span | None]:
        """A CONSUMER span "<topic> process" around one message (None when disabled)."""
        if self.tracer is None:
            return _NULL
        parent = headers.get("traceparent")
        return _current(
            _start(
                self.tracer,
                f"{record.topic} process",
                SpanKind.CONSUMER,
                parent.decode(errors="replace") if parent is not None else None,
                _consumed(record, headers, consumer, group),
                adopt=True,
            )
        )


OFF = Telemetry()


def service_name(settings: Settings, default: str) -> str:
    return settings.otel_service_name.strip() or default


def make_exporter(settings: Settings) -> SpanExporter | None:
    if settings.otel_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = settings.otel_exporter_otlp_endpoint.strip()
        # Set here (e.g. in `.env`), the base URL gets the traces path like the variable would; the more
        # specific OTEL_EXPORTER_OTLP_TRACES_ENDPOINT of the environment still wins, as the spec says.
        if base and not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            return OTLPSpanExporter(endpoint=base.rstrip("/") + "/v1/traces")
        return OTLPSpanExporter()
    return None


def traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


# --- gateway ----------------------------------------------------------------------------------------


def describe_operation(
    span: Span, operation_type: str | None, name: str | None, root_fields: Sequence[str], error_codes: Sequence[str]
) -> None:
    if operation_type:
        span.update_name(f"{operation_type} {name}" if name else operation_type)
        span.set_attribute("graphql.operation.type", operation_type)
    if name:
        span.set_attribute("graphql.operation.name", name)
    if root_fields:
        span.set_attribute("eventshop.graphql.root_fields", list(root_fields))
    if error_codes:
        span.set_attribute("eventshop.graphql.error_codes", list(error_codes))
        span.set_status(Status(StatusCode.ERROR, ",".join(sorted(set(error_codes)))))


# --- relay ------------------------------------------------------------------------------------------


async def _traced_send(
    tracer: trace.Tracer,
    producer: AIOKafkaProducer,
    topic: str,
    *,
    value: bytes,
    key: bytes,
    headers: Mapping[str, str],
) -> asyncio.Future[RecordMetadata]:
    attributes = {
        **_messaging(topic, "send", "publish"),
        "messaging.kafka.message.key": key.decode(errors="replace"),
        "messaging.message.body.size": len(value),
    }
    if "event_id" in headers:
        attributes["messaging.message.id"] = headers["event_id"]
    if headers.get("correlation_id"):
        attributes["eventshop.correlation_id"] = headers["correlation_id"]
    span = _start(tracer, f"{topic} publish", SpanKind.PRODUCER, headers.get("traceparent"), attributes)
    outgoing = {**headers, "traceparent": traceparent_of(span)}
    try:
        future: asyncio.Future[RecordMetadata] = await producer.send(
            topic, value=value, key=key, headers=[(k, v.encode()) for k, v in outgoing.items()]
        )
    except BaseException as exc:
        _failed(span, exc)
        span.end()
        raise

    def acked(done: asyncio.Future[RecordMetadata]) -> None:
        if done.cancelled():
            span.set_status(Status(StatusCode.ERROR, "canceled"))
        elif (error := done.exception()) is not None:
            _failed(span, error)
        else:
            metadata = done.result()
            span.set_attribute("messaging.destination.partition.id", str(metadata.partition))
            span.set_attribute("messaging.kafka.offset", metadata.offset)
        span.end()

    future.add_done_callback(acked)
    return future


# --- consumers --------------------------------------------------------------------------------------


def _consumed(
    record: ConsumerRecord[bytes, bytes], headers: Mapping[str, bytes], consumer: str, group: str | None
) -> dict[str, Any]:
    """A consumer span's attributes."""
    attributes: dict[str, Any] = {
        **_messaging(record.topic, "process", "process"),
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "eventshop.consumer": consumer,
        **_correlation(),
    }
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    if record.key is not None:
        attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
    if (event_id := headers.get("event_id")) is not None:
        attributes["messaging.message.id"] = event_id.decode(errors="replace")
    return attributes


def dead_lettered(span: Span | None, error: BaseException, dlq_topic: str, attempts: int) -> None:
    """Mark a consumer span whose message went to the DLQ."""
    if span is None:
        return
    span.record_exception(error)
    span.set_attributes({"eventshop.dlq.topic": dlq_topic, "eventshop.dlq.attempts": attempts})
    span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {type(error).__name__}"))


# --- internals --------------------------------------------------------------------------------------


def _start(
    tracer: trace.Tracer,
    name: str,
    kind: SpanKind,
    parent: str | None,
    attributes: Mapping[str, Any],
    *,
    adopt: bool = False,
) -> Span:
    context = _PROPAGATOR.extract({"traceparent": parent}, context=Context()) if parent else Context()
    token = None
    if adopt and not trace.get_current_span(context).get_span_context().is_valid:
        bound = tracing.TRACEPARENT.match(tracing.traceparent.get() or "")
        if bound and int(bound.group(1), 16):
            token = _root_trace_id.set(int(bound.group(1), 16))
    try:
        return tracer.start_span(name, context=context, kind=kind, attributes=attributes)
    finally:
        if token is not None:
            _root_trace_id.reset(token)


@contextlib.contextmanager
def _current(span: Span) -> Iterator[Span]:
    """The span is the unit of work's current one: events written now name it as their parent."""
    previous = tracing.traceparent.get()
    previous_log = structlog.contextvars.get_contextvars()
    context = span.get_span_context()
    tracing.traceparent.set(traceparent_of(span))
    structlog.contextvars.bind_contextvars(trace_id=f"{context.trace_id:032x}", span_id=f"{context.span_id:016x}")
    try:
        yield span
    except Exception as exc:  # not cancellation: a stopped unit of work did not fail
        _failed(span, exc)
        raise
    finally:
        span.end()
        tracing.traceparent.set(previous)
        structlog.contextvars.unbind_contextvars("span_id")
        restore = {k: previous_log[k] for k in ("trace_id", "span_id") if k in previous_log}
        if restore:
            structlog.contextvars.bind_contextvars(**restore)


def _failed(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def _messaging(topic: str, operation_type: str, operation_name: str) -> dict[str, Any]:
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation_name,
    }


def _correlation() -> dict[str, str]:
    cid = tracing.correlation_id.get()
    return {"eventshop.correlation_id": cid} if cid else {}


class _IdGenerator(RandomIdGenerator):
    """Random ids, except that a root span of a request or message keeps the trace id already in its logs."""

    def generate_trace_id(self) -> int:
        return _root_trace_id.get() or super().generate_trace_id()
