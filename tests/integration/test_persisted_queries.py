"""Automatic persisted queries, as Apollo Client's persisted-queries link uses them: the hash first, the query
on PersistedQueryNotFound, then the hash alone; and a persisted query is held to every rule a full one is.

Each test runs its own gateway app (through httpx's ASGI transport, as the `gql` fixture does), so each starts
with an empty store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets

from command.db import WriteDatabase
from gateway.auth import Role
from projection.queries import ReadModel
from shared.settings import Settings
from tests.conftest import GraphQLClient, RunningSystem, WriteModelProbe, asgi_http, gateway_app, token_for, unique
from tests.integration.access import codes, served, sha256
from tests.integration.shop import place_order, register_customer, stock_product

PRODUCTS = "query($first: Int!) { products(first: $first) { nodes { id } pageInfo { hasNextPage } } }"
NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"


def persisted(query: str, sha: str | None = None) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha or sha256(query)}}


class APQClient:
    """Requests as the persisted-queries link sends them, one step at a time, and its whole protocol."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/graphql", json=body)

    async def get(self, params: dict[str, Any]) -> httpx.Response:
        wire = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
        return await self.http.get("/graphql", params=wire, headers={"Accept": "application/json"})

    async def hash_only(self, query: str, *, get: bool = False, **variables: Any) -> dict[str, Any]:
        body = {"extensions": persisted(query), "variables": variables}
        response = await (self.get(body) if get else self.post(body))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def with_query(self, query: str, sha: str | None = None, **variables: Any) -> dict[str, Any]:
        response = await self.post({"query": query, "extensions": persisted(query, sha), "variables": variables})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def execute(self, query: str, *, get: bool = True, **variables: Any) -> dict[str, Any]:
        """The link's protocol: the hash alone (by GET with `useGETForHashedQueries`), and only when the server
        answers PersistedQueryNotFound, the query with its hash (by POST)."""
        body = await self.hash_only(query, get=get, **variables)
        if codes(body) == [NOT_FOUND]:
            body = await self.with_query(query, **variables)
        return body


@asynccontextmanager
async def gateway(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, token: str | None = None, **overrides: Any
) -> AsyncIterator[APQClient]:
    app = gateway_app(settings, write_db, read_model, **overrides)
    async with asgi_http(app, None if token is None else {"Authorization": f"Bearer {token}"}) as http:
        yield APQClient(http)


async def test_an_unknown_hash_is_asked_for_once_then_served_by_hash_by_post_and_get(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    async with gateway(settings, write_db, read_model, token_for(settings)) as apq:
        full = await apq.post({"query": PRODUCTS, "variables": {"first": 2}})  # no APQ at all
        expected = full.json()
        assert "errors" not in expected

        # Unknown: the link is told to send the query (HTTP 200, nothing run).
        unknown = await apq.hash_only(PRODUCTS, first=2)
        assert unknown == {  # a request error: no data entry
            "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": NOT_FOUND}}],
        }
        assert codes(await apq.hash_only(PRODUCTS, get=True, first=2)) == [NOT_FOUND]

        # The query with its hash runs and is remembered; from then on the hash alone is the query.
        assert await apq.with_query(PRODUCTS, first=2) == expected
        assert await apq.hash_only(PRODUCTS, first=2) == expected
        assert await apq.hash_only(PRODUCTS, get=True, first=2) == expected
        assert (await apq.hash_only(PRODUCTS, get=True, first=0))["data"]["products"]["nodes"] == []  # variables

        # The whole protocol for a query the gateway has never seen: one round trip more, the first time only.
        other = "query($first: Int!) { products(first: $first, orderBy: NEWEST) { nodes { id } } }"
        assert "errors" not in await apq.execute(other, first=1)
        assert "errors" not in await apq.hash_only(other, get=True, first=1)

        # GET runs persisted queries only, and no mutation even then (nothing is stored for it either).
        refused = await apq.get({"query": PRODUCTS, "variables": {"first": 1}})
        assert refused.status_code == 400
        mutation = 'mutation { deleteProduct(id: "1") { id } }'
        by_get = await apq.get({"query": mutation, "extensions": persisted(mutation)})
        assert by_get.status_code == 400
        assert codes(await apq.hash_only(mutation)) == [NOT_FOUND]

        # A GET without query or hash is still GraphiQL in a browser.
        page = await apq.http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]


async def test_a_hash_that_does_not_match_its_query_runs_and_stores_nothing(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, probe: WriteModelProbe
) -> None:
    email = f"{unique('apq')}@example.com"
    create = f'mutation {{ createUser(input: {{name: "Mallory", email: "{email}"}}) {{ id }} }}'
    decoy = "{ __typename }"
    async with gateway(settings, write_db, read_model, token_for(settings)) as apq:
        body = await apq.with_query(create, sha=sha256(decoy))
        assert body["errors"] == [
            {"message": "provided sha does not match query", "extensions": {"code": "BAD_USER_INPUT"}}
        ]
        assert await probe.scalar("SELECT COUNT(*) FROM users WHERE email = %s", email) == 0  # not run
        assert codes(await apq.hash_only(decoy)) == [NOT_FOUND]  # not stored under the hash sent
        assert codes(await apq.hash_only(create)) == [NOT_FOUND]  # nor under its own

        # A malformed extension is bad input too.
        for extension in (
            {"persistedQuery": {"version": 2, "sha256Hash": sha256(decoy)}},
            {"persistedQuery": {"version": 1, "sha256Hash": "not-a-hash"}},
            {"persistedQuery": "yes"},
        ):
            response = await apq.post({"query": decoy, "extensions": extension})
            assert codes(response.json()) == ["BAD_USER_INPUT"], extension


async def test_a_persisted_query_meets_the_depth_limit_the_rate_limit_and_the_access_rules_of_a_full_one(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, gql: GraphQLClient, system: RunningSystem
) -> None:
    deep = "{ users { nodes { orders { nodes { items { productId } } } } } }"
    async with gateway(settings, write_db, read_model, token_for(settings), max_query_depth=4) as apq:
        full = (await apq.post({"query": deep})).json()
        assert codes(full) == ["QUERY_REJECTED"]
        assert await apq.with_query(deep) == full  # rejected exactly like the full query
        assert codes(await apq.hash_only(deep)) == [NOT_FOUND]  # and never stored

    # Mutations by hash take from the caller's bucket as full ones do (anonymous: 2 at once, then RATE_LIMITED).
    create = 'mutation { createUser(input: {name: "Anon", email: "anon@example.com"}) { id } }'
    async with gateway(
        settings, write_db, read_model, anonymous_mutation_rate=0.001, anonymous_mutation_burst=2
    ) as anonymous:
        assert codes(await anonymous.with_query(create)) == ["UNAUTHENTICATED"]  # valid, so stored
        assert codes(await anonymous.hash_only(create)) == ["UNAUTHENTICATED"]
        assert codes(await anonymous.hash_only(create)) == ["RATE_LIMITED"]

    # A customer reads their own order by hash, and never another user's.
    ada, bob = await register_customer(gql, "Ada"), await register_customer(gql, "Bob")
    tea = await stock_product(gql, unique("tea"), "3.50", 10)
    hers, his = await place_order(gql, ada, (tea, 1)), await place_order(gql, bob, (tea, 1))
    read = "query($id: ID!) { order(id: $id) { id } }"
    async with gateway(settings, write_db, read_model, token_for(settings, Role.CUSTOMER, ada["id"])) as customer:
        assert codes(await customer.with_query(read, id=his["id"])) == ["FORBIDDEN"]
        assert "errors" not in await customer.hash_only(read, id=hers["id"])  # stored: the document is valid
        assert codes(await customer.hash_only(read, id=his["id"])) == ["FORBIDDEN"]
        assert codes(await customer.hash_only(read, get=True, id=his["id"])) == ["FORBIDDEN"]


async def test_the_store_keeps_the_most_recently_used_queries_up_to_its_bound(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    queries = [f"query Q{n} {{ products(first: {n}) {{ nodes {{ id }} }} }}" for n in range(1, 5)]
    async with gateway(settings, write_db, read_model, token_for(settings), persisted_queries_max=3) as apq:
        for query in queries[:3]:
            assert "errors" not in await apq.with_query(query)
        assert "errors" not in await apq.hash_only(queries[0])  # used again: now the most recent
        assert "errors" not in await apq.with_query(queries[3])  # one too many: the least recently used goes
        assert codes(await apq.hash_only(queries[1])) == [NOT_FOUND]
        for query in (queries[0], queries[2], queries[3]):
            assert "errors" not in await apq.hash_only(query)

    # Off: the link is told so (and sends full queries from then on); full queries work as ever.
    async with gateway(settings, write_db, read_model, token_for(settings), persisted_queries_max=0) as off:
        for body in (await off.hash_only(queries[0]), await off.with_query(queries[0])):
            assert body["errors"] == [
                {"message": "PersistedQueryNotSupported", "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"}}
            ]
        assert "errors" not in (await off.post({"query": queries[0]})).json()


# Per WebSocket protocol: the operation message, the result message and the error message, and how an
# error payload carries its code (graphql-transport-ws: a list of errors; the legacy graphql-ws: one error).
PROTOCOLS = {
    "graphql-transport-ws": ("subscribe", "next", lambda payload: payload[0]["extensions"]["code"]),
    "graphql-ws": ("start", "data", lambda payload: payload["extensions"]["code"]),
}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_a_subscription_can_be_sent_by_hash_over_the_websocket(
    settings: Settings,
    write_db: WriteDatabase,
    read_model: ReadModel,
    gql: GraphQLClient,
    system: RunningSystem,
    protocol: str,
) -> None:
    ada = await register_customer(gql, "Ada")
    tea = await stock_product(gql, unique("tea"), "3.50", 10)
    order = await place_order(gql, ada, (tea, 1))
    watch = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { id } }"
    app = gateway_app(settings, write_db, read_model)
    operation, result, code_of = PROTOCOLS[protocol]

    async with served(app) as url:
        socket = await websockets.connect(url.replace("http", "ws") + "/graphql", subprotocols=[protocol])  # type: ignore[list-item]
        try:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token_for(settings)}"}}
            await socket.send(json.dumps(init))
            assert json.loads(await socket.recv())["type"] == "connection_ack"

            async def send(operation_id: str, payload: dict[str, Any]) -> tuple[str, Any]:
                await socket.send(json.dumps({"id": operation_id, "type": operation, "payload": payload}))
                async with asyncio.timeout(30):
                    while True:
                        message = json.loads(await socket.recv())
                        if message.get("id") == operation_id and message["type"] in (result, "error"):
                            return message["type"], message["payload"]

            variables = {"id": order["id"]}
            kind, payload = await send("1", {"extensions": persisted(watch), "variables": variables})
            assert (kind, code_of(payload)) == ("error", NOT_FOUND)
            kind, payload = await send("2", {"query": watch, "extensions": persisted(watch), "variables": variables})
            assert (kind, payload["data"]["orderStatusChanged"]["id"]) == (result, order["id"])
            kind, payload = await send("3", {"extensions": persisted(watch), "variables": variables})  # remembered
            assert (kind, payload["data"]["orderStatusChanged"]["id"]) == (result, order["id"])
            kind, payload = await send("4", {"query": watch, "extensions": persisted("x"), "variables": variables})
            assert (kind, code_of(payload)) == ("error", "BAD_USER_INPUT")
        finally:
            await socket.close()
