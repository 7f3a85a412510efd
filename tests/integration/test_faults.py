"""Faults on the real services: the write side keeps working and nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from devstack import start_service, stop_service
from shared.settings import Settings
from tests.conftest import GraphQLClient, RunningSystem, WriteModelProbe, eventually, unique

pytestmark = pytest.mark.slow

CREATE = "mutation($input: CreateUserInput!) { createUser(input: $input) { id version } }"
READ = "query($id: ID!) { user(id: $id) { id name version } }"


async def test_with_kafka_stopped_writes_succeed_and_reach_the_read_model_after_it_restarts(
    gql: GraphQLClient, system: RunningSystem, settings: Settings, probe: WriteModelProbe
) -> None:
    await asyncio.to_thread(stop_service, settings, "kafka")
    try:
        created = (await gql.data(CREATE, input={"name": "Outage Olga", "email": f"{unique('olga')}@example.com"}))
        user_id = int(created["createUser"]["id"])
        waiting = await probe.scalar(
            "SELECT COUNT(*) FROM outbox WHERE aggregate_id = %s AND topic = 'user.created' AND published_at IS NULL",
            user_id,
        )
        assert waiting == 1  # committed, waiting in the outbox
    finally:
        await asyncio.to_thread(start_service, settings, "kafka")

    async def projected() -> bool:
        return (await gql.data(READ, id=str(user_id)))["user"] is not None

    await eventually(projected, timeout=90)
