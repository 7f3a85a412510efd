"""Operators' view: every metric on /metrics of `eventshop all`, and one correlation id from request to saga."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import eventually
from tests.e2e.conftest import Client, Process
from tests.events import EventLog
from tests.integration.access import admin_token

METRICS = (
    "eventshop_outbox_backlog",
    "eventshop_outbox_oldest_age_seconds",
    "eventshop_relay_published_total",
    "eventshop_consumer_lag",
    "eventshop_projection_lag_seconds",
    "eventshop_dlq_messages_total",
    "eventshop_graphql_request_duration_seconds",
    "eventshop_subscriptions_active",
)


async def test_metrics_of_every_component_are_on_the_gateway(client: Client, eventshop_all: Process) -> None:
    await client.data(
        'mutation($e: String!) { createUser(input: {name: "Metric", email: $e}) { id } }',
        e=f"metric-{uuid.uuid4().hex[:8]}@example.com",
    )

    async def exposed() -> list[str]:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{eventshop_all.url}/metrics")).text
        missing = [m for m in METRICS if f"# TYPE {m} " not in text]
        return [] if missing else ["ok"]

    await eventually(exposed, timeout=30)


async def test_one_correlation_id_follows_an_order_through_the_outbox_kafka_and_the_stock_worker(
    eventshop_all: Process, event_log: EventLog
) -> None:
    cid = f"checkout-{uuid.uuid4().hex[:8]}"
    headers = {"X-Correlation-ID": cid, "Authorization": f"Bearer {admin_token()}"}
    async with httpx.AsyncClient(base_url=eventshop_all.url, headers=headers) as http:

        async def run(query: str, **variables: object) -> dict:
            response = await http.post("/graphql", json={"query": query, "variables": variables})
            assert response.headers["x-correlation-id"] == cid
            body = response.json()
            assert "errors" not in body, body
            return body["data"]

        user = (
            await run(
                'mutation($e: String!) { createUser(input: {name: "Trace", email: $e}) { id } }',
                e=f"trace-{uuid.uuid4().hex[:8]}@example.com",
            )
        )["createUser"]
        product = (await run('mutation { createProduct(input: {name: "Trace", price: "1.00", stock: 3}) { id } }'))[
            "createProduct"
        ]
        order = (
            await run(
                "mutation($u: ID!, $p: ID!) { createOrder(input: {userId: $u, items: "
                "[{productId: $p, quantity: 1}]}) { id } }",
                u=user["id"],
                p=product["id"],
            )
        )["createOrder"]
    ours = {("order", int(order["id"])), ("product", int(product["id"]))}

    async def saga_events() -> list[tuple[str, str]]:
        found = [
            (e.topic, e.envelope["correlation_id"])
            for e in await event_log.all()
            if (e.aggregate_type, e.aggregate_id) in ours
        ]
        return found if any(t == "order.reserved" for t, _ in found) else []

    events = await eventually(saga_events, timeout=30)
    # The order's creation and the stock worker's reaction, through Kafka, carry the request's id.
    assert {t for t, _ in events} >= {"product.created", "order.created", "stock.reserved", "order.reserved"}
    assert {c for _, c in events} == {cid}
