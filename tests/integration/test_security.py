"""Who may do what, told as a table: every operation of the schema against every role (anonymous, the
customer who owns what is touched, another customer, an admin, the storefront's service token). Then the
tokens that must be refused, and the abuse limits: the mutation budget of each kind of caller, WebSocket
connections per client, introspection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from graphql import build_schema
from starlette.applications import Starlette

from command.db import WriteDatabase
from gateway.auth import STOREFRONT_SCOPES
from gateway.feed import ViewFeed
from gateway.policy import RULES
from gateway.schema import create_schema
from projection.queries import ReadModel
from shared.events import encode_view_change
from shared.settings import Settings
from tests.conftest import (
    GraphQLClient,
    RunningSystem,
    WriteModelProbe,
    asgi_http,
    eventually,
    fed_gateway,
    gateway_app,
    unique,
)
from tests.integration.access import (
    ADMIN,
    ANONYMOUS,
    FORBIDDEN,
    OK,
    OTHER,
    OWNER,
    ROLES,
    STOREFRONT,
    UNAUTHENTICATED,
    Live,
    admin_token,
    claims,
    client,
    codes,
    customer_token,
    hand_made,
    served,
    service_token,
    signed,
)
from tests.integration.shop import (
    CREATE_ORDER,
    NOTHING_FOR_PRODUCT,
    decided,
    order_input,
    place_order,
    products_written,
    read_order,
    register_customer,
    stock_product,
    write_row,
)

# --- The world every row of the table acts on ------------------------------------------------------------


@dataclass
class World:
    url: str
    feed: ViewFeed
    admin: GraphQLClient
    probe: WriteModelProbe
    owner: dict[str, Any]  # Olivia, a customer with a reserved order
    other: dict[str, Any]  # Oscar, another customer
    product: dict[str, Any]
    order: dict[str, Any]  # Olivia's, reserved and in the read model
    read_model: ReadModel
    versions: int = 0  # versions announced by the tests themselves


@pytest.fixture(scope="module")
async def gateway(settings: Settings, write_db: WriteDatabase, read_model: ReadModel) -> AsyncIterator[World]:
    """The gateway on a real port (HTTP + WebSocket), with its own `views.changed` feed."""
    async with fed_gateway(settings, write_db, read_model) as (app, feed), served(app) as url:
        admin = client(url, admin_token())
        yield World(url, feed, admin, WriteModelProbe(write_db), {}, {}, {}, {}, read_model)
        await admin.http.aclose()


@pytest.fixture(scope="module")
async def world(gateway: World, system: RunningSystem) -> World:
    w = gateway
    w.owner = await register_customer(w.admin, "Olivia Owner")
    w.other = await register_customer(w.admin, "Oscar Other")
    w.product = await stock_product(w.admin, unique("widget"), "2.50", 1_000_000)
    w.order = await reserved_order(w)
    await w.admin.data("query($id: ID!) { user(id: $id, minVersion: 1) { id } }", id=w.owner["id"])
    return w


async def reserved_order(w: World) -> dict[str, Any]:
    order = await place_order(w.admin, w.owner, (w.product, 1))
    assert await decided(w.probe, order["id"]) == "RESERVED"
    return await read_order(w.admin, order["id"], min_version=2) or {}


# --- One row per operation --------------------------------------------------------------------------------


@dataclass
class Target:
    """What one row acts on: its variables, the customer who owns it, and what a refusal must leave as it is."""

    variables: dict[str, Any]
    owner_id: str
    state: Callable[[], Awaitable[Any]] | None = None


@dataclass(frozen=True)
class Case:
    operation: str  # "Type.field", as in gateway/policy.py RULES
    document: str
    expect: dict[str, str]
    prepare: Callable[[World], Awaitable[Target]]


EVERYONE = {ANONYMOUS: OK, OWNER: OK, OTHER: OK, ADMIN: OK, STOREFRONT: OK}
OWNER_OR_STAFF = {ANONYMOUS: UNAUTHENTICATED, OWNER: OK, OTHER: FORBIDDEN, ADMIN: OK, STOREFRONT: OK}
STAFF = {ANONYMOUS: UNAUTHENTICATED, OWNER: FORBIDDEN, OTHER: FORBIDDEN, ADMIN: OK, STOREFRONT: OK}
# The catalogue and fulfilment: scopes (products:write, orders:fulfil) a storefront is not granted.
BACK_OFFICE = {ANONYMOUS: UNAUTHENTICATED, OWNER: FORBIDDEN, OTHER: FORBIDDEN, ADMIN: OK, STOREFRONT: FORBIDDEN}


def version_of(w: World, table: str, row_id: str) -> Callable[[], Awaitable[Any]]:
    return lambda: w.probe.scalar(f"SELECT version FROM {table} WHERE id = %s", int(row_id))


async def the_product(w: World) -> Target:
    return Target({"id": w.product["id"]}, w.owner["id"])


async def no_arguments(w: World) -> Target:
    return Target({}, w.owner["id"])


async def the_owner(w: World) -> Target:
    return Target({"id": w.owner["id"]}, w.owner["id"])


async def the_order(w: World) -> Target:
    return Target({"id": w.order["id"]}, w.owner["id"])


async def the_owners_orders(w: World) -> Target:
    return Target({"u": w.owner["id"]}, w.owner["id"])


async def a_new_user(w: World) -> Target:
    email = f"{unique('signup')}@example.com"
    taken = lambda: w.probe.scalar("SELECT COUNT(*) FROM users WHERE email = %s", email)  # noqa: E731
    return Target({"input": {"name": "New Person", "email": email}}, w.owner["id"], taken)


async def a_fresh_customer(w: World) -> Target:
    user = await register_customer(w.admin, "Fresh Face")
    return Target({"id": user["id"]}, user["id"], version_of(w, "users", user["id"]))


async def a_new_product(w: World) -> Target:
    name = unique("gadget")
    stocked = lambda: w.probe.scalar("SELECT COUNT(*) FROM products WHERE name = %s", name)  # noqa: E731
    return Target({"input": {"name": name, "price": "9.99", "stock": 3}}, w.owner["id"], stocked)


async def a_fresh_product(w: World) -> Target:
    product = await stock_product(w.admin, unique("gizmo"), "4.00", 3)
    return Target({"id": product["id"]}, w.owner["id"], version_of(w, "products", product["id"]))


async def an_order_for_the_owner(w: World) -> Target:
    count = lambda: w.probe.scalar("SELECT COUNT(*) FROM orders WHERE user_id = %s", int(w.owner["id"]))  # noqa: E731
    return Target({"input": order_input(w.owner["id"], (w.product["id"], 1))}, w.owner["id"], count)


def an_order(status: str) -> Callable[[World], Awaitable[Target]]:
    """A fresh order of the owner, brought by an admin to `status`, so that only the caller's role differs."""

    async def prepare(w: World) -> Target:
        order = await place_order(w.admin, w.owner, (w.product, 1))
        assert await decided(w.probe, order["id"]) == "RESERVED"
        if status in ("PAID", "CANCELED"):
            move = PAY if status == "PAID" else CANCEL
            await w.admin.data(move, id=order["id"])
        return Target({"id": order["id"]}, w.owner["id"], version_of(w, "orders", order["id"]))

    return prepare


PAY = "mutation($id: ID!) { payOrder(id: $id, input: {paymentMethod: PIX}) { id status } }"
CANCEL = 'mutation($id: ID!) { cancelOrder(id: $id, input: {reason: "changed my mind"}) { id status } }'
ORDER_STATUS = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { id userId status } }"
ORDER_UPDATES = "subscription($u: ID) { orderUpdates(userId: $u) { id userId } }"

CASES = [
    Case("Query.product", "query($id: ID!) { product(id: $id) { id name } }", EVERYONE, the_product),
    Case("Query.products", "{ products(first: 2) { totalCount } }", EVERYONE, no_arguments),
    Case("Query.user", "query($id: ID!) { user(id: $id) { id email } }", OWNER_OR_STAFF, the_owner),
    Case("Query.users", "{ users(first: 2) { totalCount } }", STAFF, no_arguments),
    Case("Query.order", "query($id: ID!) { order(id: $id) { id userId } }", OWNER_OR_STAFF, the_order),
    Case("Query.orders", "query($u: ID) { orders(userId: $u) { totalCount } }", OWNER_OR_STAFF, the_owners_orders),
    Case(
        "User.orders",
        "query($id: ID!) { user(id: $id) { id orders(first: 5) { totalCount } } }",
        OWNER_OR_STAFF,
        the_owner,
    ),
    Case(
        "Mutation.createUser",
        "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
        STAFF,
        a_new_user,
    ),
    Case(
        "Mutation.updateUser",
        'mutation($id: ID!) { updateUser(id: $id, input: {name: "Renamed"}) { id version } }',
        OWNER_OR_STAFF,
        a_fresh_customer,
    ),
    Case("Mutation.deleteUser", "mutation($id: ID!) { deleteUser(id: $id) { id } }", STAFF, a_fresh_customer),
    Case(
        "Mutation.createProduct",
        "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }",
        BACK_OFFICE,
        a_new_product,
    ),
    Case(
        "Mutation.updateProduct",
        'mutation($id: ID!) { updateProduct(id: $id, input: {description: "cheaper?"}) { id version } }',
        BACK_OFFICE,
        a_fresh_product,
    ),
    Case(
        "Mutation.deleteProduct", "mutation($id: ID!) { deleteProduct(id: $id) { id } }", BACK_OFFICE, a_fresh_product
    ),
    Case(
        "Mutation.createOrder",
        "mutation($input: CreateOrderInput!) { createOrder(input: $input) { id userId } }",
        OWNER_OR_STAFF,
        an_order_for_the_owner,
    ),
    Case(
        "Mutation.updateOrder",
        "mutation($id: ID!) { updateOrder(id: $id, input: {status: PROCESSING}) { id status } }",
        BACK_OFFICE,
        an_order("PAID"),
    ),
    Case("Mutation.payOrder", PAY, OWNER_OR_STAFF, an_order("RESERVED")),
    Case("Mutation.cancelOrder", CANCEL, OWNER_OR_STAFF, an_order("RESERVED")),
    Case(
        "Mutation.deleteOrder",
        "mutation($id: ID!) { deleteOrder(id: $id) { id } }",
        OWNER_OR_STAFF,
        an_order("CANCELED"),
    ),
    Case("Subscription.orderStatusChanged", ORDER_STATUS, OWNER_OR_STAFF, the_order),
    Case("Subscription.orderUpdates", ORDER_UPDATES, OWNER_OR_STAFF, the_owners_orders),
]


def test_the_table_covers_every_operation_of_the_schema_and_every_rule(settings: Settings) -> None:
    sdl = build_schema(create_schema(settings).as_str())
    roots = [sdl.query_type, sdl.mutation_type, sdl.subscription_type]
    operations = {f"{root.name}.{name}" for root in roots if root is not None for name in root.fields}
    rows = [case.operation for case in CASES]
    assert len(rows) == len(set(rows)), "one row per operation"
    assert operations - set(RULES) == set(), "an operation without an access rule"
    assert operations - set(rows) == set(), "an operation without a row in this table"
    assert set(rows) == set(RULES), "every rule is exercised"
    assert all(set(case.expect) == set(ROLES) for case in CASES)
    storefront = set(STOREFRONT_SCOPES)
    for case in CASES:  # the storefront's column follows from the scope each rule names
        rule = RULES[case.operation]
        allowed = rule.public or rule.scope in storefront
        assert (case.expect[STOREFRONT] == OK) == allowed, case.operation


@pytest.mark.parametrize(
    ("case", "role"), [(case, role) for case in CASES for role in ROLES], ids=lambda v: getattr(v, "operation", v)
)
async def test_every_operation_for_every_role(case: Case, role: str, world: World) -> None:
    target = await case.prepare(world)
    token = {
        ANONYMOUS: None,
        OWNER: customer_token(target.owner_id),
        OTHER: customer_token(world.other["id"]),
        ADMIN: admin_token(),
        STOREFRONT: service_token(),
    }[role]
    expected = case.expect[role]
    if case.operation.startswith("Subscription."):
        await _subscribe(world, case, target, token, expected)
        return
    caller = client(world.url, token)
    try:
        before = await target.state() if target.state else None
        body = await caller.execute(case.document, **target.variables)
    finally:
        await caller.http.aclose()
    if expected == OK:
        assert not body.get("errors") and all(v is not None for v in body["data"].values()), body
    else:
        assert codes(body) == [expected], body
        if target.state:
            assert await target.state() == before, "a refused mutation wrote something"


async def _subscribe(w: World, case: Case, target: Target, token: str | None, expected: str) -> None:
    await _no_listeners(w)
    async with Live(w.url, case.document, target.variables, token) as live:
        if expected != OK:
            assert codes(await live.next()) == [expected]
            return
        if case.operation == "Subscription.orderStatusChanged":
            first = await live.next()
            assert first["data"]["orderStatusChanged"]["id"] == target.variables["id"], first
            return

        await _listening(w)  # the resolver only registers once the policy let it run
        await _announce(w, w.other, w.order)  # someone else's order changes: not for this subscriber
        await _announce(w, w.owner, w.order)
        await _until_seen(live, w.order["id"], w.owner["id"])


async def _until_seen(live: Live, order_id: str, owner_id: str) -> None:
    """The owner's earlier orders may still be changing (the projector is real); anyone else's never arrive."""
    while True:
        seen = (await live.next())["data"]["orderUpdates"]
        assert seen["userId"] == owner_id, seen
        if seen["id"] == order_id:
            return


async def _announce(w: World, user: dict[str, Any], order: dict[str, Any]) -> None:
    """A new version of an order view as the projector announces it, handed to the feed as its consumer does:
    the subscriptions' filtering is tested without waiting on a busy projector (e2e covers the whole path)."""
    view = await w.read_model.order(int(order["id"]))
    assert view is not None
    document = {**view.stored(), "_id": view.id + (0 if user is w.owner else 10**9), "user_id": int(user["id"])}
    w.versions += 1
    w.feed.dispatch(encode_view_change("order", {**document, "version": document["version"] + w.versions}))


async def _no_listeners(w: World) -> None:
    """Earlier rows' subscriptions are gone (their server side ends a moment after the client closes)."""

    async def idle() -> bool:
        return w.feed.listener_count == 0

    await eventually(idle)


async def _listening(w: World) -> None:
    """This gateway has no other subscriber: one listener means ours is registered, so no change is missed."""

    async def registered() -> bool:
        return w.feed.listener_count == 1

    await eventually(registered)


# --- What the table leaves out ----------------------------------------------------------------------------


async def test_a_customer_who_names_no_user_gets_only_their_own_orders(world: World) -> None:
    await place_order(world.admin, world.other, (world.product, 1))  # Oscar has orders too
    olivia = client(world.url, customer_token(world.owner["id"]))
    try:
        body = await olivia.data("{ orders(first: 100) { nodes { userId } totalCount } }")
    finally:
        await olivia.http.aclose()
    owners = {node["userId"] for node in body["orders"]["nodes"]}
    assert owners == {world.owner["id"]} and body["orders"]["totalCount"] >= 1


async def test_an_order_id_that_does_not_exist_is_not_found_for_a_customer_before_anything_runs(
    world: World,
) -> None:
    """So an order created by someone else a moment later can never slip through the check."""
    olivia = client(world.url, customer_token(world.owner["id"]))
    try:
        missing = "987654321987"
        assert codes(await olivia.execute("query($id: ID!) { order(id: $id) { id } }", id=missing)) == ["NOT_FOUND"]
        assert codes(await olivia.execute(PAY, id=missing)) == ["NOT_FOUND"]
        assert codes(await olivia.execute("query($id: ID!) { order(id: $id) { id } }", id="x")) == ["BAD_USER_INPUT"]
    finally:
        await olivia.http.aclose()
    assert (await world.admin.data("query($id: ID!) { order(id: $id) { id } }", id=missing))["order"] is None


async def test_a_command_on_another_users_order_is_refused_by_its_handler_on_the_row_it_locks(world: World) -> None:
    """pay, cancel and delete read the order once: the handler checks its owner on the row it locks, and the
    refusal reads as the access policy's always did."""
    oscar = client(world.url, customer_token(world.other["id"]))
    before = await write_row(world.probe, "orders", world.order["id"])
    try:
        for document, operation in ((PAY, "payOrder"), (CANCEL, "cancelOrder")):
            (error,) = (await oscar.execute(document, id=world.order["id"]))["errors"]
            assert error["message"] == f"{operation}: order {world.order['id']} belongs to another user"
            assert error["extensions"] == {"code": "FORBIDDEN", "field": "id"}
        (missing,) = (await oscar.execute(PAY, id="987654321987"))["errors"]
        assert missing["message"] == "order 987654321987 not found"
        assert missing["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    finally:
        await oscar.http.aclose()
    assert await write_row(world.probe, "orders", world.order["id"]) == before


async def test_a_customer_subscribing_to_all_orders_watches_only_their_own(world: World) -> None:
    await _no_listeners(world)
    async with Live(world.url, ORDER_UPDATES, {}, customer_token(world.owner["id"])) as live:
        await _listening(world)
        await _announce(world, world.other, world.order)
        await _announce(world, world.owner, world.order)
        await _until_seen(live, world.order["id"], world.owner["id"])


# --- Tokens that must be refused --------------------------------------------------------------------------

USERS = "{ users(first: 1) { totalCount } }"
PRODUCTS = "{ products(first: 1) { totalCount } }"


def in_process(app: Starlette, authorization: str | None) -> GraphQLClient:
    return GraphQLClient(asgi_http(app, None if authorization is None else {"Authorization": authorization}))


async def users_answer(app: Starlette, authorization: str | None) -> list[str]:
    """The error codes (or [OK]) of one `users` query (admins only) sent with this Authorization header."""
    caller = in_process(app, authorization)
    try:
        return codes(await caller.execute(USERS)) or [OK]
    finally:
        await caller.http.aclose()


def refused_tokens() -> dict[str, str]:
    """Made when a test runs, not when the tests are collected: their times are relative to now."""
    now = int(time.time())
    return dict(
        [
            ("forged (another secret)", signed(claims(), key="not-the-gateway-secret-0123456789abcdef")),
            ("expired beyond the leeway", signed(claims(iat=now - 700, exp=now - 120))),
            ("not yet valid", signed(claims(nbf=now + 600))),
            ("wrong audience", signed(claims(aud="another-service"))),
            ("wrong issuer", signed(claims(iss="https://issuer.example"))),
            ("without exp", signed(claims(exp=None))),
            ("alg none", hand_made(claims(), {"alg": "none", "typ": "JWT"}, None)),
            ("alg None", hand_made(claims(), {"alg": "None", "typ": "JWT"}, None)),
            ("an algorithm not allowed (HS512)", signed(claims(), algorithm="HS512")),
            ("unknown role", signed(claims(role="superuser"))),
            ("customer whose sub is no user id", signed(claims("customer", "alice"))),
            ("service without a scope", signed(claims("service", "storefront"))),
            ("service with an empty scope", signed(claims("service", "storefront", scope=" "))),
            ("service with an unknown scope", signed(claims("service", "storefront", scope="orders:write root"))),
            ("service whose scope is a list", signed(claims("service", "storefront", scope=["orders:write"]))),
            ("garbage", "not.a.jwt"),
        ]
    )


@pytest.mark.parametrize("story", list(refused_tokens()))
async def test_bad_tokens_are_unauthenticated_even_on_public_fields(
    story: str, settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    token = refused_tokens()[story]
    app = gateway_app(settings, write_db, read_model)
    caller = in_process(app, f"Bearer {token}")
    try:
        for query in (USERS, PRODUCTS):  # a bad token is never quietly treated as anonymous
            body = await caller.execute(query)
            assert codes(body) == [UNAUTHENTICATED], body
            assert token not in json.dumps(body) and "0123456789abcdef" not in json.dumps(body)
    finally:
        await caller.http.aclose()


async def test_the_authorization_header_must_be_a_bearer_token_and_clock_skew_is_bounded(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    app = gateway_app(settings, write_db, read_model)
    now = int(time.time())
    cases = [
        ("Basic YWRtaW46YWRtaW4=", UNAUTHENTICATED),
        ("Bearer", UNAUTHENTICATED),
        (None, UNAUTHENTICATED),  # no credentials at all on an admin field
        (f"Bearer {admin_token()}", OK),
        (f"bearer {admin_token()}", OK),  # the scheme is case-insensitive
        (f"Bearer {signed(claims(iat=now - 600, exp=now - 10))}", OK),  # expired 10 s ago: within the 30 s leeway
    ]
    for authorization, expected in cases:
        assert await users_answer(app, authorization) == [expected], authorization


async def test_rs256_tokens_verify_with_the_public_key_and_an_hs256_token_signed_with_it_is_refused(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, tmp_path: Path
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "issuer.pem").write_bytes(pem)
    app = gateway_app(
        settings, write_db, read_model, jwt_public_key_file=tmp_path / "issuer.pem", jwt_algorithms="HS256,RS256"
    )
    outcomes = {
        "RS256 from the issuer": signed(claims(), private, "RS256"),
        "HS256 keyed with the public key": hand_made(claims(), {"alg": "HS256", "typ": "JWT"}, pem),
        "RS512, not allowed": signed(claims(), private, "RS512"),
        "RS256 from another key": signed(claims(), rsa.generate_private_key(65537, 2048), "RS256"),
    }
    seen = {story: await users_answer(app, f"Bearer {token}") for story, token in outcomes.items()}
    assert seen == {
        "RS256 from the issuer": [OK],
        "HS256 keyed with the public key": [UNAUTHENTICATED],
        "RS512, not allowed": [UNAUTHENTICATED],
        "RS256 from another key": [UNAUTHENTICATED],
    }


async def test_jwks_keys_are_chosen_by_kid_from_a_local_file(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, tmp_path: Path
) -> None:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(issuer_key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}))
    app = gateway_app(settings, write_db, read_model, jwt_jwks_file=tmp_path / "jwks.json", jwt_secret=None)
    stranger = ec.generate_private_key(ec.SECP256R1())
    outcomes = {
        "ES256 with kid k1": signed(claims(), issuer_key, "ES256", kid="k1"),
        "unknown kid": signed(claims(), issuer_key, "ES256", kid="k2"),
        "another key claiming k1": signed(claims(), stranger, "ES256", kid="k1"),
        "HS256 with no secret configured": signed(claims()),
    }
    seen = {story: await users_answer(app, f"Bearer {token}") for story, token in outcomes.items()}
    assert seen == {
        "ES256 with kid k1": [OK],
        "unknown kid": [UNAUTHENTICATED],
        "another key claiming k1": [UNAUTHENTICATED],
        "HS256 with no secret configured": [UNAUTHENTICATED],
    }


async def test_a_service_may_do_what_its_scopes_allow_and_nothing_else(world: World, probe: WriteModelProbe) -> None:
    """An order-taking service creates orders for any customer but cannot read customers or stock products;
    scopes in a customer's or an admin's token change nothing (their role decides)."""
    create_product = "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }"
    marker = unique("scoped")
    product = {"input": {"name": marker, "description": marker, "price": "1.00", "stock": 1}}
    orders_only = client(world.url, service_token("order-taker", scope="orders:write"))
    greedy_customer = client(world.url, signed(claims("customer", world.owner["id"], scope="products:write")))
    scoped_admin = client(world.url, signed(claims("admin", "ops", scope="orders:read")))
    try:
        before = await probe.high_water()
        placed = await orders_only.data(CREATE_ORDER, input=order_input(world.other["id"], (world.product["id"], 1)))
        assert placed["createOrder"]["userId"] == world.other["id"]
        assert codes(await orders_only.execute(USERS)) == [FORBIDDEN]
        assert codes(await orders_only.execute(create_product, **product)) == [FORBIDDEN]
        assert codes(await greedy_customer.execute(create_product, **product)) == [FORBIDDEN]
        assert await products_written(probe, before, marker) == NOTHING_FOR_PRODUCT
        assert (await scoped_admin.data(USERS))["users"]["totalCount"] >= 2  # still every admin right
    finally:
        for caller in (orders_only, greedy_customer, scoped_admin):
            await caller.http.aclose()


# --- Abuse limits -----------------------------------------------------------------------------------------

RENAME = "mutation($id: ID!, $name: String!) { updateUser(id: $id, input: {name: $name}) { version } }"


async def test_the_mutation_rate_limit_trips_per_client_and_recovers(
    settings: Settings, gql: GraphQLClient, write_db: WriteDatabase, read_model: ReadModel, probe: WriteModelProbe
) -> None:
    busy, calm = await register_customer(gql, "Busy Bee"), await register_customer(gql, "Calm Clam")
    app = gateway_app(settings, write_db, read_model, customer_mutation_rate=1.0, customer_mutation_burst=3)
    bee, clam = (
        in_process(app, f"Bearer {customer_token(busy['id'])}"),
        in_process(app, f"Bearer {customer_token(calm['id'])}"),
    )
    try:
        for n in range(3):  # the burst
            await bee.data(RENAME, id=busy["id"], name=f"Busy Bee {n}")
        limited = await bee.execute(RENAME, id=busy["id"], name="Busy Bee 3")
        assert codes(limited) == ["RATE_LIMITED"], limited
        retry_after = limited["errors"][0]["extensions"]["retryAfter"]
        assert 0 < retry_after <= 1.0
        assert await probe.scalar("SELECT version FROM users WHERE id = %s", int(busy["id"])) == 4  # not written
        assert "errors" not in await clam.execute(RENAME, id=calm["id"], name="Calm")  # a bucket of its own

        deadline = time.monotonic() + 10
        while True:  # wait as long as the bucket says, no longer
            await asyncio.sleep(retry_after)
            body = await bee.execute(RENAME, id=busy["id"], name="Busy Bee again")
            if codes(body) != ["RATE_LIMITED"] or time.monotonic() > deadline:
                break
            retry_after = body["errors"][0]["extensions"]["retryAfter"]
        assert body == {"data": {"updateUser": {"version": 5}}}
    finally:
        await bee.http.aclose()
        await clam.http.aclose()


async def test_anonymous_mutations_are_limited_by_client_address(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    app = gateway_app(settings, write_db, read_model, anonymous_mutation_rate=0.5, anonymous_mutation_burst=2)
    stranger = in_process(app, None)
    create = 'mutation { createProduct(input: {name: "Spam", price: "1.00", stock: 1}) { id } }'
    try:
        outcomes = [codes(await stranger.execute(create)) for _ in range(3)]
        assert codes(await stranger.execute(PRODUCTS)) == []  # reads are not limited
    finally:
        await stranger.http.aclose()
    assert outcomes == [[UNAUTHENTICATED], [UNAUTHENTICATED], ["RATE_LIMITED"]]


async def test_a_service_bursts_past_any_customer_budget_while_a_customers_21st_mutation_waits(
    settings: Settings, gql: GraphQLClient, write_db: WriteDatabase, read_model: ReadModel, probe: WriteModelProbe
) -> None:
    """The default budgets: a customer may send 20 mutations at once, a service token is unlimited.

    The customer's refill is slowed to 1/s so that "the 21st within a second" does not depend on how fast
    this machine answers the first 20; the burst and the service's budget are the defaults.
    """
    defaults = {name: Settings.model_fields[name].default for name in ("mutation_rate", "mutation_burst")}
    app = gateway_app(settings, write_db, read_model, **defaults, customer_mutation_rate=1.0)
    shopper, storefronts_customer = await register_customer(gql, "Quick Quentin"), await register_customer(gql, "Sam")
    product = await stock_product(gql, unique("stocking"), "1.00", 1_000_000)
    customer = in_process(app, f"Bearer {customer_token(shopper['id'])}")
    storefront = in_process(app, f"Bearer {service_token()}")
    try:
        before = await probe.high_water()
        service_burst = await asyncio.gather(
            *(
                storefront.execute(CREATE_ORDER, input=order_input(storefronts_customer["id"], (product["id"], 1)))
                for _ in range(40)
            )
        )
        assert [codes(body) for body in service_burst] == [[]] * 40, service_burst

        burst = await asyncio.gather(
            *(customer.execute(CREATE_ORDER, input=order_input(shopper["id"], (product["id"], 1))) for _ in range(21))
        )
        outcomes = Counter(codes(body)[0] if codes(body) else OK for body in burst)
        assert outcomes == {OK: 20, "RATE_LIMITED": 1}, outcomes
        (limited,) = [body for body in burst if codes(body)]
        assert limited["data"] is None
        assert 0 < limited["errors"][0]["extensions"]["retryAfter"] <= 1.0

        created = {
            uid: await probe.scalar("SELECT COUNT(*) FROM orders WHERE user_id = %s", int(uid))
            for uid in (shopper["id"], storefronts_customer["id"])
        }
        events = [e for e in await probe.events_since(before) if e.topic == "order.created"]
        per_user = {uid: sum(1 for e in events if e.data["user_id"] == int(uid)) for uid in created}
        assert created == {shopper["id"]: 20, storefronts_customer["id"]: 40}  # the refused one wrote nothing
        assert per_user == created
    finally:
        await customer.http.aclose()
        await storefront.http.aclose()


async def test_websocket_connections_per_client_are_capped(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    app = gateway_app(settings, write_db, read_model, max_ws_connections_per_client=2)
    async with served(app) as url:
        ws_url = url.replace("http://", "ws://") + "/graphql"

        async def connect() -> Any:
            ws = await websockets.connect(ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": admin_token()}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            return ws

        first, second = await connect(), await connect()
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await connect()
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body or b"{}")["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        await first.close()

        async def accepted_again() -> Any:
            try:
                return await connect()
            except websockets.exceptions.InvalidStatus:
                return None

        third = await eventually(accepted_again, timeout=10)
        await second.close()
        await third.close()


async def test_introspection_can_be_switched_off(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    app = gateway_app(settings, write_db, read_model, graphql_introspection=False)
    admin = in_process(app, f"Bearer {admin_token()}")
    try:
        for probe in ("{ __schema { queryType { name } } }", '{ __type(name: "Order") { name } }'):
            body = await admin.execute(probe)  # one error per introspection field, all rejected before execution
            assert "data" not in body and set(codes(body)) == {"QUERY_REJECTED"}, body
        assert await admin.data("{ __typename }") == {"__typename": "Query"}
    finally:
        await admin.http.aclose()


async def test_readyz_names_a_failing_check_without_its_connection_string(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    async def broken_mysql() -> None:
        raise ConnectionError("cannot reach mysql+asyncmy://eventshop:hunter2@db:3306/eventshop")

    app = gateway_app(settings, write_db, read_model, readiness={"mysql": broken_mysql})
    async with asgi_http(app) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"mysql": "unavailable: ConnectionError"}}
    assert "hunter2" not in response.text
