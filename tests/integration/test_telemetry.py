"""OpenTelemetry over the real system: one trace from the GraphQL mutation through the outbox, the relay and
Kafka into every consumer, with the correlation id alongside; and nothing at all when tracing is off.

The traced pipeline runs in a lab of its own (tests/labs.py): its gateway, relay, projector and stock worker
are given one `Telemetry` of this module's, whose spans go to the SDK's in-memory exporter (through the same
BatchSpanProcessor the processes use). The session's components, built without one, stay untraced beside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared.events import Topic, dlq_topic
from shared.kafka.producer import make_producer
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry
from tests.conftest import (
    GraphQLClient,
    RunningSystem,
    WriteModelProbe,
    eventually,
    in_process_admin,
    make_test_settings,
    unique,
)
from tests.events import EventLog
from tests.integration.shop import register_customer, stock_product
from tests.labs import lab_of, running_system
from tests.traces import batch_threads, caller, ids

CREATE_PRODUCT = """
mutation StockTracedProduct($input: CreateProductInput!) { createProduct(input: $input) { id version } }"""
CREATE_ORDER = """
mutation PlaceTracedOrder($input: CreateOrderInput!) { createOrder(input: $input) { id status version } }"""


@dataclass
class Traced:
    """A lab's pipeline, every component of it given `telemetry` (which exports to `spans`)."""

    telemetry: Telemetry
    spans: InMemorySpanExporter
    settings: Settings
    system: RunningSystem
    gql: GraphQLClient
    probe: WriteModelProbe

    def of_trace(self, trace_id: int) -> list[ReadableSpan]:
        self.telemetry.force_flush()
        return [s for s in self.spans.get_finished_spans() if s.context.trace_id == trace_id]


@pytest.fixture(scope="module")
async def traced(settings: Settings) -> AsyncIterator[Traced]:
    spans = InMemorySpanExporter()
    telemetry = Telemetry.start(make_test_settings(otel_enabled=True), "eventshop-test", exporter=spans)
    try:
        async with (
            lab_of(settings, "traced") as lab,
            running_system(lab.settings, lab.write_db, lab.mongo, telemetry=telemetry) as system,
            in_process_admin(lab.settings, lab.write_db, lab.read_model, telemetry=telemetry) as gql,
        ):
            events = EventLog(lab.settings, lab.write_db)
            await events.start()
            try:
                yield Traced(telemetry, spans, lab.settings, system, gql, WriteModelProbe(lab.write_db, events))
            finally:
                await events.stop()
    finally:
        telemetry.shutdown()


async def post(gql: GraphQLClient, query: str, traceparent: str, correlation: str, **variables: Any) -> dict[str, Any]:
    response = await gql.http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"traceparent": traceparent, "x-correlation-id": correlation},
    )
    body = response.json()
    assert not body.get("errors"), body
    assert response.headers["x-correlation-id"] == correlation
    return body["data"]  # type: ignore[no-any-return]


async def stock_traced_product(
    gql: GraphQLClient, traceparent: str, correlation: str, name: str, price: str, stock: int
) -> dict[str, Any]:
    """createProduct sent in the caller's trace, with its correlation id."""
    product = {"name": name, "price": price, "stock": stock}
    return (await post(gql, CREATE_PRODUCT, traceparent, correlation, input=product))["createProduct"]  # type: ignore[no-any-return]


def one(spans: list[ReadableSpan], kind: SpanKind, name: str, **attributes: Any) -> ReadableSpan | None:
    found = [
        s
        for s in spans
        if s.kind is kind
        and s.name == name
        and all((s.attributes or {}).get(key) == value for key, value in attributes.items())
    ]
    assert len(found) <= 1, [s.name for s in found]
    return found[0] if found else None


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def written(probe: WriteModelProbe, topic: str, aggregate_id: str) -> list[dict[str, Any]]:
    """The events as the command wrote them (the envelope keeps the stored trace context)."""
    return [e.envelope for e in await probe.events.all() if e.topic == topic and e.aggregate_id == int(aggregate_id)]


async def test_one_trace_from_the_mutation_through_the_relay_into_the_projector(traced: Traced) -> None:
    traceparent = caller()
    trace_id, caller_span = ids(traceparent)
    correlation = unique("checkout")
    product = await stock_traced_product(traced.gql, traceparent, correlation, unique("traced"), "9.90", 3)
    topic = traced.settings.topic(Topic.PRODUCT_CREATED)
    projector_group = traced.system.projection.loop.group_id

    async def chain() -> tuple[ReadableSpan, ReadableSpan, ReadableSpan] | None:
        trace = traced.of_trace(trace_id)
        server = one(trace, SpanKind.SERVER, "mutation StockTracedProduct")
        producer = one(trace, SpanKind.PRODUCER, f"{topic} publish")
        consumer = one(
            trace, SpanKind.CONSUMER, f"{topic} process", **{"messaging.consumer.group.name": projector_group}
        )
        return (server, producer, consumer) if server and producer and consumer else None

    found = await eventually(chain, timeout=30)
    assert found is not None
    server, producer, consumer = found

    # One trace, continuing the caller's: caller -> mutation (SERVER) -> publish (PRODUCER) -> process (CONSUMER).
    assert {server.context.trace_id, producer.context.trace_id, consumer.context.trace_id} == {trace_id}
    assert parent_of(server) == caller_span
    assert parent_of(producer) == server.context.span_id
    assert parent_of(consumer) == producer.context.span_id
    assert server.attributes is not None and producer.attributes is not None and consumer.attributes is not None
    assert server.attributes["graphql.operation.type"] == "mutation"
    assert server.attributes["graphql.operation.name"] == "StockTracedProduct"
    assert server.status.status_code is StatusCode.UNSET
    assert producer.attributes["messaging.system"] == "kafka"
    assert producer.attributes["messaging.destination.name"] == topic
    assert producer.attributes["messaging.kafka.message.key"] == product["id"]
    assert "messaging.kafka.offset" in producer.attributes  # ended at the ack
    assert consumer.attributes["messaging.destination.name"] == topic
    assert consumer.attributes["eventshop.consumer"] == "projector"
    assert consumer.status.status_code is StatusCode.UNSET

    # The correlation id travels beside the trace: request header -> outbox -> Kafka header -> consumer.
    for span in (server, producer, consumer):
        assert (span.attributes or {})["eventshop.correlation_id"] == correlation
    (event,) = await written(traced.probe, Topic.PRODUCT_CREATED.value, product["id"])
    assert event["correlation_id"] == correlation
    # The event names the mutation's span; the Kafka header named the producer's (the consumer's parent).
    assert event["trace"] == f"00-{trace_id:032x}-{server.context.span_id:016x}-01"


async def test_the_stock_saga_stays_in_the_trace_of_the_order_mutation(traced: Traced) -> None:
    """createOrder -> order.created -> stock worker -> order.reserved -> projector: every hop one trace."""
    customer = await register_customer(traced.gql)
    product = await stock_product(traced.gql, unique("saga"), "5.00", 10)
    traceparent = caller()
    trace_id, _ = ids(traceparent)
    correlation = unique("order")
    order_input = {"userId": customer["id"], "items": [{"productId": product["id"], "quantity": 2}]}
    order = (await post(traced.gql, CREATE_ORDER, traceparent, correlation, input=order_input))["createOrder"]
    assert order["status"] == "CREATED"
    created, reserved = traced.settings.topic(Topic.ORDER_CREATED), traced.settings.topic(Topic.ORDER_RESERVED)
    system = traced.system
    stock_group, projector_group = system.stock_worker.loop.group_id, system.projection.loop.group_id

    async def saga() -> dict[str, ReadableSpan] | None:
        trace = traced.of_trace(trace_id)
        found = {
            "mutation": one(trace, SpanKind.SERVER, "mutation PlaceTracedOrder"),
            "publish created": one(trace, SpanKind.PRODUCER, f"{created} publish"),
            "stock worker": one(
                trace, SpanKind.CONSUMER, f"{created} process", **{"messaging.consumer.group.name": stock_group}
            ),
            "publish reserved": one(trace, SpanKind.PRODUCER, f"{reserved} publish"),
            "projector": one(
                trace, SpanKind.CONSUMER, f"{reserved} process", **{"messaging.consumer.group.name": projector_group}
            ),
        }
        return found if all(found.values()) else None  # type: ignore[return-value]

    hops = await eventually(saga, timeout=30)
    assert hops is not None
    assert parent_of(hops["publish created"]) == hops["mutation"].context.span_id
    assert parent_of(hops["stock worker"]) == hops["publish created"].context.span_id
    # The stock worker's own outbox events name its consumer span as their parent.
    assert parent_of(hops["publish reserved"]) == hops["stock worker"].context.span_id
    assert parent_of(hops["projector"]) == hops["publish reserved"].context.span_id
    for span in hops.values():
        assert (span.attributes or {})["eventshop.correlation_id"] == correlation


async def test_a_dead_lettered_message_has_a_failed_consumer_span(traced: Traced) -> None:
    traceparent = caller()
    trace_id, sender_span = ids(traceparent)
    topic = traced.settings.topic(Topic.USER_CREATED)
    producer: AIOKafkaProducer = make_producer(traced.settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, b"this is not json", key=unique("poison").encode(), headers=[("traceparent", traceparent.encode())]
        )
    finally:
        await producer.stop()
    projector_group = traced.system.projection.loop.group_id

    async def failed() -> ReadableSpan | None:
        return one(
            traced.of_trace(trace_id),
            SpanKind.CONSUMER,
            f"{topic} process",
            **{"messaging.consumer.group.name": projector_group},
        )

    span = await eventually(failed, timeout=30)
    assert span is not None
    assert parent_of(span) == sender_span
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["eventshop.dlq.topic"] == dlq_topic(topic)
    assert span.attributes["eventshop.dlq.attempts"] == 0
    assert [event.name for event in span.events] == ["exception"]


async def test_with_tracing_off_no_span_is_recorded_and_the_trace_context_travels_as_before(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe, traced: Traced
) -> None:
    """The session's gateway and pipeline, given no telemetry, trace nothing: not even while the lab's traced
    pipeline runs in the same process."""
    threads = batch_threads()
    exporter = InMemorySpanExporter()
    assert Telemetry.start(make_test_settings(otel_enabled=False), "eventshop-test", exporter=exporter) is OFF
    assert batch_threads() == threads  # off starts no exporter thread
    traceparent = caller()
    trace_id, caller_span = ids(traceparent)
    correlation = unique("untraced")
    product = await stock_traced_product(gql, traceparent, correlation, unique("plain"), "1.00", 1)

    async def projected() -> bool:
        body = await gql.execute("query($id: ID!) { product(id: $id, minVersion: 1) { id } }", id=product["id"])
        return not body.get("errors") and body["data"]["product"] is not None

    await eventually(projected, timeout=30)  # the relay published it and the projector consumed it
    assert exporter.get_finished_spans() == ()
    assert traced.of_trace(trace_id) == []  # the traced telemetry saw none of it either
    (event,) = await written(probe, Topic.PRODUCT_CREATED.value, product["id"])
    assert event["correlation_id"] == correlation
    outbox_trace, outbox_span = event["trace"].split("-")[1:3]
    assert int(outbox_trace, 16) == trace_id  # the caller's trace, under a span id of the request's own
    assert int(outbox_span, 16) != caller_span
