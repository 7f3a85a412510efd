"""Security over the wire of the running processes: tokens in connection_init, a customer watching
their own orders and refused another's, `eventshop token` for local use, and a production start-up
that refuses the development secret."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import jwt
import websockets

from shared.settings import DEV_JWT_SECRET
from tests.conftest import TEST_JWT_SECRET, eventually
from tests.e2e.conftest import (
    EVENTSHOP,
    ROOT,
    Client,
    Process,
    Subscription,
    free_port,
    place,
    shop,
    subscriptions_open,
)
from tests.integration.access import Live, codes, customer_token
from tests.integration.shop import read_order

ORDER_STATUS = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { id userId status } }"
MY_ORDERS = "subscription { orderUpdates { id userId } }"


async def test_a_customer_watches_their_own_order_and_is_refused_another_users(
    client: Client, eventshop_all: Process
) -> None:
    alice, product = await shop(client)
    bob, _ = await shop(client)
    hers, his = await place(client, alice, product), await place(client, bob, product)
    await read_order(client, hers["id"], min_version=1)  # type: ignore[arg-type]  # Client has the same execute()

    async with Subscription(eventshop_all.url, ORDER_STATUS, {"id": his["id"]}, token=customer_token(alice)) as sub:
        refused = await sub.next()
    assert codes(refused) == ["FORBIDDEN"] and refused["data"] is None, refused

    async with Subscription(
        eventshop_all.url, ORDER_STATUS, {"id": hers["id"]}, protocol="graphql-ws", token=customer_token(alice)
    ) as sub:
        first = await sub.next()
    assert first["data"]["orderStatusChanged"]["userId"] == alice, first


async def test_a_customer_who_names_no_user_watches_only_their_own_orders(
    client: Client, eventshop_all: Process
) -> None:
    alice, product = await shop(client)
    bob, _ = await shop(client)
    baseline = await subscriptions_open(eventshop_all)
    async with Subscription(eventshop_all.url, MY_ORDERS, {}, token=customer_token(alice)) as sub:

        async def subscribed() -> bool:
            return await subscriptions_open(eventshop_all) > baseline

        await eventually(subscribed)
        await place(client, bob, product)  # first, so a leak would arrive first
        hers = await place(client, alice, product)
        seen = (await sub.next(timeout=60))["data"]["orderUpdates"]
    assert seen == {"id": hers["id"], "userId": alice}


async def test_without_a_token_a_websocket_connects_but_may_subscribe_to_nothing(
    client: Client, eventshop_all: Process
) -> None:
    alice, product = await shop(client)
    order = await place(client, alice, product)
    async with Live(eventshop_all.url, ORDER_STATUS, {"id": order["id"]}, token=None) as live:
        assert codes(await live.next()) == ["UNAUTHENTICATED"]


async def test_a_bad_token_in_connection_init_closes_the_connection(eventshop_all: Process) -> None:
    url = eventshop_all.url.replace("http://", "ws://") + "/graphql"
    forged = jwt.encode(
        {"sub": "1", "role": "admin", "iss": "eventshop", "aud": "eventshop", "exp": int(time.time()) + 60},
        "a-guessed-secret-that-is-long-enough-000000",
        algorithm="HS256",
    )
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {forged}"}}))
        try:
            await asyncio.wait_for(ws.recv(), 10)
            raise AssertionError("the connection was acknowledged")
        except websockets.exceptions.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4403
    async with websockets.connect(url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": forged}}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] == "connection_error"
    assert message["payload"]["extensions"]["code"] == "UNAUTHENTICATED" and forged not in json.dumps(message)


async def test_the_handshake_authorization_header_also_authenticates(client: Client, eventshop_all: Process) -> None:
    alice, product = await shop(client)
    bob, _ = await shop(client)
    his = await place(client, bob, product)
    handshake = {"Authorization": f"Bearer {customer_token(alice)}"}
    async with Live(eventshop_all.url, ORDER_STATUS, {"id": his["id"]}, token=None, headers=handshake) as live:
        assert codes(await live.next()) == ["FORBIDDEN"]  # Alice's, not an anonymous caller's refusal


def _token_command(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EVENTSHOP, "token", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


async def test_eventshop_token_prints_a_token_the_gateway_accepts(
    client: Client, eventshop_all: Process, process_env: dict[str, str], tmp_path: Path
) -> None:
    alice, _ = await shop(client)
    bob, _ = await shop(client)
    made = _token_command("--role", "customer", "--user-id", alice, "--ttl", "120", env=process_env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"], audience="eventshop", issuer="eventshop")
    assert claims["sub"] == alice and claims["role"] == "customer" and claims["exp"] - claims["iat"] == 120

    as_alice = Client(eventshop_all.url, token=token)
    try:
        mine = await as_alice.data("query($id: ID!) { user(id: $id) { id } }", id=alice)  # allowed: no error
        assert mine["user"] in (None, {"id": alice})  # None only while the projector has not caught up
        assert await as_alice.error_code("query($id: ID!) { user(id: $id) { id } }", id=bob) == "FORBIDDEN"
    finally:
        await as_alice.http.aclose()

    admin = _token_command("--role", "admin", env=process_env, cwd=tmp_path)
    assert admin.returncode == 0, admin.stderr
    admin_claims = jwt.decode(
        admin.stdout.strip().splitlines()[-1], TEST_JWT_SECRET, algorithms=["HS256"], audience="eventshop"
    )
    assert admin_claims["role"] == "admin"

    without_secret = {k: v for k, v in process_env.items() if k != "JWT_SECRET"}
    refused = _token_command("--role", "admin", env=without_secret, cwd=tmp_path)  # no .env in tmp_path either
    assert refused.returncode != 0 and "JWT_SECRET" in refused.stderr and not refused.stdout.strip()


def test_a_production_gateway_refuses_the_development_secret(
    process_env: dict[str, str], tmp_path: Path, eventshop_all: Process
) -> None:
    env = {**process_env, "ENV": "production", "JWT_SECRET": DEV_JWT_SECRET, "PORT": str(free_port())}
    started = time.monotonic()
    done = subprocess.run([EVENTSHOP, "gateway"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "gateway.refused_to_start" in output, output
    assert DEV_JWT_SECRET not in output and time.monotonic() - started < 30
    # ... while the running system logged its connection strings with the password masked.
    log = eventshop_all.log.read_text()
    assert "eventshop.started" in log and ":***@" in log
