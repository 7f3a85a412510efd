"""shared.telemetry on its own: span names, kinds, parents and the in-process trace context, with the SDK's
in-memory exporter. The tests are coroutines so that each runs in a context of its own (contextvars do not leak).
Each traces with the `Telemetry` it made: nothing is installed anywhere.
The relay's PRODUCER span and the whole chain over Kafka are in tests/integration/test_telemetry.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import structlog
from aiokafka import ConsumerRecord
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eventshop.runtime import Component, service_name
from shared import telemetry, tracing
from shared.settings import Settings
from shared.telemetry import Telemetry
from tests.traces import batch_threads, caller, ids


@dataclass
class Recording:
    """A started telemetry and the spans it exported."""

    telemetry: Telemetry
    exporter: InMemorySpanExporter

    @classmethod
    def start(cls, service: str) -> Recording:
        exporter = InMemorySpanExporter()
        settings = Settings(otel_enabled=True, otel_service_name="")
        return cls(Telemetry.start(settings, service, exporter=exporter), exporter)

    def finished(self) -> list[ReadableSpan]:
        self.telemetry.force_flush()
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def traced() -> Iterator[Recording]:
    recording = Recording.start("unit-test")
    yield recording
    recording.telemetry.shutdown()


def record(topic: str, headers: dict[str, str]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=2,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=b"7",
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=tuple((k, v.encode()) for k, v in headers.items()),
    )


async def test_off_by_default_and_then_nothing_is_created_or_started() -> None:
    assert Settings.model_fields["otel_enabled"].default is False
    before = batch_threads()
    off = Telemetry.start(Settings(otel_enabled=False), "gateway", exporter=InMemorySpanExporter())
    assert off is telemetry.OFF and not off.enabled  # its methods below are flag checks
    assert batch_threads() == before
    tracing.bind("cid", caller())
    bound = tracing.traceparent.get()
    with off.graphql_operation() as span:
        assert span is None
        assert tracing.traceparent.get() == bound  # today's context, untouched
    with off.consuming(record("t", {}), {}, consumer="c", group="g") as span:
        assert span is None
    telemetry.dead_lettered(None, ValueError("x"), "t.dlq", 0)  # a no-op without a span


async def test_the_gateway_span_continues_the_callers_trace_and_is_current_inside(traced: Recording) -> None:
    incoming = caller()
    tracing.bind("cid-1", incoming)
    bound = tracing.traceparent.get()
    with traced.telemetry.graphql_operation() as span:
        assert span is not None
        # What the outbox copies into events now names this span as the parent.
        assert tracing.traceparent.get() == telemetry.traceparent_of(span)
        assert ids(tracing.traceparent.get() or "") == (
            span.get_span_context().trace_id,
            span.get_span_context().span_id,
        )
        assert structlog.contextvars.get_contextvars()["span_id"] == f"{span.get_span_context().span_id:016x}"
        telemetry.describe_operation(span, "mutation", "CreateUser", ["createUser"], [])
    assert tracing.traceparent.get() == bound
    assert "span_id" not in structlog.contextvars.get_contextvars()

    (done,) = traced.finished()
    assert done.name == "mutation CreateUser"
    assert done.kind is SpanKind.SERVER
    assert done.parent is not None and done.parent.is_remote
    assert (done.context.trace_id, done.parent.span_id) == ids(incoming)
    assert done.attributes is not None
    assert done.attributes["graphql.operation.type"] == "mutation"
    assert done.attributes["graphql.operation.name"] == "CreateUser"
    assert done.attributes["eventshop.graphql.root_fields"] == ("createUser",)
    assert done.attributes["eventshop.correlation_id"] == "cid-1"
    assert done.status.status_code is StatusCode.UNSET
    assert done.resource.attributes["service.name"] == "unit-test"


async def test_without_a_caller_the_span_starts_the_trace_its_logs_already_carry(traced: Recording) -> None:
    tracing.bind(None, None)
    logged_trace = structlog.contextvars.get_contextvars()["trace_id"]
    with traced.telemetry.graphql_operation() as span:
        assert span is not None
        telemetry.describe_operation(span, "query", None, ["products"], [])
    (done,) = traced.finished()
    assert done.parent is None
    assert f"{done.context.trace_id:032x}" == logged_trace
    assert done.name == "query"  # anonymous: the type alone
    assert done.attributes is not None and "graphql.operation.name" not in done.attributes


async def test_an_operation_with_errors_has_an_error_status(traced: Recording) -> None:
    tracing.bind(None, caller())
    with traced.telemetry.graphql_operation() as span:
        assert span is not None
        telemetry.describe_operation(span, "mutation", None, ["createUser"], ["CONFLICT"])
    (done,) = traced.finished()
    assert done.status.status_code is StatusCode.ERROR
    assert done.status.description == "CONFLICT"
    assert done.attributes is not None and done.attributes["eventshop.graphql.error_codes"] == ("CONFLICT",)


async def test_an_exception_fails_the_span_and_restores_the_context(traced: Recording) -> None:
    tracing.bind(None, caller())
    bound = tracing.traceparent.get()
    with pytest.raises(RuntimeError), traced.telemetry.graphql_operation():
        raise RuntimeError("boom")
    assert tracing.traceparent.get() == bound
    (done,) = traced.finished()
    assert done.status.status_code is StatusCode.ERROR
    assert [event.name for event in done.events] == ["exception"]


async def test_a_consumer_span_is_the_child_of_the_message_header_and_fails_when_dead_lettered(
    traced: Recording,
) -> None:
    producer = caller()
    headers = {"traceparent": producer, "correlation_id": "cid-2", "event_id": "e-1"}
    raw = {k: v.encode() for k, v in headers.items()}
    tracing.bind("cid-2", producer)
    with traced.telemetry.consuming(
        record("test.order.created", headers), raw, consumer="stock-worker", group="g1"
    ) as span:
        assert span is not None
        assert tracing.traceparent.get() == telemetry.traceparent_of(span)
        telemetry.dead_lettered(span, KeyError("id"), "test.order.created.dlq", attempts=3)
    (done,) = traced.finished()
    assert done.name == "test.order.created process"
    assert done.kind is SpanKind.CONSUMER
    assert done.parent is not None and (done.context.trace_id, done.parent.span_id) == ids(producer)
    assert done.attributes is not None
    assert {k: done.attributes[k] for k in done.attributes if k.startswith("messaging.")} == {
        "messaging.system": "kafka",
        "messaging.destination.name": "test.order.created",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 41,
        "messaging.consumer.group.name": "g1",
        "messaging.kafka.message.key": "7",
        "messaging.message.id": "e-1",
    }
    assert done.attributes["eventshop.consumer"] == "stock-worker"
    assert done.attributes["eventshop.correlation_id"] == "cid-2"
    assert done.attributes["eventshop.dlq.topic"] == "test.order.created.dlq"
    assert done.attributes["eventshop.dlq.attempts"] == 3
    assert done.status.status_code is StatusCode.ERROR
    assert [event.name for event in done.events] == ["exception"]


async def test_shutdown_exports_what_the_batch_processor_still_holds() -> None:
    exporter = InMemorySpanExporter()
    traced = Telemetry.start(Settings(otel_enabled=True), "unit-test", exporter=exporter)
    assert batch_threads(), "the batch processor exports from a thread of its own"
    tracing.bind(None, None)
    with traced.graphql_operation():
        pass
    assert exporter.get_finished_spans() == ()  # still buffered: the schedule delay is seconds
    traced.shutdown()
    assert len(exporter.get_finished_spans()) == 1
    assert not traced.enabled


async def test_two_telemetries_in_one_process_trace_independently_of_each_other_and_of_off() -> None:
    gateway, worker = Recording.start("gateway"), Recording.start("stock-worker")
    tracing.bind("cid-3", caller())
    with gateway.telemetry.graphql_operation() as outer, telemetry.OFF.graphql_operation() as untraced:
        assert outer is not None and untraced is None  # OFF stays off while another telemetry traces
        with worker.telemetry.consuming(record("t", {}), {}, consumer="stock-worker", group="g") as inner:
            assert inner is not None
    ((served,), (consumed,)) = gateway.finished(), worker.finished()
    assert (served.kind, served.resource.attributes["service.name"]) == (SpanKind.SERVER, "gateway")
    assert (consumed.kind, consumed.resource.attributes["service.name"]) == (SpanKind.CONSUMER, "stock-worker")
    for recording in (gateway, worker):
        recording.telemetry.shutdown()


def test_exporters_and_service_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    otlp = telemetry.make_exporter(
        Settings(otel_exporter="otlp", otel_exporter_otlp_endpoint="http://collector.internal:4318/")
    )
    assert isinstance(otlp, OTLPSpanExporter)
    assert otlp._endpoint == "http://collector.internal:4318/v1/traces"
    assert isinstance(telemetry.make_exporter(Settings(otel_exporter="console")), ConsoleSpanExporter)
    assert telemetry.make_exporter(Settings(otel_exporter="none")) is None

    assert service_name([Component.RELAY]) == "relay"
    assert service_name([Component.STOCK_WORKER]) == "stock-worker"
    assert service_name(list(Component)) == "eventshop"
    assert telemetry.service_name(Settings(otel_service_name=""), "projector") == "projector"
    assert telemetry.service_name(Settings(otel_service_name="shop-eu"), "projector") == "shop-eu"
