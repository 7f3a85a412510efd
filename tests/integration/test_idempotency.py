"""Safe retries: an idempotency key makes createOrder and payOrder act once, however often they are sent."""

from __future__ import annotations

import asyncio

from tests.conftest import GraphQLClient, RunningSystem, WriteModelProbe, unique
from tests.integration.shop import decided, order_input, register_customer, stock_product


async def events_of(probe: WriteModelProbe, topic: str, order_id: str) -> int:
    """How many events of this topic were written for the order (a redelivered one counts once)."""
    return len([e for e in await probe.events.all() if e.topic == topic and e.aggregate_id == int(order_id)])


CREATE = """mutation($input: CreateOrderInput!, $key: String) {
  createOrder(input: $input, idempotencyKey: $key) { id version status }
}"""
PAY = """mutation($id: ID!, $method: PaymentMethod!, $key: String) {
  payOrder(id: $id, input: {paymentMethod: $method}, idempotencyKey: $key) { id version status paymentMethod }
}"""


async def orders_of(probe: WriteModelProbe, user_id: str) -> int:
    return int(await probe.scalar("SELECT COUNT(*) FROM orders WHERE user_id = %s", int(user_id)))


async def test_a_retried_create_order_returns_the_first_order_and_places_one(
    gql: GraphQLClient, probe: WriteModelProbe
) -> None:
    customer = await register_customer(gql)
    lamp = await stock_product(gql, unique("Lamp"), "12.00", 50)
    order = order_input(customer["id"], (lamp["id"], 2))
    key = unique("checkout")
    first = (await gql.data(CREATE, input=order, key=key))["createOrder"]
    again = (await gql.data(CREATE, input=order, key=key))["createOrder"]
    assert again == first
    assert await orders_of(probe, customer["id"]) == 1
    assert await events_of(probe, "order.created", first["id"]) == 1


async def test_concurrent_retries_with_one_key_act_exactly_once(gql: GraphQLClient, probe: WriteModelProbe) -> None:
    customer = await register_customer(gql)
    lamp = await stock_product(gql, unique("Lamp"), "12.00", 50)
    order = order_input(customer["id"], (lamp["id"], 1))
    key = unique("double-click")
    results = await asyncio.gather(*(gql.data(CREATE, input=order, key=key) for _ in range(10)))
    assert len({r["createOrder"]["id"] for r in results}) == 1
    assert await orders_of(probe, customer["id"]) == 1


async def test_one_key_for_a_different_request_is_a_conflict_and_writes_nothing(
    gql: GraphQLClient, probe: WriteModelProbe
) -> None:
    customer = await register_customer(gql)
    lamp = await stock_product(gql, unique("Lamp"), "12.00", 50)
    key = unique("reuse")
    await gql.data(CREATE, input=order_input(customer["id"], (lamp["id"], 1)), key=key)
    before = await probe.high_water()
    assert await gql.error_code(CREATE, input=order_input(customer["id"], (lamp["id"], 2)), key=key) == "CONFLICT"
    assert (await probe.high_water())["orders"] == before["orders"]
    assert await probe.new_events(before, ("order.created",)) == []


async def test_an_expired_key_acts_again(gql: GraphQLClient, probe: WriteModelProbe) -> None:
    customer = await register_customer(gql)
    lamp = await stock_product(gql, unique("Lamp"), "12.00", 50)
    order = order_input(customer["id"], (lamp["id"], 1))
    key = unique("old")
    first = (await gql.data(CREATE, input=order, key=key))["createOrder"]
    async with probe.db.engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE idempotency_keys SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE `key` = %s", (key,)
        )
    second = (await gql.data(CREATE, input=order, key=key))["createOrder"]
    assert second["id"] != first["id"]


async def test_concurrent_retries_of_an_expired_key_act_exactly_once_more(
    gql: GraphQLClient, probe: WriteModelProbe
) -> None:
    """One of them takes the expired key over and places the order again; the others answer with its order."""
    customer = await register_customer(gql)
    lamp = await stock_product(gql, unique("Lamp"), "12.00", 50)
    order = order_input(customer["id"], (lamp["id"], 1))
    key = unique("stale")
    first = (await gql.data(CREATE, input=order, key=key))["createOrder"]
    async with probe.db.engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE idempotency_keys SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE `key` = %s", (key,)
        )
    results = await asyncio.gather(*(gql.data(CREATE, input=order, key=key) for _ in range(8)))
    again = {r["createOrder"]["id"] for r in results}
    assert len(again) == 1 and first["id"] not in again
    assert await orders_of(probe, customer["id"]) == 2


async def test_a_failed_command_does_not_burn_its_key(gql: GraphQLClient, probe: WriteModelProbe) -> None:
    customer = await register_customer(gql)
    lamp = await stock_product(gql, unique("Lamp"), "12.00", 1)
    key = unique("too-many")
    order = order_input(customer["id"], (lamp["id"], 5))
    assert await gql.error_code(CREATE, input=order, key=key) == "INSUFFICIENT_STOCK"
    assert await probe.scalar("SELECT COUNT(*) FROM idempotency_keys WHERE `key` = %s", key) == 0


async def test_a_retried_payment_pays_once(gql: GraphQLClient, probe: WriteModelProbe, system: RunningSystem) -> None:
    customer = await register_customer(gql)
    lamp = await stock_product(gql, unique("Lamp"), "12.00", 5)
    placed = (await gql.data(CREATE, input=order_input(customer["id"], (lamp["id"], 1))))["createOrder"]
    assert await decided(probe, placed["id"]) == "RESERVED"
    key = unique("pay")
    results = await asyncio.gather(*(gql.data(PAY, id=placed["id"], method="PIX", key=key) for _ in range(5)))
    assert len({(r["payOrder"]["version"], r["payOrder"]["status"]) for r in results}) == 1
    assert results[0]["payOrder"]["status"] == "PAID"
    assert await events_of(probe, "order.paid", placed["id"]) == 1
    # Without the key, a second payment is what it is: the order is no longer payable.
    assert await gql.error_code(PAY, id=placed["id"], method="PIX") == "INVALID_STATE"
