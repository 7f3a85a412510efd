"""Two environments on one Kafka broker, told apart by KAFKA_TOPIC_PREFIX alone: their consumer groups are
named after the prefix, so starting and stopping one environment's projector never rebalances the other's.

A rebalance is seen from both sides: the running consumer's rebalance callbacks (on_partitions_revoked /
assigned, counted by a listener wrapped around the consumer loop's own) and its group generation, and the
broker's description of the group (state and members, through the admin API). A positive control, a
second projector of the SAME environment, shows that these signals do catch a rebalance.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from projection.runner import ProjectionRunner, build_projection_runner
from shared.kafka import consumer
from shared.kafka.producer import make_producer
from shared.kafka.topics import SINGLE_BROKER_PARTITIONS, ensure_topics
from shared.settings import Settings
from tests.conftest import eventually, make_test_settings
from tests.labs import consumer_group, delete_topics, kafka_admin

RUN = uuid.uuid4().hex[:6]


class CountingListener(consumer._AssignmentListener):
    """The consumer loop's own assignment listener, counting the rebalances its consumer goes through."""

    made: list[CountingListener] = []

    def __init__(self, assigned: asyncio.Event) -> None:
        super().__init__(assigned)
        self.revoked = 0
        self.assignments = 0
        CountingListener.made.append(self)

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.revoked += 1
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assignments += 1
        await super().on_partitions_assigned(assigned)


@dataclass
class Projector:
    runner: ProjectionRunner
    listener: CountingListener

    @property
    def group_id(self) -> str | None:
        return self.runner.loop.group_id

    def rebalances(self) -> tuple[int, int, int]:
        """(revocations, assignments, group generation) as this consumer has seen them."""
        consumer = self.runner.loop.consumer
        assert consumer is not None
        # aiokafka has no public accessor for the generation; the callbacks above are the public signal.
        return self.listener.revoked, self.listener.assignments, consumer._coordinator.generation


@pytest.fixture
def two_environments() -> tuple[Settings, Settings]:
    return (
        make_test_settings(kafka_topic_prefix=f"test.env-{RUN}-a."),
        make_test_settings(kafka_topic_prefix=f"test.env-{RUN}-b."),
    )


@pytest.fixture
async def topics_of(two_environments: tuple[Settings, Settings]) -> AsyncIterator[None]:
    """Each environment's topics, as devstack makes them; deleted afterwards."""
    for settings in two_environments:
        await ensure_topics(settings)
    yield
    for settings in two_environments:
        await delete_topics(settings)


@asynccontextmanager
async def projector_of(settings: Settings, mongo: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[Projector]:
    """The environment's projector as `eventshop projector` builds it (its group from the settings), running
    until the block ends, then stopped cleanly (it leaves its group)."""
    producer = make_producer(settings)
    await producer.start()
    runner = build_projection_runner(mongo, producer, settings, auto_offset_reset="latest")
    await runner.loop.start()
    listener = CountingListener.made[-1]
    stopping = asyncio.Event()
    running = asyncio.create_task(runner.run(stopping))
    try:
        await runner.loop.wait_ready(timeout=60)
        yield Projector(runner, listener)
    finally:
        stopping.set()
        await asyncio.wait_for(running, 30)
        await producer.stop()


async def group_on_the_broker(settings: Settings, group_id: str) -> tuple[str, set[str]]:
    """The group's state and member ids as the broker describes them."""
    group = await consumer_group(settings, group_id)
    return group.state, set(group.members)


async def fully_assigned(projector: Projector) -> None:
    """Every partition of every subscribed topic is this consumer's: the group has settled."""
    expected = len(projector.runner.loop.topics) * SINGLE_BROKER_PARTITIONS

    async def settled() -> bool:
        return len(projector.runner.loop.assignment()) == expected

    await eventually(settled, timeout=30)


async def test_the_groups_of_two_environments_follow_their_prefixes(
    two_environments: tuple[Settings, Settings],
) -> None:
    a, b = two_environments
    assert (a.projector_group, a.stock_worker_group) == (
        f"test.env-{RUN}-a.eventshop-projector",
        f"test.env-{RUN}-a.eventshop-stock-worker",
    )
    assert {a.projector_group, a.stock_worker_group}.isdisjoint({b.projector_group, b.stock_worker_group})


async def test_starting_and_stopping_another_environment_never_rebalances_this_one(
    two_environments: tuple[Settings, Settings],
    topics_of: None,
    mongo: AsyncDatabase[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer, "_AssignmentListener", CountingListener)
    a, b = two_environments

    async with projector_of(a, mongo) as first:
        assert first.group_id == a.projector_group
        await fully_assigned(first)
        settled = first.rebalances()
        state, members = await group_on_the_broker(a, a.projector_group)
        assert state == "Stable" and len(members) == 1

        async with projector_of(b, mongo) as other:
            assert other.group_id == b.projector_group != first.group_id
            await fully_assigned(other)  # had A's group been B's too, A would have rejoined before this
            assert first.rebalances() == settled
            assert await group_on_the_broker(a, a.projector_group) == ("Stable", members)
        # B has left its group (LeaveGroup answered); had it been A's group, the broker would now be rebalancing.
        assert await group_on_the_broker(a, a.projector_group) == ("Stable", members)
        assert first.rebalances() == settled
        assert await group_on_the_broker(b, b.projector_group) == ("Empty", set())

        # Positive control: a second projector of the SAME environment joins A's group, and A sees it.
        async with projector_of(a, mongo) as twin:
            assert twin.group_id == first.group_id
            revoked, assignments, generation = first.rebalances()
            assert revoked > settled[0] and assignments > settled[1] and generation > settled[2]
            state, both = await group_on_the_broker(a, a.projector_group)
            assert len(both) == 2 and members < both


async def test_a_new_environment_s_topics_are_all_described_once_ensure_topics_returns(settings: Settings) -> None:
    """A create returns before the broker's metadata shows the topics; the processes and tests that describe or
    consume them right after must find every one (once seen: "a domain topic is missing")."""
    prefix = f"{settings.kafka_topic_prefix}fresh-{uuid.uuid4().hex[:8]}."
    fresh = settings.model_copy(update={"kafka_topic_prefix": prefix})
    try:
        wanted = await ensure_topics(fresh)
        async with kafka_admin(fresh) as admin:
            described = await admin.describe_topics(wanted)
        assert sorted(d["topic"] for d in described if not d["error_code"] and d["partitions"]) == sorted(wanted)
        assert all(len(d["partitions"]) == SINGLE_BROKER_PARTITIONS for d in described)
    finally:
        await delete_topics(fresh)
