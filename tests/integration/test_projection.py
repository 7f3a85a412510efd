"""The projector on real Kafka and FerretDB: idempotent, order-insensitive, and poison-proof."""

from __future__ import annotations

import json
import random
from typing import Any

from projection.projectors.base import upsert_many_if_newer
from projection.projectors.users import UserProjector
from projection.queries import ReadModel
from shared.events import AggregateType, Event, Topic, decode_view_change, dlq_topic
from shared.kafka.producer import make_producer
from shared.settings import Settings
from tests.conftest import RunningSystem, TopicTail, eventually
from tests.events import event_from

FAKE_IDS_FROM = 2 * 10**12


def user_event(user_id: int, version: int, topic: Topic = Topic.USER_UPDATED) -> Event:
    stamp = f"2026-01-01T00:00:{version:02d}+00:00"
    data = {
        "id": user_id,
        "name": f"Projected v{version}",
        "email": f"p{user_id}@example.com",
        "version": version,
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": stamp,
        "deleted_at": stamp if topic is Topic.USER_DELETED else None,
    }
    return event_from(
        event_type=topic, aggregate_type=AggregateType.USER, aggregate_id=user_id, aggregate_version=version, data=data
    )


async def test_redelivered_and_out_of_order_events_leave_the_view_at_the_highest_version(mongo) -> None:
    projector = UserProjector(mongo)
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    events = [user_event(user_id, v, Topic.USER_CREATED if v == 1 else Topic.USER_UPDATED) for v in range(1, 8)]
    shuffled = events * 3
    random.shuffle(shuffled)
    applied = [bool(await projector.apply(e)) for e in shuffled]
    doc = await mongo["users"].find_one({"_id": user_id})
    assert doc["version"] == 7 and doc["name"] == "Projected v7"
    assert sum(applied) <= 7  # a stale or repeated event never writes

    # A late update after the deletion cannot resurrect the user.
    await projector.apply(user_event(user_id, 8, Topic.USER_DELETED))
    assert await projector.apply(user_event(user_id, 6)) == []
    assert await ReadModel(mongo).user(user_id) is None


async def test_an_event_arriving_twice_through_kafka_is_applied_once(
    settings: Settings, read_model: ReadModel, system: RunningSystem
) -> None:
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    producer = make_producer(settings)
    await producer.start()
    try:
        async with TopicTail(settings, Topic.VIEWS_CHANGED) as changes:
            for event in (user_event(user_id, 2), user_event(user_id, 2), user_event(user_id, 1)):
                await producer.send_and_wait(settings.topic(event.event_type), event.to_bytes(), key=event.key)
            doc = await eventually(lambda: read_model.user(user_id))
            assert doc.version == 2
            announced = await changes.collect(lambda rs: any(decode_view_change(r.value)["id"] == user_id for r in rs))
    finally:
        await producer.stop()
    messages = [decode_view_change(r.value) for r in announced]
    assert [m["version"] for m in messages if m["id"] == user_id] == [2]


async def test_a_poison_message_goes_to_the_dlq_and_the_next_message_is_processed(
    settings: Settings, read_model: ReadModel, system: RunningSystem
) -> None:
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    good = user_event(user_id, 1, Topic.USER_CREATED)
    producer = make_producer(settings)
    await producer.start()
    try:
        async with TopicTail(settings, dlq_topic(Topic.USER_CREATED)) as dlq:
            key = good.key  # same partition: the poison is right in front of the good event
            await producer.send_and_wait(settings.topic(Topic.USER_CREATED), b"this is not json", key=key)
            await producer.send_and_wait(settings.topic(Topic.USER_CREATED), good.to_bytes(), key=key)
            await eventually(lambda: read_model.user(user_id))
            records = await dlq.collect(lambda rs: any(r.value == b"this is not json" for r in rs))
            # Every projector group that saw it dead-letters it once (other test processes may run one).
            dead = next(r for r in records if r.value == b"this is not json")
    finally:
        await producer.stop()
    headers = {k: v.decode() for k, v in dead.headers}
    assert dead.key == key
    assert headers["dlq.original_topic"] == settings.topic("user.created")
    assert headers["dlq.consumer"] == "projector"
    assert headers["dlq.attempts"] == "0"  # not retried: it can never succeed
    assert "decode" in headers["dlq.error_message"]
    assert headers["dlq.error_type"] == "PoisonMessage"


async def test_a_message_that_keeps_failing_is_retried_then_dead_lettered(
    settings: Settings, read_model: ReadModel, system: RunningSystem
) -> None:
    """A valid event the projector cannot apply (an id beyond BSON's 64-bit integers): retried, then DLQ; the
    consumer goes on with the next one."""
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    broken = user_event(2**64 + user_id, 1, Topic.USER_CREATED)
    good = user_event(user_id, 2)
    producer = make_producer(settings)
    await producer.start()
    try:
        async with TopicTail(settings, dlq_topic(Topic.USER_CREATED)) as dlq:
            await producer.send_and_wait(settings.topic(Topic.USER_CREATED), broken.to_bytes(), key=broken.key)
            records = await dlq.collect(lambda rs: any(r.key == broken.key for r in rs))
            dead = next(r for r in records if r.key == broken.key)
            await producer.send_and_wait(settings.topic(Topic.USER_UPDATED), good.to_bytes(), key=good.key)
            await eventually(lambda: read_model.user(user_id))
    finally:
        await producer.stop()
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["dlq.attempts"] == str(settings.consumer_retries + 1)
    assert headers["dlq.error_type"] == "OverflowError"


async def test_an_event_written_by_release_1_is_projected_by_today_s_projector(
    settings: Settings, read_model: ReadModel, system: RunningSystem
) -> None:
    """Kafka keeps what the previous release wrote (schema version 1): the running projector upcasts and applies it."""
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    today = user_event(user_id, 1, Topic.USER_CREATED)
    written_by_release_1 = {
        **today.model_dump(mode="json"),
        "schema_version": 1,
        "reason": None,
        "order_id": None,
        "quantity": None,
    }
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(Topic.USER_CREATED), json.dumps(written_by_release_1).encode(), key=today.key
        )
        doc = await eventually(lambda: read_model.user(user_id))
    finally:
        await producer.stop()
    assert doc.name == today.data.name and doc.version == 1


async def test_a_bulk_write_applies_each_view_if_newer_and_says_which_were_stale(mongo) -> None:
    """One round trip for a poll's views: new ones inserted, newer ones replace, stale ones are refused alone."""
    users = mongo["users"]
    ids = [FAKE_IDS_FROM + random.randrange(10**9) for _ in range(4)]
    projector = UserProjector(mongo)
    await projector.apply(user_event(ids[1], 3))  # stored at 3: version 5 replaces it
    await projector.apply(user_event(ids[2], 7))  # stored at 7: version 4 is stale
    await projector.apply(user_event(ids[3], 2))  # stored at 2: version 2 again is stale
    documents = [projector.view(user_event(i, v)).stored() for i, v in zip(ids, (1, 5, 4, 2), strict=True)]

    assert await upsert_many_if_newer(users, documents) == [True, True, False, False]
    stored = {d["_id"]: d["version"] async for d in users.find({"_id": {"$in": ids}})}
    assert stored == {ids[0]: 1, ids[1]: 5, ids[2]: 7, ids[3]: 2}
    assert await upsert_many_if_newer(users, []) == []


async def test_a_burst_of_one_aggregate_s_events_is_announced_in_version_order_ending_at_the_newest(
    settings: Settings, read_model: ReadModel, system: RunningSystem
) -> None:
    """A poll writes only the newest event of each aggregate: subscribers may see fewer versions, never an older one
    after a newer one, and always the last."""
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    events = [user_event(user_id, v, Topic.USER_CREATED if v == 1 else Topic.USER_UPDATED) for v in range(1, 9)]
    random.shuffle(events)
    producer = make_producer(settings)
    await producer.start()
    try:
        async with TopicTail(settings, Topic.VIEWS_CHANGED) as changes:
            for event in events:
                await producer.send(settings.topic(event.event_type), event.to_bytes(), key=event.key)
            await producer.flush()
            announced = await changes.collect(lambda rs: any(_announced(r, user_id) == 8 for r in rs))
    finally:
        await producer.stop()
    versions = [v for r in announced if (v := _announced(r, user_id)) is not None]
    assert versions == sorted(set(versions)) and versions[-1] == 8
    assert (await read_model.user(user_id)).version == 8


async def test_an_event_on_another_type_s_topic_is_dead_lettered_and_its_poll_still_projected(
    settings: Settings, read_model: ReadModel, system: RunningSystem
) -> None:
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    good = user_event(user_id, 1, Topic.USER_CREATED)
    misplaced = user_event(user_id + 1, 1, Topic.USER_CREATED)
    producer = make_producer(settings)
    await producer.start()
    try:
        async with TopicTail(settings, dlq_topic(Topic.USER_UPDATED)) as dlq:
            await producer.send(settings.topic(Topic.USER_UPDATED), misplaced.to_bytes(), key=good.key)
            await producer.send(settings.topic(Topic.USER_CREATED), good.to_bytes(), key=good.key)
            await producer.flush()
            await eventually(lambda: read_model.user(user_id))
            records = await dlq.collect(lambda rs: any(r.key == good.key for r in rs))
    finally:
        await producer.stop()
    headers = {k: v.decode() for k, v in next(r for r in records if r.key == good.key).headers}
    assert headers["dlq.error_type"] == "PoisonMessage" and "does not belong" in headers["dlq.error_message"]
    assert await read_model.user(user_id + 1) is None


def _announced(record: Any, user_id: int) -> int | None:
    message = decode_view_change(record.value)
    return int(message["version"]) if message["kind"] == "user" and message["id"] == user_id else None
