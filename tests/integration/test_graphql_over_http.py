"""GraphQL over HTTP as the specification describes it: every answer a GraphQL response, in the media type the
client accepts, with the status that type asks for; whatever arrives, nothing answers 5xx or writes anything.

The reference audit suite of the specification runs against a real gateway in tests/e2e/test_http_audit.py;
these tests check the same rules from Python, through the whole app (middleware included), in-process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from command.db import WriteDatabase
from gateway.endpoint import EventshopGraphQL
from gateway.media import MediaType, negotiate
from projection.queries import ReadModel
from shared.settings import Settings
from tests.conftest import WriteModelProbe, asgi_http, bearer, fed_gateway

GRAPHQL_RESPONSE = "application/graphql-response+json"
RESPONSE_TYPES = (GRAPHQL_RESPONSE, "application/json")


@pytest.fixture(scope="module")
async def http(settings: Settings, write_db: WriteDatabase, read_model: ReadModel) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's HTTP client of the whole gateway app, in-process."""
    async with fed_gateway(settings, write_db, read_model) as (app, _):
        async with asgi_http(app, bearer(settings)) as c:
            yield c


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    """(status, media type, the one error code) of a GraphQL response carrying errors and no `data` entry."""
    body = response.json()
    assert "data" not in body, body
    (error,) = body["errors"]
    assert isinstance(error["message"], str) and error["message"], body
    return response.status_code, response.headers["content-type"], error["extensions"]["code"]


async def post(http: httpx.AsyncClient, body: Any, accept: str | None = GRAPHQL_RESPONSE) -> httpx.Response:
    headers = {"Content-Type": "application/json", **({"Accept": accept} if accept else {})}
    return await http.post("/graphql", content=json.dumps(body), headers=headers)


def test_the_answer_is_in_the_accepted_media_type_of_highest_quality() -> None:
    assert negotiate(None) is MediaType.JSON
    assert negotiate("") is MediaType.JSON
    assert negotiate("*/*") is MediaType.JSON
    assert negotiate("text/html") is MediaType.JSON  # nothing we offer: the default, not a refusal
    assert negotiate(GRAPHQL_RESPONSE) is MediaType.GRAPHQL_RESPONSE
    assert negotiate(f"{GRAPHQL_RESPONSE}, application/json;q=0.9") is MediaType.GRAPHQL_RESPONSE
    assert negotiate(f"application/json, {GRAPHQL_RESPONSE}") is MediaType.JSON  # equal q: first listed
    assert negotiate(f"application/json;q=0.5, {GRAPHQL_RESPONSE}") is MediaType.GRAPHQL_RESPONSE
    assert negotiate(f"{GRAPHQL_RESPONSE};q=0, */*") is MediaType.JSON
    assert negotiate(f"{GRAPHQL_RESPONSE};q=nonsense") is MediaType.JSON


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{"}, "BAD_USER_INPUT"),  # does not parse
        ({"query": "{ noSuchField }"}, "BAD_USER_INPUT"),  # does not validate
        ({"query": "query($id: ID!) { product(id: $id) { id } }", "variables": {"id": None}}, "BAD_USER_INPUT"),
        ({"query": "{ " + " ".join("__typename" for _ in range(3000)) + " }"}, "QUERY_REJECTED"),  # token limit
    ],
    ids=["parse", "validation", "variable coercion", "token limit"],
)
async def test_a_request_error_has_no_data_and_is_400_in_graphql_response_json_200_in_json(
    http: httpx.AsyncClient, probe: WriteModelProbe, body: dict[str, Any], code: str
) -> None:
    before = await probe.high_water()
    assert refusal(await post(http, body)) == (400, GRAPHQL_RESPONSE, code)
    assert refusal(await post(http, body, accept="application/json")) == (200, "application/json", code)
    assert refusal(await post(http, body, accept=None)) == (200, "application/json", code)
    assert await probe.high_water() == before and await probe.events_since(before) == []


async def test_a_well_formed_request_answers_200_in_either_media_type(http: httpx.AsyncClient) -> None:
    for accept in (GRAPHQL_RESPONSE, "application/json", "*/*", None):
        response = await post(http, {"query": "query Q { __typename }", "operationName": "Q"}, accept=accept)
        assert response.status_code == 200 and response.json() == {"data": {"__typename": "Query"}}
        assert response.headers["content-type"] == (
            GRAPHQL_RESPONSE if accept == GRAPHQL_RESPONSE else "application/json"
        )


async def test_a_field_error_keeps_its_data_entry_and_answers_200(http: httpx.AsyncClient) -> None:
    response = await post(http, {"query": '{ product(id: "not-a-number") { id } }'})
    body = response.json()
    assert response.status_code == 200 and body["data"] == {"product": None}, body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT" and body["errors"][0]["path"] == ["product"]


@pytest.mark.parametrize(
    "raw",
    [b"123", b"null", b'"x"', b"true", b'{ "not a JSON', b"", b"\xff\xfe\x00garbage", b"[" * 50_000],
    ids=["number", "null", "string", "boolean", "malformed", "empty", "not unicode", "deeply nested"],
)
async def test_a_body_that_is_no_json_object_is_a_400_graphql_response(
    http: httpx.AsyncClient, probe: WriteModelProbe, raw: bytes
) -> None:
    before = await probe.high_water()
    for accept in RESPONSE_TYPES:
        response = await http.post(
            "/graphql", content=raw, headers={"Content-Type": "application/json", "Accept": accept}
        )
        assert refusal(response) == (400, accept, "BAD_USER_INPUT")
    assert await probe.high_water() == before and await probe.events_since(before) == []


@pytest.mark.parametrize(
    "body",
    [
        [{"query": "{ __typename }"}, {"query": "{ __typename }"}],  # a batch
        {"notquery": "{ __typename }"},
        {"query": {"obj": "ect"}},
        {"query": "{ __typename }", "operationName": 0},
        {"query": "{ __typename }", "variables": "string"},
        {"query": "{ __typename }", "extensions": ["array"]},
        {"query": "query A { __typename } query B { __typename }", "operationName": "C"},
    ],
    ids=[
        "batch",
        "no query",
        "query object",
        "operationName number",
        "variables string",
        "extensions array",
        "unknown operation",
    ],
)
async def test_parameters_of_the_wrong_shape_are_a_400_graphql_response(http: httpx.AsyncClient, body: Any) -> None:
    for accept in RESPONSE_TYPES:
        assert refusal(await post(http, body, accept=accept)) == (400, accept, "BAD_USER_INPUT")


async def test_other_methods_and_content_types_are_refused_as_graphql_responses(http: httpx.AsyncClient) -> None:
    put = await http.put("/graphql", json={"query": "{ __typename }"}, headers={"Accept": GRAPHQL_RESPONSE})
    assert refusal(put) == (405, GRAPHQL_RESPONSE, "BAD_USER_INPUT") and put.headers["allow"] == "GET, POST"
    text = await http.post("/graphql", content="{ __typename }", headers={"Content-Type": "text/plain"})
    assert refusal(text) == (415, "application/json", "BAD_USER_INPUT")
    untyped = await http.post("/graphql", content=b'{"query": "{ __typename }"}', headers={"Content-Type": ""})
    assert refusal(untyped)[:2] == (415, "application/json")
    get = await http.get("/graphql", params={"query": "{ __typename }"}, headers={"Accept": "application/json"})
    assert refusal(get) == (400, "application/json", "BAD_USER_INPUT")  # GET runs persisted queries only
    variables = await http.get("/graphql", params={"extensions": "{", "query": "x"}, headers={"Accept": "*/*"})
    assert refusal(variables) == (400, "application/json", "BAD_USER_INPUT")


async def test_the_guards_in_front_of_graphql_answer_in_the_accepted_media_type(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    small = settings.model_copy(update={"max_body_bytes": 64})
    async with fed_gateway(small, write_db, read_model) as (app, _):
        async with asgi_http(app) as c:
            response = await post(c, {"query": "{ " + "__typename " * 20 + "}"})
    assert refusal(response) == (413, GRAPHQL_RESPONSE, "QUERY_REJECTED")


# What arrives at /graphql, anything at all: methods, content types, Accept headers, query strings and bodies,
# some of them GraphQL requests with wrong parts, most of them not.
ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
DOCUMENTS = st.sampled_from(
    [
        "{ __typename }",
        "{ products(first: 2) { nodes { id name } } }",
        "query($id: ID!) { product(id: $id) { id } }",
        'mutation { deleteProduct(id: "1") { id } }',
        "subscription { orderUpdates { id } }",
        "{ __schema { types { name } } }",
        "{",
        "query A { __typename } query B { __typename }",
    ]
) | st.text(max_size=60)
GRAPHQL_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "query": DOCUMENTS | JSON_VALUES,
        "variables": JSON_VALUES,
        "operationName": st.sampled_from(["A", "B", ""]) | JSON_VALUES,
        "extensions": JSON_VALUES | st.just({"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}),
    },
)
BODIES = (
    GRAPHQL_SHAPED.map(lambda body: json.dumps(body).encode())
    | JSON_VALUES.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=200)
)
CONTENT_TYPES = (
    st.none()
    | st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "multipart/form-data",
            "application/graphql",
        ]
    )
    | ASCII
)
ACCEPTS = st.none() | st.sampled_from([GRAPHQL_RESPONSE, "application/json", "*/*", "text/html", ""]) | ASCII
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
QUERY_STRINGS = st.dictionaries(
    st.sampled_from(["query", "variables", "extensions", "operationName"]) | ASCII, DOCUMENTS | ASCII, max_size=3
)


@hypothesis_settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(method=METHODS, content_type=CONTENT_TYPES, accept=ACCEPTS, params=QUERY_STRINGS, body=BODIES)
async def test_whatever_arrives_the_answer_is_a_graphql_response_and_never_a_5xx(
    anonymous: httpx.AsyncClient,
    method: str,
    content_type: str | None,
    accept: str | None,
    params: dict[str, str],
    body: bytes,
) -> None:
    headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v is not None}
    response = await anonymous.request(
        method, "/graphql", params=params, content=None if method == "GET" else body, headers=headers
    )
    assert response.status_code < 500, response.text
    media = response.headers["content-type"]
    if method == "GET" and media.startswith("text/html"):
        return  # a browser's visit: GraphiQL
    assert media in RESPONSE_TYPES, (media, response.text)
    answer = response.json()
    assert isinstance(answer, dict) and set(answer) <= {"data", "errors", "extensions"}, answer
    if response.status_code != 200:
        assert "data" not in answer and answer["errors"], answer
    for error in answer.get("errors", []):
        assert isinstance(error["message"], str) and isinstance(error["extensions"]["code"], str), error


@pytest.fixture(scope="module")
async def anonymous(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, event_log: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a token (so no generated mutation could write anything), and proof afterwards that
    nothing was written."""
    probe = WriteModelProbe(write_db, event_log)
    before = await probe.high_water()
    async with fed_gateway(settings, write_db, read_model) as (app, _):
        async with asgi_http(app) as c:
            yield c
    assert await probe.high_water() == before and await probe.events_since(before) == []


async def test_a_fault_of_the_gateway_itself_is_a_masked_graphql_error_with_a_correlation_id(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: EventshopGraphQL, request: Any, response: Any = None) -> Any:
        raise RuntimeError("mysql://root:hunter2@db is gone")

    monkeypatch.setattr(EventshopGraphQL, "get_context", broken)
    async with fed_gateway(settings, write_db, read_model) as (app, _):
        async with asgi_http(app) as c:
            response = await post(c, {"query": "{ __typename }"})
    assert refusal(response) == (500, GRAPHQL_RESPONSE, "INTERNAL") and "hunter2" not in response.text
    assert response.json()["errors"][0]["extensions"]["correlation_id"]
