"""Users, end to end on the real services: GraphQL -> MySQL + outbox -> Kafka -> projector -> MongoDB."""

from __future__ import annotations

import pytest

from tests.conftest import GraphQLClient, RunningSystem, WriteModelProbe, eventually, unique

CREATE = """
mutation($input: CreateUserInput!) { createUser(input: $input) { id name email version createdAt updatedAt } }
"""
UPDATE = """
mutation($id: ID!, $input: UpdateUserInput!, $v: Int) {
  updateUser(id: $id, input: $input, expectedVersion: $v) { id name email version }
}
"""
DELETE = "mutation($id: ID!) { deleteUser(id: $id) { id version } }"
READ = "query($id: ID!, $v: Int) { user(id: $id, minVersion: $v) { id name email version } }"
USER_TOPICS = ("user.created", "user.updated", "user.deleted")


async def create_user(gql: GraphQLClient, name: str = "Ada Lovelace", email: str | None = None) -> dict:
    data = await gql.data(CREATE, input={"name": name, "email": email or f"{unique('ada')}@example.com"})
    return data["createUser"]


async def test_a_user_is_created_updated_and_deleted_through_every_layer(
    gql: GraphQLClient, system: RunningSystem
) -> None:
    email = f"{unique('Grace')}@Example.COM"
    created = await create_user(gql, "  Grace Hopper ", email)
    assert created["name"] == "Grace Hopper"
    assert created["email"] == email.lower()  # normalised
    assert created["version"] == 1

    # The read model catches up through the outbox, Kafka and the projector.
    seen = await gql.data(READ, id=created["id"], v=1)
    assert seen["user"] == {k: created[k] for k in ("id", "name", "email", "version")}

    updated = (await gql.data(UPDATE, id=created["id"], input={"name": "Grace B. Hopper"}, v=1))["updateUser"]
    assert updated["version"] == 2 and updated["name"] == "Grace B. Hopper"
    seen = await gql.data(READ, id=created["id"], v=2)
    assert seen["user"]["name"] == "Grace B. Hopper"

    deleted = (await gql.data(DELETE, id=created["id"]))["deleteUser"]
    assert deleted == {"id": created["id"], "version": 3}

    async def gone() -> bool:
        return (await gql.data(READ, id=created["id"]))["user"] is None

    await eventually(gone)


async def test_users_are_listed_and_searched_with_cursor_pagination(gql: GraphQLClient, system: RunningSystem) -> None:
    tag = unique("zeta").lower()
    ids = [(await create_user(gql, f"{tag} person {i}"))["id"] for i in range(5)]
    query = """query($after: String, $search: String) {
      users(first: 2, after: $after, search: $search) { nodes { id } pageInfo { hasNextPage endCursor } totalCount }
    }"""

    async def all_visible() -> bool:
        return (await gql.data(query, search=tag))["users"]["totalCount"] == 5

    await eventually(all_visible)
    seen: list[str] = []
    after = None
    while True:
        page = (await gql.data(query, search=tag.upper(), after=after))["users"]
        seen += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids


async def test_a_duplicate_email_is_a_conflict_and_writes_nothing(gql: GraphQLClient, probe: WriteModelProbe) -> None:
    email = f"{unique('dup')}@example.com"
    await create_user(gql, email=email)
    before = await probe.high_water()
    code = await gql.error_code(CREATE, input={"name": "Copycat", "email": email.upper()})
    assert code == "CONFLICT"
    assert (await probe.high_water())["users"] == before["users"]
    assert await probe.new_events(before, USER_TOPICS) == []


async def test_a_deleted_user_frees_its_email(gql: GraphQLClient) -> None:
    email = f"{unique('reuse')}@example.com"
    first = await create_user(gql, email=email)
    await gql.data(DELETE, id=first["id"])
    second = await create_user(gql, email=email)
    assert second["id"] != first["id"]


@pytest.mark.parametrize(
    ("name", "email"),
    [
        ("", "a@example.com"),
        ("   ", "a@example.com"),
        ("x" * 256, "a@example.com"),
        ("Ann", "not-an-email"),
        ("Ann", ""),
        ("Ann", "a@b"),
        ("Ann", "two@@example.com"),
    ],
)
async def test_invalid_user_input_is_rejected_and_writes_nothing(
    gql: GraphQLClient, probe: WriteModelProbe, name: str, email: str
) -> None:
    before = await probe.high_water()
    assert await gql.error_code(CREATE, input={"name": name, "email": email}) == "BAD_USER_INPUT"
    assert (await probe.high_water())["users"] == before["users"]
    assert await probe.new_events(before, USER_TOPICS) == []


async def test_update_rules(gql: GraphQLClient, probe: WriteModelProbe) -> None:
    user = await create_user(gql)
    taken = await create_user(gql)
    before = await probe.high_water()
    cases = [
        ({"id": user["id"], "input": {"email": taken["email"]}}, "CONFLICT"),
        ({"id": user["id"], "input": {"name": "New"}, "v": 7}, "CONFLICT"),
        ({"id": user["id"], "input": {}}, "BAD_USER_INPUT"),
        ({"id": user["id"], "input": {"name": ""}}, "BAD_USER_INPUT"),
        ({"id": user["id"], "input": {"email": "nope"}}, "BAD_USER_INPUT"),
        ({"id": "999999999", "input": {"name": "Ghost"}}, "NOT_FOUND"),
        ({"id": "abc", "input": {"name": "Ghost"}}, "BAD_USER_INPUT"),
        ({"id": "-1", "input": {"name": "Ghost"}}, "BAD_USER_INPUT"),
    ]
    for variables, code in cases:
        assert await gql.error_code(UPDATE, **variables) == code, variables
    assert await probe.new_events(before, USER_TOPICS) == []
    assert await probe.scalar("SELECT version FROM users WHERE id = %s", int(user["id"])) == 1


async def test_delete_rules(gql: GraphQLClient) -> None:
    user = await create_user(gql)
    await gql.data(DELETE, id=user["id"])
    assert await gql.error_code(DELETE, id=user["id"]) == "NOT_FOUND"
    assert await gql.error_code(UPDATE, id=user["id"], input={"name": "Back"}) == "NOT_FOUND"
    assert await gql.error_code(DELETE, id="0") == "BAD_USER_INPUT"


async def test_a_handler_failing_mid_transaction_leaves_no_row_and_no_event(write_db, probe: WriteModelProbe) -> None:
    """The entity row and its outbox row commit together or not at all."""
    from command.domain.user import NewUser
    from command.store import clock, insert_user, save

    before = await probe.high_water()
    new = NewUser.register("Half", f"{unique('half')}@example.com", clock())
    with pytest.raises(RuntimeError):
        async with write_db.transaction() as tx:
            await save(tx, await insert_user(tx, new))
            raise RuntimeError("crash after the outbox row was written")
    after = await probe.high_water()
    assert await probe.scalar("SELECT COUNT(*) FROM users WHERE id > %s", before["users"]) == 0
    created = [e for e in await probe.events_since(before) if e.topic == "user.created"]
    assert [e for e in created if e.aggregate_id > before["users"]] == []
    assert after["users"] >= before["users"]
