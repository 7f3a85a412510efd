"""The running gateway as Python's gql client meets it: a customer reads their order over HTTP, gets a refusal
as GraphQL errors with their codes, and watches the order get paid over each WebSocket protocol."""

from __future__ import annotations

import asyncio

import pytest
from gql import Client as GqlClient
from gql import gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from tests.e2e.conftest import Client, Process, pay, place, shop
from tests.integration.access import customer_token

ORDER = gql("query Mine($id: ID!) { order(id: $id, minVersion: 1) { id userId status } }")  # read your write
WATCH = gql("subscription Watch($id: ID!) { orderStatusChanged(orderId: $id) { id status version } }")


async def test_python_gql_reads_and_is_refused_over_http(client: Client, eventshop_all: Process) -> None:
    alice, kettle = await shop(client)
    bob, _ = await shop(client)
    hers, his = await place(client, alice, kettle), await place(client, bob, kettle)
    headers = {"Authorization": f"Bearer {customer_token(alice)}"}
    transport = HTTPXAsyncTransport(url=f"{eventshop_all.url}/graphql", headers=headers)
    async with GqlClient(transport=transport) as session:
        mine = await session.execute(ORDER, variable_values={"id": hers["id"]})
        assert mine["order"]["userId"] == alice
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(ORDER, variable_values={"id": his["id"]})
        assert refused.value.errors is not None and refused.value.errors[0]["extensions"]["code"] == "FORBIDDEN"
        with pytest.raises(TransportQueryError) as invalid:
            await session.execute(gql("{ orders(first: 101) { totalCount } }"))
        assert invalid.value.errors is not None and invalid.value.errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_python_gql_watches_an_order_get_paid(client: Client, eventshop_all: Process, protocol: str) -> None:
    alice, kettle = await shop(client)
    order = await place(client, alice, kettle)
    transport = WebsocketsTransport(
        url=eventshop_all.url.replace("http://", "ws://") + "/graphql",
        init_payload={"Authorization": f"Bearer {customer_token(alice)}"},
        subprotocols=[protocol],
    )
    seen: list[str] = []
    async with GqlClient(transport=transport) as session, asyncio.timeout(60):
        async for result in session.subscribe(WATCH, variable_values={"id": order["id"]}):
            seen.append(result["orderStatusChanged"]["status"])
            if seen[-1] == "RESERVED":
                await pay(client, order["id"])
            if seen[-1] == "PAID":
                break
    assert seen[-2:] == ["RESERVED", "PAID"], seen
