"""What a read costs the read model: a page's total is counted only when the client asks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from command.db import WriteDatabase
from projection.queries import ReadModel
from shared.settings import Settings
from tests.conftest import GraphQLClient, asgi_http, bearer, gateway_app


class Commands(monitoring.CommandListener):
    """The names of the commands sent to the read model."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def watched(settings: Settings, write_db: WriteDatabase) -> AsyncIterator[tuple[GraphQLClient, Commands]]:
    """The gateway app on a read model client whose commands are recorded."""
    commands = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_uri, tz_aware=True, event_listeners=[commands]
    )
    app = gateway_app(settings, write_db, ReadModel(client[settings.mongo_database]))
    async with asgi_http(app, bearer(settings)) as http:
        yield GraphQLClient(http), commands
    await client.close()


@pytest.mark.parametrize("connection", ["products", "users", "orders"])
async def test_a_page_is_counted_only_when_its_total_is_asked_for(
    watched: tuple[GraphQLClient, Commands], connection: str
) -> None:
    gql, commands = watched
    await gql.data(f"{{ {connection}(first: 5) {{ nodes {{ id }} pageInfo {{ hasNextPage endCursor }} }} }}")
    assert commands.sent == ["find"]

    commands.sent.clear()
    counted = await gql.data(f"{{ {connection}(first: 5) {{ nodes {{ id }} totalCount }} }}")
    assert sorted(commands.sent) == ["count", "find"]  # the count command: one SQL count on FerretDB
    assert counted[connection]["totalCount"] >= len(counted[connection]["nodes"])

    # Asked for through a fragment, the total is still there (read with the page).
    commands.sent.clear()
    kind = connection.removesuffix("s").capitalize()
    fragment = await gql.data(
        f"{{ {connection}(first: 5) {{ ...total }} }} fragment total on {kind}Connection {{ totalCount }}"
    )
    assert fragment[connection]["totalCount"] == counted[connection]["totalCount"]
    assert sorted(commands.sent) == ["count", "find"]
