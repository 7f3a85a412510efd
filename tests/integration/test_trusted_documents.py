"""Trusted documents: the manifest built from the clients' operations, and a gateway that runs those alone,
whichever way a client names them, and nothing else (no APQ registration either)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from typer.testing import CliRunner

from command.db import WriteDatabase
from eventshop.cli import app as cli
from gateway.trusted import ManifestError
from projection.queries import ReadModel
from shared.settings import Settings
from tests.conftest import WriteModelProbe, asgi_http, bearer, eventually, fed_gateway, unique
from tests.integration.access import codes, served, sha256

PRODUCTS = "query Products($first: Int!) { products(first: $first) { nodes { id } } }\n"
CREATE_USER = "mutation SignUp($input: CreateUserInput!) { createUser(input: $input) { id } }\n"
UNTRUSTED = "{ users(first: 100) { nodes { id email } } }"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """The storefront's two operations, as `eventshop trusted-documents build` writes their manifest."""
    client = tmp_path / "storefront"
    client.mkdir()
    (client / "products.graphql").write_text(PRODUCTS)
    (client / "sign_up.graphql").write_text(CREATE_USER)
    output = tmp_path / "trusted-documents.json"
    result = CliRunner().invoke(cli, ["trusted-documents", "build", str(client), "-o", str(output)])
    assert result.exit_code == 0, result.output
    return output


def test_the_manifest_maps_each_documents_sha256_to_its_text_as_the_client_sends_it(manifest: Path) -> None:
    assert json.loads(manifest.read_text()) == {
        f"sha256:{sha256(PRODUCTS)}": PRODUCTS,
        f"sha256:{sha256(CREATE_USER)}": CREATE_USER,
    }


def test_an_invalid_operation_or_a_forged_manifest_is_refused_by_name(manifest: Path, tmp_path: Path) -> None:
    typo = tmp_path / "typo.graphql"
    typo.write_text("{ products { nodez { id } } }")
    result = CliRunner().invoke(cli, ["trusted-documents", "build", str(typo), "-o", str(tmp_path / "out.json")])
    assert result.exit_code == 1 and "typo.graphql" in result.output and not (tmp_path / "out.json").exists()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({f"sha256:{sha256(PRODUCTS)}": UNTRUSTED}))
    result = CliRunner().invoke(cli, ["trusted-documents", "build", str(manifest), str(forged), "-o", str(typo)])
    assert result.exit_code == 1 and "forged.json" in result.output


@asynccontextmanager
async def trusting(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, manifest: Path
) -> AsyncIterator[httpx.AsyncClient]:
    only_trusted = settings.model_copy(update={"trusted_documents": manifest})
    async with fed_gateway(only_trusted, write_db, read_model) as (app, _):
        async with asgi_http(app, bearer(settings)) as c:
            yield c


async def answer(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    return (await http.post("/graphql", json=body)).json()  # type: ignore[no-any-return]


async def test_a_trusted_document_runs_however_the_client_names_it(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, manifest: Path
) -> None:
    variables = {"first": 1}
    apq = {"persistedQuery": {"version": 1, "sha256Hash": sha256(PRODUCTS)}}
    async with trusting(settings, write_db, read_model, manifest) as http:
        for body in (
            {"documentId": f"sha256:{sha256(PRODUCTS)}", "variables": variables},
            {"documentId": sha256(PRODUCTS), "variables": variables},
            {"extensions": apq, "variables": variables},  # Apollo's link, hashes from the manifest
            {"query": PRODUCTS, "variables": variables},  # the text itself, when it is a trusted one
        ):
            assert "products" in (await answer(http, body)).get("data", {}), body
        by_get = await http.get(
            "/graphql", params={"documentId": f"sha256:{sha256(PRODUCTS)}", "variables": json.dumps(variables)}
        )
        assert by_get.status_code == 200 and "products" in by_get.json()["data"]


async def test_nothing_else_runs_and_nothing_is_registered(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, manifest: Path, probe: WriteModelProbe
) -> None:
    before = await probe.high_water()
    sign_up = {"input": {"name": "Mallory", "email": f"{unique('mallory')}@example.com"}}
    other_mutation = "mutation($input: CreateUserInput!) { createUser(input: $input) { id email } }"
    register = {"persistedQuery": {"version": 1, "sha256Hash": sha256(UNTRUSTED)}}
    async with trusting(settings, write_db, read_model, manifest) as http:
        for body in (
            {"query": UNTRUSTED},
            {"query": other_mutation, "variables": sign_up},
            {"documentId": f"sha256:{sha256(UNTRUSTED)}"},
            {"query": UNTRUSTED, "extensions": register},  # APQ registration: refused
            {"extensions": register},  # and so never learnt
        ):
            refused = await answer(http, body)
            assert codes(refused) == ["QUERY_REJECTED"] and "data" not in refused, (body, refused)
        mismatch = await answer(http, {"documentId": sha256(PRODUCTS), "query": UNTRUSTED})
        assert codes(mismatch) == ["BAD_USER_INPUT"]
        stream = await http.post(
            "/graphql", json={"query": "subscription { orderUpdates { id } }"}, headers={"Accept": "text/event-stream"}
        )
        assert stream.headers["content-type"].startswith("text/event-stream") and "QUERY_REJECTED" in stream.text
    assert await probe.high_water() == before and await probe.events_since(before) == []


async def test_a_manifest_whose_ids_are_not_their_documents_hashes_stops_the_gateway_at_start(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, tmp_path: Path
) -> None:
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({f"sha256:{sha256(PRODUCTS)}": UNTRUSTED}))
    with pytest.raises(ManifestError, match="forged.json"):
        async with trusting(settings, write_db, read_model, forged):
            pass


async def test_without_a_manifest_a_document_id_names_a_query_the_gateway_learnt_by_apq(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    async with fed_gateway(settings, write_db, read_model) as (app, _):
        async with asgi_http(app, bearer(settings)) as http:
            by_id = {"documentId": f"sha256:{sha256(PRODUCTS)}", "variables": {"first": 1}}
            assert codes(await answer(http, by_id)) == ["PERSISTED_QUERY_NOT_FOUND"]
            learn = {"query": PRODUCTS, "variables": {"first": 1}}
            learn["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": sha256(PRODUCTS)}}
            assert "errors" not in await answer(http, learn)
            assert "products" in (await answer(http, by_id))["data"]


async def test_over_a_websocket_a_subscription_runs_only_as_a_trusted_document(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, tmp_path: Path
) -> None:
    watch = "subscription Watch { orderUpdates { id } }\n"
    (tmp_path / "watch.graphql").write_text(watch)
    manifest = tmp_path / "manifest.json"
    assert CliRunner().invoke(cli, ["trusted-documents", "build", str(tmp_path), "-o", str(manifest)]).exit_code == 0
    only_trusted = settings.model_copy(update={"trusted_documents": manifest})
    async with fed_gateway(only_trusted, write_db, read_model) as (app, feed), served(app) as url:
        async with websockets.connect(
            url.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]
        ) as ws:  # type: ignore[list-item]
            await ws.send(
                json.dumps({"type": "connection_init", "payload": {"Authorization": bearer(settings)["Authorization"]}})
            )
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            untrusted = {"query": "subscription { orderUpdates { id userId } }"}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": untrusted}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert refused["type"] == "error" and codes({"errors": refused["payload"]}) == ["QUERY_REJECTED"], refused
            await ws.send(
                json.dumps({"id": "2", "type": "subscribe", "payload": {"documentId": f"sha256:{sha256(watch)}"}})
            )

            async def listening() -> bool:
                return feed.listener_count > 0

            assert await eventually(listening)  # subscribed: its listener is on the feed
