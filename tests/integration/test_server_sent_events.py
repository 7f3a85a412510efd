"""Subscriptions over Server-Sent Events (graphql-sse, distinct connections mode) on a served gateway: a stream
outlives the request timeout that cuts a slow query, and streams count in the per-client subscription cap.

graphql-sse's own JavaScript client follows an order through the real processes in tests/e2e/test_http_clients.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from command.db import WriteDatabase
from projection.queries import ReadModel
from shared.settings import Settings
from tests.conftest import GraphQLClient, bearer, eventually, fed_gateway
from tests.integration.access import codes, served
from tests.integration.shop import PAY_ORDER, place_order, register_customer, stock_product

WATCH = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status version } }"


class EventStream:
    """One SSE response: its `next` events' results, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def result(self) -> dict[str, Any]:
        event = None
        async for line in self.lines:
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "next":
                return json.loads(line.partition(":")[2])  # type: ignore[no-any-return]
            elif line.startswith("data:") and event == "complete":
                raise AssertionError("the stream completed")
        raise AssertionError("the stream ended")


@asynccontextmanager
async def streaming(http: httpx.AsyncClient, query: str, **variables: Any) -> AsyncIterator[httpx.Response]:
    body = {"query": query, "variables": variables}
    async with http.stream("POST", "/graphql", json=body, headers={"Accept": "text/event-stream"}) as response:
        yield response


async def test_a_stream_outlives_the_request_timeout_that_cuts_a_slow_query(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, gql: GraphQLClient, system: Any
) -> None:
    alice = await register_customer(gql, "Streamer")
    order = await place_order(gql, alice, (await stock_product(gql, "Lamp", "20.00", 5), 1))
    impatient = settings.model_copy(update={"request_timeout": 1.0, "read_wait_timeout": 10.0})
    async with (
        fed_gateway(impatient, write_db, read_model) as (app, _),
        served(app) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(settings), timeout=60) as http,
        streaming(http, WATCH, id=order["id"]) as response,
    ):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        stream = EventStream(response)
        seen = [(await stream.result())["data"]["orderStatusChanged"]]
        slow = await http.post("/graphql", json={"query": f'{{ order(id: "{order["id"]}", minVersion: 99) {{ id }} }}'})
        assert slow.status_code == 504 and codes(slow.json()) == ["INTERNAL"]  # REQUEST_TIMEOUT has passed
        while seen[-1]["status"] != "RESERVED":
            seen.append((await stream.result())["data"]["orderStatusChanged"])
        await gql.data(PAY_ORDER, id=order["id"], method="PIX")
        assert (await stream.result())["data"]["orderStatusChanged"]["status"] == "PAID"


async def test_streams_count_in_the_per_client_subscription_cap(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, gql: GraphQLClient, system: Any
) -> None:
    alice = await register_customer(gql, "Capped")
    order = await place_order(gql, alice, (await stock_product(gql, "Mug", "8.00", 5), 1))
    capped = settings.model_copy(update={"max_ws_connections_per_client": 1})
    async with (
        fed_gateway(capped, write_db, read_model) as (app, _),
        served(app) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(settings), timeout=60) as http,
    ):
        async with streaming(http, WATCH, id=order["id"]) as first:
            await EventStream(first).result()
            async with streaming(http, WATCH, id=order["id"]) as second:
                await second.aread()
                assert second.status_code == 429 and codes(json.loads(second.content)) == ["RATE_LIMITED"]

        async def accepted_again() -> bool:
            async with streaming(http, WATCH, id=order["id"]) as again:
                return again.status_code == 200 and bool(await EventStream(again).result())

        assert await eventually(accepted_again, timeout=10)
