"""A newcomer's view: `eventshop all` serves GraphiQL, health and GraphQL; users and orders flow through."""

from __future__ import annotations

import httpx

from tests.conftest import unique
from tests.e2e.conftest import Client, Process, Subscription, order_of
from tests.integration.shop import place_order, register_customer, stock_product
from tests.integration.test_users import CREATE, READ, UPDATE

ORDER_STATUS = """subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status version totalAmount } }"""


async def test_graphiql_health_and_readiness_are_served(eventshop_all: Process) -> None:
    async with httpx.AsyncClient(base_url=eventshop_all.url) as http:
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = (await http.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert set(ready["checks"]) == {"mysql", "mongodb", "kafka", "feed", "projector", "stock-worker"}


async def test_a_client_creates_and_updates_a_user_and_reads_it_back(client: Client) -> None:
    created = (await client.data(CREATE, input={"name": "Edsger", "email": _email()}))["createUser"]
    updated = (await client.data(UPDATE, id=created["id"], input={"name": "Edsger W."}))["updateUser"]
    seen = (await client.data(READ, id=created["id"], v=updated["version"]))["user"]
    assert seen == {"id": created["id"], "name": "Edsger W.", "email": created["email"], "version": 2}
    assert await client.error_code(CREATE, input={"name": "Again", "email": created["email"]}) == "CONFLICT"
    assert await client.error_code(CREATE, input={"name": "", "email": _email()}) == "BAD_USER_INPUT"


async def test_a_subscriber_watches_an_order_go_from_created_to_paid(client: Client, eventshop_all: Process) -> None:
    user = await register_customer(client, "Sub Scriber")
    lamp = await stock_product(client, "Lamp", "19.90", 5)
    order = await place_order(client, user, (lamp, 2))
    assert order["status"] == "CREATED" and order["totalAmount"] == "39.80"
    await client.data("query($id: ID!) { order(id: $id, minVersion: 1) { id } }", id=order["id"])
    async with Subscription(eventshop_all.url, ORDER_STATUS, {"id": order["id"]}) as sub:
        statuses = [order_of(await sub.next())["status"]]
        if statuses[0] == "CREATED":
            statuses.append(order_of(await sub.next())["status"])
        assert statuses[-1] == "RESERVED"
        await client.data(
            "mutation($id: ID!) { payOrder(id: $id, input: {paymentMethod: PIX}) { status } }", id=order["id"]
        )
        paid = order_of(await sub.next())
    assert paid["status"] == "PAID" and paid["totalAmount"] == "39.80"


def _email() -> str:
    return f"{unique('e2e')}@example.com"
