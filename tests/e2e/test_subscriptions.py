"""Live reads across processes: a client subscribed on one gateway sees what another gateway changed."""

from __future__ import annotations

import asyncio

from tests.conftest import eventually
from tests.e2e.conftest import Client, Process, Subscription, order_of, pay, place, shop, subscriptions_open

ORDER_STATUS = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status version } }"
ORDER_UPDATES = "subscription($u: ID) { orderUpdates(userId: $u) { id status version } }"
ORDER_WITH_USER = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { id version user { name } } }"


async def reserved(client: Client, order_id: str) -> None:
    await client.data("query($id: ID!) { order(id: $id, minVersion: 2) { id } }", id=order_id)


async def test_a_subscriber_on_one_gateway_sees_changes_made_through_another(
    client: Client, second_gateway: Process
) -> None:
    user_id, product_id = await shop(client)
    order = await place(client, user_id, product_id)
    async with Subscription(second_gateway.url, ORDER_STATUS, {"id": order["id"]}) as sub:
        seen = [order_of(await sub.next())]
        while seen[-1]["status"] != "RESERVED":
            seen.append(order_of(await sub.next()))
        await pay(client, order["id"])
        seen.append(order_of(await sub.next()))
    assert [s["status"] for s in seen][-2:] == ["RESERVED", "PAID"]
    assert [s["status"] for s in seen][0] in ("CREATED", "RESERVED")
    versions = [s["version"] for s in seen]
    assert versions == sorted(set(versions))  # in order, never a duplicate or a step back


async def test_a_late_subscriber_gets_the_current_state_first(client: Client, eventshop_all: Process) -> None:
    user_id, product_id = await shop(client)
    order = await place(client, user_id, product_id)
    await reserved(client, order["id"])
    await pay(client, order["id"])
    await client.data("query($id: ID!) { order(id: $id, minVersion: 3) { id } }", id=order["id"])
    async with Subscription(eventshop_all.url, ORDER_STATUS, {"id": order["id"]}, protocol="graphql-ws") as sub:
        first = order_of(await sub.next())
    assert first == {"id": order["id"], "status": "PAID", "version": 3}


async def test_a_subscriber_sees_the_new_name_of_the_user_who_placed_the_order(
    client: Client, second_gateway: Process
) -> None:
    """A rename writes the users view and no order: the feed sends the watched order again, with its new user."""
    user_id, product_id = await shop(client)
    order = await place(client, user_id, product_id)
    await reserved(client, order["id"])  # no order event is still on its way
    async with Subscription(second_gateway.url, ORDER_WITH_USER, {"id": order["id"]}) as sub:
        first = order_of(await sub.next())
        assert first == {"id": order["id"], "version": 2, "user": {"name": "Live"}}
        await client.data(
            'mutation($id: ID!) { updateUser(id: $id, input: {name: "Live Renamed"}) { id } }', id=user_id
        )
        renamed = order_of(await sub.next())
    assert renamed == {"id": order["id"], "version": 2, "user": {"name": "Live Renamed"}}


async def test_subscribing_to_an_unknown_order_is_not_found(eventshop_all: Process) -> None:
    async with Subscription(eventshop_all.url, ORDER_STATUS, {"id": "987654321"}) as sub:
        result = await sub.next()
    assert result["errors"][0]["extensions"]["code"] == "NOT_FOUND", result


async def test_order_updates_streams_every_order_of_one_user(client: Client, eventshop_all: Process) -> None:
    user_id, product_id = await shop(client)
    other_user, _ = await shop(client)
    async with Subscription(eventshop_all.url, ORDER_UPDATES, {"u": user_id}) as sub:
        await asyncio.sleep(0)  # the subscribe frame is on the wire before the first write
        await _subscribed(eventshop_all, 1)
        mine = await place(client, user_id, product_id)
        await place(client, other_user, product_id)
        seen = [order_of(await sub.next(), "orderUpdates")]
        while seen[-1]["status"] != "RESERVED":
            seen.append(order_of(await sub.next(), "orderUpdates"))
    assert {s["id"] for s in seen} == {mine["id"]}


async def test_two_hundred_subscribers_all_receive_every_change_and_leave_nothing_behind(
    client: Client, eventshop_all: Process
) -> None:
    user_id, product_id = await shop(client)
    order = await place(client, user_id, product_id)
    await reserved(client, order["id"])
    baseline = await subscriptions_open(eventshop_all)
    subs = [Subscription(eventshop_all.url, ORDER_STATUS, {"id": order["id"]}) for _ in range(200)]
    await asyncio.gather(*(s.__aenter__() for s in subs))
    try:
        firsts = await asyncio.gather(*(s.next() for s in subs))
        assert {order_of(m)["status"] for m in firsts} == {"RESERVED"}
        await _subscribed(eventshop_all, baseline + 200)
        await pay(client, order["id"])
        paid = await asyncio.gather(*(s.next() for s in subs))
        assert [order_of(m)["status"] for m in paid] == ["PAID"] * 200
    finally:
        await asyncio.gather(*(s.__aexit__(None, None, None) for s in subs))
    await _subscribed(eventshop_all, baseline)


async def _subscribed(process: Process, expected: int, timeout: float = 20.0) -> None:
    async def settled() -> bool:
        return await subscriptions_open(process) == expected

    await eventually(settled, timeout=timeout)
