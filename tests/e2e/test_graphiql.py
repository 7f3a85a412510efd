"""A developer in a real browser: GraphiQL from the gateway alone, a query with a token, a live subscription.

Chromium is Debian's (`eventshop devstack browser`, run by `make test`), driven by Playwright; the page
may reach nothing but the gateway, as on a machine without internet.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Locator, Page, Route, async_playwright, expect

from devstack.browser import provision_chromium
from shared.settings import Settings
from tests.e2e.conftest import Client, Process
from tests.integration.access import admin_token
from tests.integration.shop import place_order, register_customer, stock_product

DEADLINE_MS = 20_000
PARSED = """text => {
  const editor = document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror;
  return editor.documentAST !== null && editor.documentAST.loc.source.body === text;
}"""


@pytest.fixture(scope="session")
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    executable = provision_chromium(settings)  # a no-op once `make test` has installed it
    async with async_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        await launched.close()


class GraphiQLPage:
    """GraphiQL as a person uses it: type into the editors, press the run button, read the result pane."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []  # every URL the page asked for
        self.sockets: list[str] = []  # every WebSocket it opened
        self.query_editor = page.locator(".graphiql-query-editor .CodeMirror")
        self.headers_editor = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
        self.run_button = page.locator("button.graphiql-execute-button")
        self.result: Locator = page.locator(".graphiql-response .CodeMirror")

    async def replace(self, editor: Locator, text: str) -> None:
        await editor.click()
        await self.page.keyboard.press("ControlOrMeta+a")
        await self.page.keyboard.insert_text(text)
        await expect(editor).to_contain_text(text.split("\n")[0][:40])

    async def run(self, query: str) -> None:
        await self.replace(self.query_editor, query)
        # GraphiQL parses the editor a moment after each change and picks the transport (POST, or the
        # WebSocket for a subscription) from that parse; a person is never fast enough to notice.
        await self.page.wait_for_function(PARSED, arg=query, timeout=DEADLINE_MS)
        await self.run_button.click()


@pytest.fixture
async def graphiql(
    browser: Browser, eventshop_all: Process, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[GraphiQLPage]:
    origin = urlsplit(eventshop_all.url)
    context = await browser.new_context()
    page = await context.new_page()
    ide = GraphiQLPage(page)
    problems: list[str] = []

    async def offline(route: Route) -> None:  # the gateway is the whole network
        if urlsplit(route.request.url).netloc == origin.netloc:
            await route.continue_()
        else:
            await route.abort()

    await context.route("**/*", offline)
    page.on("request", lambda request: ide.requests.append(request.url))
    page.on("websocket", lambda socket: ide.sockets.append(socket.url))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    try:
        await page.goto(f"{eventshop_all.url}/graphql")
        await expect(ide.run_button).to_be_visible(timeout=DEADLINE_MS)
        failed_before = request.session.testsfailed
        yield ide
        if request.session.testsfailed > failed_before:  # the test failed: keep what the page showed
            await page.screenshot(path=tmp_path / "graphiql.png", full_page=True)
        http = [u for u in ide.requests if not u.startswith("data:")]
        assert http and all(urlsplit(u)[:2] == origin[:2] for u in http), http
        assert all(u == f"ws://{origin.netloc}/graphql" for u in ide.sockets), ide.sockets
        assert not problems, problems
    except BaseException:
        await page.screenshot(path=tmp_path / "graphiql.png", full_page=True)
        raise
    finally:
        await context.close()


async def test_a_developer_runs_a_query_with_a_token_typed_into_the_headers(
    graphiql: GraphiQLPage, client: Client
) -> None:
    user = await register_customer(client, "Grace Hopper")
    await client.data("query($id: ID!) { user(id: $id, minVersion: 1) { id } }", id=user["id"])

    await expect(graphiql.headers_editor).to_contain_text("Bearer <token>")  # the hint the page starts with
    await graphiql.replace(graphiql.headers_editor, json.dumps({"Authorization": f"Bearer {admin_token()}"}))
    await graphiql.run(f'query {{ user(id: "{user["id"]}") {{ id name email }} }}')

    await expect(graphiql.result).to_contain_text('"name": "Grace Hopper"', timeout=DEADLINE_MS)


async def test_a_developer_watches_an_order_get_paid_from_the_page(graphiql: GraphiQLPage, client: Client) -> None:
    user = await register_customer(client, "Live Watcher")
    kettle = await stock_product(client, "Kettle", "24.50", 3)
    order = await place_order(client, user, (kettle, 1))

    await graphiql.replace(graphiql.headers_editor, json.dumps({"Authorization": f"Bearer {admin_token()}"}))
    await graphiql.run(f'subscription {{ orderStatusChanged(orderId: "{order["id"]}") {{ id status version }} }}')
    await expect(graphiql.result).to_contain_text('"status": "RESERVED"', timeout=DEADLINE_MS)  # the stock worker

    await client.data("mutation($id: ID!) { payOrder(id: $id, input: {paymentMethod: PIX}) { id } }", id=order["id"])
    await expect(graphiql.result).to_contain_text('"status": "PAID"', timeout=DEADLINE_MS)
    assert len(graphiql.sockets) == 1  # a live subscription on the gateway's own WebSocket, not a POST
