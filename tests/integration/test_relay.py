"""The outbox relay on real MariaDB and Kafka: exactly once in a normal run, in order per key,
one leader among several relays, and at-least-once (never lost) across a crash."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from command.db import WriteDatabase
from command.relay import OutboxRelay
from projection.queries import ReadModel
from shared.events import Topic, UserSnapshot, UserUpdated
from shared.kafka.producer import make_producer
from shared.settings import Settings
from tests.conftest import RunningSystem, TopicTail, eventually
from tests.labs import kill_sessions

FAKE_IDS_FROM = 10**12  # far above real ids: these probe users never meet real ones


def probe_user(user_id: int, version: int) -> dict[str, Any]:
    now = "2026-01-01T00:00:00+00:00"
    return {
        "id": user_id,
        "name": f"relay probe v{version}",
        "email": f"probe{user_id}@example.com",
        "version": version,
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
    }


async def write_events(db: WriteDatabase, keys: list[int], versions: int) -> list[str]:
    """One transaction per event, keys interleaved, versions ascending per key."""
    event_ids = []
    for version in range(1, versions + 1):
        for key in keys:
            async with db.transaction() as tx:
                event = UserUpdated.of(UserSnapshot.model_validate(probe_user(key, version)))
                await tx.write_outbox([event])
                event_ids.append(str(event.event_id))
    return event_ids


async def unpublished(db: WriteDatabase) -> int:
    """The rows not yet published. These tests KILL the pool's sessions at any moment: a count that meets a killed
    session (a pooled connection in use within the last second is not pinged) is asked once more, on the pool that
    SQLAlchemy renewed after the disconnect."""
    for attempt in (1, 2):
        try:
            async with db.engine.connect() as conn:
                return (await conn.exec_driver_sql("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")).scalar()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


class RelayProcess:
    """A relay with its own producer, as a separate `eventshop relay` process would have."""

    def __init__(self, db: WriteDatabase, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.stopping = asyncio.Event()

    async def __aenter__(self) -> OutboxRelay:
        self.producer = make_producer(self.settings)
        await self.producer.start()
        self.relay = OutboxRelay(self.db, self.producer, self.settings)
        self.task = asyncio.create_task(self.relay.run(self.stopping))
        return self.relay

    async def __aexit__(self, *exc: object) -> None:
        self.stopping.set()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.producer.stop()


def by_event_id(records: list[Any], wanted: set[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        event_id = json.loads(record.value)["event_id"]
        if event_id in wanted:
            found[event_id].append(record)
    return found


@pytest.fixture(params=["mark", "delete"])
def completion(request: pytest.FixtureRequest, relay_settings: Settings) -> Settings:
    """The relay's settings with each OUTBOX_COMPLETION: rows marked published, or deleted."""
    return relay_settings.model_copy(update={"outbox_completion": request.param})


def seen_all(wanted: set[str]) -> Any:
    return lambda records: wanted <= set(by_event_id(records, wanted))


async def test_every_committed_row_is_published_exactly_once_and_in_order_per_key(
    relay_db: WriteDatabase, completion: Settings
) -> None:
    keys = [FAKE_IDS_FROM + random.randrange(10**9) for _ in range(6)]
    async with TopicTail(completion, Topic.USER_UPDATED) as tail:
        event_ids = await write_events(relay_db, keys, versions=40)
        async with RelayProcess(relay_db, completion):
            records = await tail.collect(seen_all(set(event_ids)))
            await eventually(lambda: _is_zero(unpublished(relay_db)))
        records = await tail.collect_to_end()  # late duplicates too: there must be none
    found = by_event_id(records, set(event_ids))
    assert all(len(copies) == 1 for copies in found.values())
    versions_per_key: dict[bytes, list[int]] = defaultdict(list)
    partitions_per_key: dict[bytes, set[int]] = defaultdict(set)
    for record in sorted((r for copies in found.values() for r in copies), key=lambda r: (r.partition, r.offset)):
        versions_per_key[record.key].append(json.loads(record.value)["aggregate_version"])
        partitions_per_key[record.key].add(record.partition)
    assert {k: v for k, v in versions_per_key.items()} == {str(k).encode(): list(range(1, 41)) for k in keys}
    assert all(len(p) == 1 for p in partitions_per_key.values())  # keyed by aggregate id
    # Completed as configured: marked published and kept for the retention period, or deleted.
    async with relay_db.engine.connect() as conn:
        marks = ", ".join(["%s"] * len(event_ids))
        kept = await conn.exec_driver_sql(
            f"SELECT COUNT(*), COUNT(published_at) FROM outbox WHERE event_id IN ({marks})", tuple(event_ids)
        )
        rows, marked = kept.one()
    assert (rows, marked) == ((240, 240) if completion.outbox_completion == "mark" else (0, 0))


def versions_in_kafka_order(records: list[Any]) -> dict[bytes, list[int]]:
    """Per key, the aggregate versions in the order a consumer of the partition reads them."""
    versions: dict[bytes, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        versions[record.key].append(json.loads(record.value)["aggregate_version"])
    return versions


async def test_small_batches_completed_while_the_next_one_is_sent_publish_every_row_once_in_order(
    relay_db: WriteDatabase, completion: Settings
) -> None:
    # Batches of 7 with writers still committing: every batch is read while the one before is being
    # completed (or, with `delete`, still waits for its acks), and rows committed meanwhile land below,
    # inside and above the ranges in flight.
    settings = completion.model_copy(update={"outbox_batch_size": 7})
    keys = [FAKE_IDS_FROM + random.randrange(10**9) for _ in range(5)]
    async with TopicTail(settings, Topic.USER_UPDATED) as tail:
        async with RelayProcess(relay_db, settings) as relay:
            written = await asyncio.gather(*(write_events(relay_db, [key], versions=25) for key in keys))
            event_ids = {event_id for ids in written for event_id in ids}
            await tail.collect(seen_all(event_ids))
            await eventually(lambda: _is_zero(unpublished(relay_db)))
            assert relay.published == len(event_ids)
        records = await tail.collect_to_end()
    found = by_event_id(records, event_ids)
    assert len(found) == len(event_ids) and all(len(copies) == 1 for copies in found.values())
    ours = [copy for copies in found.values() for copy in copies]
    assert versions_in_kafka_order(ours) == {str(k).encode(): list(range(1, 26)) for k in keys}


async def test_a_failed_completion_republishes_its_batches_and_loses_nothing(
    relay_db: WriteDatabase, completion: Settings
) -> None:
    settings = completion.model_copy(update={"outbox_batch_size": 5})
    key = FAKE_IDS_FROM + random.randrange(10**9)
    event_ids = set(await write_events(relay_db, [key], versions=12))
    failed: list[list[int]] = []
    async with TopicTail(settings, Topic.USER_UPDATED) as tail:
        async with RelayProcess(relay_db, settings) as relay:
            complete = relay.publisher.complete

            async def complete_fails_once(conn: Any, ids: list[int]) -> None:
                if not failed:
                    failed.append(ids)
                    raise ConnectionResetError("lost the database while completing")
                await complete(conn, ids)

            relay.publisher.complete = complete_fails_once  # type: ignore[method-assign]
            await eventually(lambda: _is_zero(unpublished(relay_db)))
            records = await tail.collect(seen_all(event_ids))
        records = await tail.collect_to_end()
    assert failed, "the relay never completed anything"
    found = by_event_id(records, event_ids)
    copies = sorted(len(c) for c in found.values())
    assert len(found) == 12 and copies[0] >= 1 and copies[-1] == 2  # the failed batch twice, nothing lost
    # Republishing repeats a suffix, never reorders: the first copies arrive in version order.
    first_seen = list(
        dict.fromkeys(versions_in_kafka_order([c for cs in found.values() for c in cs])[str(key).encode()])
    )
    assert first_seen == list(range(1, 13))


async def test_with_two_relays_only_the_leader_publishes_and_the_standby_takes_over(
    relay_db: WriteDatabase, relay_settings: Settings
) -> None:
    keys = [FAKE_IDS_FROM + random.randrange(10**9) for _ in range(3)]
    async with TopicTail(relay_settings, Topic.USER_UPDATED) as tail:
        async with RelayProcess(relay_db, relay_settings) as first:
            await eventually(lambda: _true(first.is_leader))
            async with RelayProcess(relay_db, relay_settings) as second:
                batch = await write_events(relay_db, keys, versions=10)
                await tail.collect(seen_all(set(batch)))
                await eventually(lambda: _true(first.published >= len(batch)))
                assert second.published == 0 and not second.is_leader
            # Now the leader stops; a new standby takes over the lock and publishes what follows.
        async with RelayProcess(relay_db, relay_settings) as third:
            batch2 = await write_events(relay_db, keys, versions=3)
            records = await tail.collect(seen_all(set(batch2)))
            await eventually(lambda: _true(third.published >= len(batch2)))
            assert third.is_leader
    found = by_event_id(records, set(batch) | set(batch2))
    assert all(len(copies) == 1 for copies in found.values())


async def test_a_relay_failing_while_it_takes_leadership_leaves_the_lock_free_for_a_standby(
    relay_db: WriteDatabase, relay_settings: Settings
) -> None:
    doomed = OutboxRelay(relay_db, make_producer(relay_settings), relay_settings)
    connect = doomed.leadership._autocommit_connection
    opened: list[object] = []

    async def second_connection_refused() -> Any:
        opened.append(None)
        if len(opened) == 2:  # the lock is taken on the first; the second cannot be opened
            raise ConnectionRefusedError("too many connections")
        return await connect()

    doomed.leadership._autocommit_connection = second_connection_refused  # type: ignore[method-assign]
    with pytest.raises(ConnectionRefusedError):
        await doomed.hold_leadership()
    assert not doomed.is_leader
    other_process = WriteDatabase(relay_settings.mysql_dsn)  # its own pool, as another process has
    try:
        standby = OutboxRelay(other_process, make_producer(relay_settings), relay_settings)
        assert await standby.hold_leadership()  # the session that took the lock ended: not kept in the pool
        await standby.release_leadership()
    finally:
        await other_process.dispose()


async def test_a_relay_killed_between_publish_and_completion_republishes_and_the_view_stays_right(
    relay_db: WriteDatabase, completion: Settings, read_model: ReadModel, system: RunningSystem
) -> None:
    key = FAKE_IDS_FROM + random.randrange(10**9)
    async with TopicTail(completion, Topic.USER_UPDATED) as tail:
        event_ids = await write_events(relay_db, [key], versions=5)

        class Crash(BaseException):
            pass

        doomed = RelayProcess(relay_db, completion)
        async with doomed as relay:

            async def crash_before_completing(conn: object, ids: list[int]) -> None:
                raise Crash("killed after Kafka acked, before the rows were marked or deleted")

            relay.publisher.complete = crash_before_completing  # type: ignore[method-assign]
            await tail.collect(seen_all(set(event_ids)))
            with pytest.raises(Crash):
                await doomed.task  # the relay dies as a killed process would
        assert await unpublished(relay_db) == 5  # the crash left every row unpublished

        async with RelayProcess(relay_db, completion):
            await eventually(lambda: _is_zero(unpublished(relay_db)))
        records = await tail.collect(
            lambda r: (
                len(by_event_id(r, set(event_ids))) == 5
                and all(len(c) == 2 for c in by_event_id(r, set(event_ids)).values())
            )
        )
    # At least once: every event twice, never lost. Idempotent projection: the view is at the last version.
    assert sorted(len(c) for c in by_event_id(records, set(event_ids)).values()) == [2] * 5

    async def projected() -> bool:
        doc = await read_model.user(key)
        return doc is not None and doc.version == 5

    await eventually(projected)
    assert (await read_model.user(key)).name == "relay probe v5"  # type: ignore[union-attr]


async def test_purge_removes_old_published_rows_expired_idempotency_keys_and_old_processed_events_only(
    relay_db: WriteDatabase, relay_settings: Settings
) -> None:
    run = random.randrange(10**9)
    keys = {f"expired-{run}": "- INTERVAL 1 SECOND", f"live-{run}": "+ INTERVAL 1 HOUR"}
    retention = int(relay_settings.processed_events_retention_seconds)
    handled = {
        f"old-{run}": f"- INTERVAL {retention + 60} SECOND",
        f"recent-{run}": f"- INTERVAL {retention - 60} SECOND",
    }
    async with relay_db.engine.begin() as conn:
        for key, offset in keys.items():
            await conn.exec_driver_sql(
                "INSERT INTO idempotency_keys (operation, `key`, request_hash, response, created_at, expires_at) "
                f"VALUES ('createOrder', %s, 'h', '{{}}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) {offset})",
                (key,),
            )
        for event_id, offset in handled.items():
            await conn.exec_driver_sql(
                "INSERT INTO processed_events (consumer, event_id, processed_at) "
                f"VALUES ('relay-test', %s, UTC_TIMESTAMP(6) {offset})",
                (event_id,),
            )
    await write_events(relay_db, [FAKE_IDS_FROM + random.randrange(10**9)], versions=3)
    async with relay_db.engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE outbox SET published_at = NOW(6) - INTERVAL 30 DAY WHERE published_at IS NULL ORDER BY id LIMIT 2"
        )
        total_before = (await conn.exec_driver_sql("SELECT COUNT(*) FROM outbox")).scalar()
        old = (
            await conn.exec_driver_sql("SELECT COUNT(*) FROM outbox WHERE published_at < NOW(6) - INTERVAL 7 DAY")
        ).scalar()
    relay = OutboxRelay(relay_db, make_producer(relay_settings), relay_settings)
    assert (await relay.purge()).outbox == old
    async with relay_db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT COUNT(*) FROM outbox")).scalar() == total_before - old
        assert await unpublished(relay_db) >= 1  # unpublished rows are never purged
        left = await conn.exec_driver_sql("SELECT `key` FROM idempotency_keys WHERE `key` IN (%s, %s)", tuple(keys))
        assert [row[0] for row in left] == [f"live-{run}"]
        kept = await conn.exec_driver_sql(
            "SELECT event_id FROM processed_events WHERE event_id IN (%s, %s)", tuple(handled)
        )
        assert [row[0] for row in kept] == [f"recent-{run}"]
    async with RelayProcess(relay_db, relay_settings):  # leave the outbox drained for the next test
        await eventually(lambda: _is_zero(unpublished(relay_db)))


async def _is_zero(count: Any) -> bool:
    return await count == 0


async def _true(value: bool) -> bool:
    return value


async def test_a_relay_whose_sessions_are_killed_while_writers_commit_publishes_every_row(
    relay_db: WriteDatabase, completion: Settings
) -> None:
    """The relay's lock and completion sessions die three times while events are committed: each time it loses
    leadership, takes it again on fresh sessions and goes on; every row reaches Kafka (at least once)."""
    keys = [FAKE_IDS_FROM + random.randrange(10**9) for _ in range(5)]
    own_pool = WriteDatabase(completion.mysql_dsn, pool_size=4)  # the relay's own process
    cuts: list[int] = []
    try:
        async with TopicTail(completion, Topic.USER_UPDATED) as tail:
            async with RelayProcess(own_pool, completion) as relay:
                event_ids: list[str] = []
                for version in range(1, 31):
                    event_ids += await write_events_once(relay_db, keys, version)
                    if version in (8, 16, 24):
                        await eventually(lambda: _leading(relay), timeout=30)
                        cuts.append(await kill_sessions(relay_db))
                records = await tail.collect(seen_all(set(event_ids)), timeout=60)
                await eventually(lambda: _is_zero(unpublished(relay_db)), timeout=60)
    finally:
        await own_pool.dispose()
    assert len(cuts) == 3 and all(cuts), cuts  # the relay's sessions were there to kill each time
    assert set(event_ids) <= set(by_event_id(records, set(event_ids)))


async def write_events_once(db: WriteDatabase, keys: list[int], version: int) -> list[str]:
    """One event per key at `version`, each in its own transaction; retried when the cut took its session."""
    written = []
    for key in keys:
        while True:
            try:
                async with db.transaction() as tx:
                    event = UserUpdated.of(UserSnapshot.model_validate(probe_user(key, version)))
                    await tx.write_outbox([event])
                break
            except Exception:  # noqa: BLE001 - the session was killed before the commit: nothing was written
                continue
        written.append(str(event.event_id))
    return written


async def _leading(relay: OutboxRelay) -> bool:
    return relay.is_leader


MOMENTS = ("idle", "mid-read", "mid-complete", "mid-get-lock")


class CutAt:
    """Kills every session of the relay's database at one moment of the relay's work, once armed: while it
    idles, just before it reads a batch, completes one or takes the lock (the statement then meets a dead
    session, as after a MariaDB restart or a network cut at that instant)."""

    def __init__(self, relay: OutboxRelay, killer: WriteDatabase, moment: str) -> None:
        self.killer = killer
        self.moment = moment
        self.armed = False
        self.killed: list[int] = []
        publisher, leadership = relay.publisher, relay.leadership
        pending, complete, connect = publisher.pending, publisher.complete, leadership._autocommit_connection

        async def cut_then_read(conn: Any, excluded: list[int]) -> Any:
            await self._cut_if("mid-read")
            return await pending(conn, excluded)

        async def cut_then_complete(conn: Any, ids: list[int]) -> None:
            await self._cut_if("mid-complete")
            await complete(conn, ids)

        async def connect_then_cut() -> Any:
            conn = await connect()
            await self._cut_if("mid-get-lock")  # the lock's session, killed before GET_LOCK runs on it
            return conn

        publisher.pending = cut_then_read  # type: ignore[method-assign]
        publisher.complete = cut_then_complete  # type: ignore[method-assign]
        leadership._autocommit_connection = connect_then_cut  # type: ignore[method-assign]

    async def _cut_if(self, moment: str) -> None:
        if self.armed and self.moment == moment:
            self.armed = False
            self.killed.append(await kill_sessions(self.killer))


@pytest.mark.parametrize("moment", MOMENTS)
async def test_a_relay_whose_sessions_die_at_any_moment_leads_again_and_publishes_every_row(
    relay_db: WriteDatabase, relay_settings: Settings, moment: str
) -> None:
    """The CI flake of test_seed: after one `relay.error` (a session killed under it) the relay published
    nothing more. Giving leadership up after the error failed on the dead completion session and ended the
    relay's task. Now each cut costs one error, the relay leads again on fresh sessions, and every row goes."""
    keys = [FAKE_IDS_FROM + random.randrange(10**9) for _ in range(3)]
    own_pool = WriteDatabase(relay_settings.mysql_dsn, signal=relay_db.signal, pool_size=4)  # its own process
    settings = relay_settings.model_copy(update={"outbox_batch_size": 4})
    try:
        async with TopicTail(settings, Topic.USER_UPDATED) as tail:
            process = RelayProcess(own_pool, settings)
            async with process as relay:
                cutter = CutAt(relay, relay_db, moment)
                first = await write_events(relay_db, keys, versions=3)  # every session has done some work
                await tail.collect(seen_all(set(first)))
                await eventually(lambda: _is_zero(unpublished(relay_db)))
                cutter.armed = True
                if moment == "idle":
                    await cutter._cut_if("idle")
                elif moment == "mid-get-lock":
                    await relay.release_leadership()  # it takes the lock again at once: the cut meets that
                later = [e for version in range(4, 8) for e in await write_events_once(relay_db, keys, version)]
                await tail.collect(seen_all(set(first) | set(later)), timeout=30)
                await eventually(lambda: _is_zero(unpublished(relay_db)), timeout=30)
                assert not process.task.done(), "the relay's task ended"
                await eventually(lambda: _true(relay.is_leader))
            assert cutter.killed and all(cutter.killed), cutter.killed  # the cut happened, and killed sessions
    finally:
        await own_pool.dispose()
