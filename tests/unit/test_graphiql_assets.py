"""GraphiQL is self-hosted: pinned files that match their manifest, a page that names nothing off the gateway."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.endpoint import EventshopGraphQL
from gateway.ide import IMMUTABLE, STATIC_DIR, GraphiQLPage, assets_mount, load_manifest, sha384
from tests.conftest import asgi_http, make_test_settings

ROOT = Path(__file__).resolve().parents[2]
LOCK = json.loads((ROOT / "gateway" / "graphiql" / "package-lock.json").read_text())
MANIFEST = load_manifest()


def test_every_vendored_file_matches_its_manifest_entry_and_the_npm_lock() -> None:
    vendored = {p.name for p in (STATIC_DIR / "vendor").iterdir()} - {"manifest.json"}
    assert vendored == set(MANIFEST)
    for name, entry in MANIFEST.items():
        data = (STATIC_DIR / "vendor" / name).read_bytes()
        assert sha384(data) == entry["integrity"] and len(data) == entry["bytes"], name
        assert LOCK["packages"][f"node_modules/{entry['package']}"]["version"] == entry["version"], name


def test_the_npm_lock_pins_hashes_and_names_no_registry() -> None:
    packages = {k: v for k, v in LOCK["packages"].items() if k}
    assert packages and all(p.get("integrity", "").startswith("sha512-") for p in packages.values())
    assert not any("resolved" in p for p in packages.values())


async def _get(app: Starlette, path: str, **headers: str) -> httpx.Response:
    async with asgi_http(app) as http:
        return await http.get(path, headers=headers)


@pytest.fixture
def ide_app() -> Starlette:
    graphql = EventshopGraphQL(None, None, None, make_test_settings())  # type: ignore[arg-type]  # no request runs
    return Starlette(routes=[Route("/graphql", graphql, methods=["GET", "POST"]), assets_mount()])


async def test_a_browser_asking_for_graphql_gets_the_self_hosted_page(ide_app: Starlette) -> None:
    page = await _get(ide_app, "/graphql", accept="text/html,application/xhtml+xml")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    assert "ws://gateway" in policy
    tags = re.findall(r"<(?:script|link rel=\"stylesheet\")[^>]*>", page.text)
    assert len(tags) == len(GraphiQLPage().scripts) + len(GraphiQLPage().styles)
    for tag in tags:
        url = re.search(r'(?:src|href)="([^"]+)"', tag)
        integrity = re.search(r'integrity="(sha384-[^"]+)"', tag)
        assert url and integrity and url[1].startswith("/graphiql/"), tag  # same origin, pinned
        served = await _get(ide_app, url[1].replace("&amp;", "&"))
        assert served.status_code == 200 and sha384(served.content) == integrity[1], tag
        assert served.headers["cache-control"] == IMMUTABLE
    for name in ("graphiql.min.js", "react.production.min.js", "react-dom.production.min.js", "graphiql.min.css"):
        assert f'integrity="{MANIFEST[name]["integrity"]}"' in page.text
    assert "<script>" not in page.text and "://" not in page.text  # no inline code, no other host


async def test_graphql_clients_do_not_get_the_page(ide_app: Starlette) -> None:
    response = await _get(ide_app, "/graphql", accept="application/json")
    assert "text/html" not in response.headers.get("content-type", "")
