"""A hardened gateway: bombs are rejected before execution, errors are masked, reads wait for writes."""

from __future__ import annotations

from typing import Any

from command.db import WriteDatabase
from projection.queries import ReadModel
from shared.settings import Settings
from tests.conftest import GraphQLClient, WriteModelProbe, in_process_admin, unique

CREATE = "mutation($input: CreateUserInput!) { createUser(input: $input) { id version } }"
UPDATE = "mutation($id: ID!, $name: String!) { updateUser(id: $id, input: {name: $name}) { id version } }"
READ = "query($id: ID!, $v: Int) { user(id: $id, minVersion: $v) { id name version } }"


async def test_a_normal_nested_query_and_graphiql_introspection_pass_the_default_limits(gql: GraphQLClient) -> None:
    nested = """
      query { users(first: 2) { nodes { ...Buyer } } }
      fragment Buyer on User { id orders(first: 2) { nodes { id user { id } items { productId subtotal } } } }
    """
    assert "errors" not in await gql.execute(nested)
    from graphql import get_introspection_query

    assert "errors" not in await gql.execute(get_introspection_query(descriptions=True))


async def test_depth_alias_and_token_bombs_are_query_rejected_and_write_nothing(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, probe: WriteModelProbe
) -> None:
    strict = settings.model_copy(update={"max_query_depth": 4, "max_query_aliases": 5, "max_query_tokens": 300})
    async with in_process_admin(strict, write_db, read_model) as client:
        deep = "{ users { nodes { orders { nodes { items { productId } } } } } }"
        assert await client.error_code(deep) == "QUERY_REJECTED"
        before = await probe.high_water()
        aliases = " ".join(
            f'a{i}: createUser(input: {{name: "Bomb", email: "{unique("bomb")}@example.com"}}) {{ id }}'
            for i in range(6)
        )
        assert await client.error_code("mutation { " + aliases + " }") == "QUERY_REJECTED"
        assert (await probe.high_water())["users"] == before["users"]  # rejected before execution
        tokens = "{ " + " ".join("__typename" for _ in range(400)) + " }"
        assert await client.error_code(tokens) == "QUERY_REJECTED"
        assert "errors" not in await client.execute("{ users(first: 1) { nodes { id } } }")


async def test_a_document_one_gateway_parsed_is_still_token_limited_by_a_stricter_one(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    """Parsed documents are cached: one that a gateway accepted never passes a stricter gateway's token limit."""
    tokens = "{ " + " ".join("__typename" for _ in range(400)) + " }"
    strict = settings.model_copy(update={"max_query_tokens": 300})
    async with (
        in_process_admin(settings, write_db, read_model) as lax,
        in_process_admin(strict, write_db, read_model) as guarded,
    ):
        assert "errors" not in await lax.execute(tokens)
        assert await guarded.error_code(tokens) == "QUERY_REJECTED"
        assert await guarded.error_code(tokens) == "QUERY_REJECTED"  # a refusal is not cached as a document
        assert "errors" not in await lax.execute(tokens)


async def test_an_oversized_body_is_refused_with_413(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    async with in_process_admin(small, write_db, read_model) as client:
        padding = "#" + "x" * 5000 + "\n"
        response = await client.http.post("/graphql", json={"query": padding + "{ __typename }"})
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_REJECTED"


async def test_syntax_and_type_errors_are_bad_user_input(gql: GraphQLClient) -> None:
    assert await gql.error_code("{ users { nodes { id } ") == "BAD_USER_INPUT"
    assert await gql.error_code("{ nosuchfield }") == "BAD_USER_INPUT"
    assert await gql.error_code("query($id: ID!) { user(id: $id) { id } }") == "BAD_USER_INPUT"  # missing variable
    assert await gql.error_code("{ users(first: 101) { totalCount } }") == "BAD_USER_INPUT"
    assert await gql.error_code('{ users(after: "garbage!") { totalCount } }') == "BAD_USER_INPUT"


async def test_unexpected_errors_are_masked_as_internal(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    class Broken(ReadModel):
        async def user(self, user_id: int) -> Any:
            raise RuntimeError("secret connection string mysql://root:hunter2@db")

    async with in_process_admin(settings, write_db, Broken(read_model.db)) as client:
        body = await client.execute('{ user(id: "1") { id } }')
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL"
    assert error["message"] == "Internal error" and "hunter2" not in str(body)
    assert error["extensions"]["correlation_id"]


async def test_min_version_returns_at_once_when_current_and_waits_for_a_change_in_flight(
    gql: GraphQLClient, system
) -> None:
    created = await gql.data(CREATE, input={"name": "Reader", "email": f"{unique('reader')}@example.com"})
    user = created["createUser"]
    assert (await gql.data(READ, id=user["id"], v=1))["user"]["version"] == 1  # waits for the projector
    assert (await gql.data(READ, id=user["id"], v=1))["user"]["version"] == 1  # current: no wait
    updated = (await gql.data(UPDATE, id=user["id"], name="Reader II"))["updateUser"]
    seen = (await gql.data(READ, id=user["id"], v=updated["version"]))["user"]
    assert seen == {"id": user["id"], "name": "Reader II", "version": 2}


async def test_min_version_the_read_model_does_not_reach_is_stale_read(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel, gql: GraphQLClient, system
) -> None:
    user = (await gql.data(CREATE, input={"name": "Stale", "email": f"{unique('stale')}@example.com"}))["createUser"]
    await gql.data(READ, id=user["id"], v=1)
    impatient = settings.model_copy(update={"read_wait_timeout": 0.3})
    async with in_process_admin(impatient, write_db, read_model) as client:
        body = await client.execute(READ, id=user["id"], v=2)  # no write will ever make version 2
    assert body["errors"][0]["extensions"]["code"] == "STALE_READ"
    assert body["errors"][0]["extensions"]["current_version"] == 1
    assert await gql.error_code(READ, id=user["id"], v=0) == "BAD_USER_INPUT"


async def test_repeated_directives_are_refused_once_before_execution_however_many_copies(
    gql: GraphQLClient, probe: WriteModelProbe
) -> None:
    before = await probe.high_water()
    for copies in (2, 10, 250):  # 250 copies: 1,750 tokens, within the token limit
        repeated = " ".join("@skip(if: false)" for _ in range(copies))
        email = f"{unique('repeat')}@example.com"
        body = await gql.execute(
            f'mutation {{ createUser(input: {{name: "R", email: "{email}"}}) {repeated} {{ id }} }}'
        )
        assert [e["extensions"]["code"] for e in body["errors"]] == ["QUERY_REJECTED"], body
        assert "can only be used once" in body["errors"][0]["message"] and "data" not in body
    assert await probe.high_water() == before and await probe.events_since(before) == []


async def test_directives_per_document_are_limited(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    async with in_process_admin(settings.model_copy(update={"max_query_directives": 3}), write_db, read_model) as c:
        three = "{ a: __typename @include(if: true) b: __typename @include(if: true) c: __typename @skip(if: false) }"
        assert "errors" not in await c.execute(three)
        fields = " ".join(f"f{i}: __typename @include(if: true)" for i in range(25))
        body = await c.execute("{ " + fields + " }")
        assert [e["extensions"]["code"] for e in body["errors"]] == ["QUERY_REJECTED"], body  # once, not 22 times
        assert "more than 3 directives" in body["errors"][0]["message"]


async def test_suggestions_are_off_when_introspection_is(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    typo = '{ product(id: "1") { nmae } }'
    enum = "query($s: OrderStatus) { orders(status: $s) { totalCount } }"
    async with in_process_admin(settings, write_db, read_model) as open_schema:
        assert "Did you mean 'name'?" in (await open_schema.execute(typo))["errors"][0]["message"]
        assert "Did you mean" in (await open_schema.execute(enum, s="PAYED"))["errors"][0]["message"]
    closed = settings.model_copy(update={"graphql_introspection": False})
    async with in_process_admin(closed, write_db, read_model) as closed_schema:
        for body in (await closed_schema.execute(typo), await closed_schema.execute(enum, s="PAYED")):
            (error,) = body["errors"]
            assert error["extensions"]["code"] == "BAD_USER_INPUT" and "Did you mean" not in error["message"], body
            assert "name" not in error["message"] and "PAID" not in error["message"], body
