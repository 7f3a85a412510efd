"""The consumer loop on real Kafka: a stop request does not wait out a retry backoff, and loses nothing."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from shared.events import AggregateType, Event, Topic
from shared.kafka.consumer import ConsumerLoop, decode_event
from shared.kafka.producer import make_producer
from shared.settings import Settings
from tests.conftest import eventually
from tests.events import event_from
from tests.labs import kafka_admin

FAKE_IDS_FROM = 4 * 10**12


async def test_a_stop_during_a_retry_backoff_stops_at_once_without_dead_lettering_or_committing(
    settings: Settings,
) -> None:
    # A message that fails, then a 30 s backoff: SIGTERM must neither wait it out nor give the message up.
    patient = settings.model_copy(
        update={"consumer_retries": 5, "consumer_retry_initial": 30.0, "consumer_retry_max": 30.0}
    )
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    event = event_from(
        event_type=Topic.USER_UPDATED,
        aggregate_type=AggregateType.USER,
        aggregate_id=user_id,
        aggregate_version=2,
        data={
            "id": user_id,
            "name": "Stop Probe",
            "email": "stop@example.com",
            "version": 2,
            "created_at": "2026-01-01T00:00:00+00:00",
            "updated_at": "2026-01-01T00:00:00+00:00",
        },  # fmt: skip
    )
    attempts: list[Any] = []

    async def handle(message: Event, record: Any) -> None:
        if message.aggregate_id == user_id:
            attempts.append(record)
            raise RuntimeError("the view cannot take it yet")

    group = f"stop-probe-{uuid.uuid4().hex[:8]}"
    producer = make_producer(patient)
    await producer.start()
    loop = ConsumerLoop(
        settings=patient,
        name="stop-probe",
        group_id=group,
        topics=[patient.topic(Topic.USER_UPDATED)],
        handle=handle,
        decode=decode_event,
        producer=producer,
        auto_offset_reset="latest",
    )
    stopping = asyncio.Event()
    running = asyncio.create_task(loop.run(stopping))
    try:
        await loop.wait_ready(timeout=30)
        dead_letters = {"topic": patient.topic(Topic.USER_UPDATED), "consumer": "stop-probe"}
        assert REGISTRY.get_sample_value("eventshop_dlq_messages_total", dead_letters) == 0.0  # shown from the start
        sent = await producer.send_and_wait(patient.topic(Topic.USER_UPDATED), event.to_bytes(), key=event.key)
        await eventually(lambda: _value(attempts))  # the first attempt failed: the loop now waits 30 s

        asked = time.monotonic()
        stopping.set()
        await asyncio.wait_for(running, 10)
        assert time.monotonic() - asked < 5
        assert REGISTRY.get_sample_value("eventshop_dlq_messages_total", dead_letters) == 0.0
    finally:
        stopping.set()
        await asyncio.gather(running, return_exceptions=True)
        await producer.stop()

    assert len(attempts) == 1 and loop.dead_lettered == 0
    # Not committed past the message: the group's next consumer gets it again.
    async with kafka_admin(patient) as admin:
        committed = await admin.list_consumer_group_offsets(group)
    position = committed.get(TopicPartition(sent.topic, sent.partition))
    assert position is None or position.offset <= sent.offset


async def _value(items: list[Any]) -> list[Any]:
    return items
