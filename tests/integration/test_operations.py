"""Operations on the real services: dead letters inspected and redriven, the read model rebuilt and switched
over while readers keep reading, and the write and read models verified against each other.

The stories: a projector bug sends a customer's event to the DLQ; the operator finds it, reads it, ships the
fix and redrives it, once. A shop's read model is rebuilt, from the write model and from Kafka, under live
reads. A view document gets corrupted; `eventshop verify` says where, and a rebuild repairs it.

Rebuilds and whole-model verifies run on a pipeline of their own (databases, topic prefix, relay, projector,
stock worker), so they neither see nor switch the collections other tests use.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from command.db import WriteDatabase
from command.handlers.cancel_order import CancelOrder, cancel_order
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.delete_product import delete_product
from command.handlers.pay_order import PayOrder, pay_order
from command.handlers.update_user import UpdateUser, update_user
from command.models import PaymentMethod
from eventshop.ops.dlq import DeadLetter, DeadLetters, RedriveLog, redrive
from eventshop.ops.rebuild import CollectionSet, RebuildReport, Source, rebuild
from eventshop.ops.topics import reader
from eventshop.ops.verify import comparable, differences
from projection.documents import UserView
from projection.kinds import VIEW_DOCUMENTS
from projection.projectors.users import UserProjector
from projection.queries import ReadModel
from projection.runner import ProjectionRunner
from shared.events import AggregateType, Event, Topic, UserEvent, dlq_topic
from shared.kafka.producer import make_producer
from shared.settings import Settings
from tests.conftest import RunningSystem, TopicTail, WriteModelProbe, eventually, unique
from tests.events import event_from
from tests.integration.shop import decided, stock_settles_at
from tests.labs import EVENTSHOP, ROOT, Lab, invoke, lab_of, process_env, running_system

FAKE_IDS_FROM = 3 * 10**12  # probe users of the DLQ story, far from real ids
Scope = dict[AggregateType, set[int]]


def eventshop(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `eventshop` console script, as an operator runs it."""
    return subprocess.run(
        [EVENTSHOP, *args],
        env=process_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- dead letters ---------------------------------------------------------------------------------------------


class BuggyUserProjector(UserProjector):
    """The real UserProjector with a bug for some users, until the fix ships (`fixed()`)."""

    def __init__(self, db: AsyncDatabase[Any], broken_for: set[int]) -> None:
        super().__init__(db)
        self.broken_for = broken_for

    def fixed(self) -> None:
        self.broken_for.clear()

    def view(self, event: UserEvent) -> UserView:
        if event.aggregate_id in self.broken_for:
            raise RuntimeError(f"projector bug: cannot project user {event.aggregate_id}")
        return super().view(event)


def probe_user_event(user_id: int) -> Event:
    data = {
        "id": user_id,
        "name": "Dora Deadletter",
        "email": f"dora{user_id}@example.com",
        "version": 1,
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "deleted_at": None,
    }
    return event_from(
        event_type=Topic.USER_CREATED,
        aggregate_type=AggregateType.USER,
        aggregate_id=user_id,
        aggregate_version=1,
        data=data,
        correlation_id=unique("corr"),
    )


@pytest.fixture
async def buggy_projection(
    settings: Settings, mongo: AsyncDatabase[Any]
) -> AsyncIterator[tuple[BuggyUserProjector, AsyncDatabase[Any]]]:
    """A second projector deployment with a bug, writing to a database of its own, on its own group."""
    own_db = mongo.client[f"{mongo.name}_ops_buggy"]
    projector = BuggyUserProjector(own_db, set())
    producer = make_producer(settings)
    await producer.start()
    runner = ProjectionRunner(
        [projector], producer, settings, group_id=f"test-ops-buggy-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest"
    )
    await runner.loop.start()
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    await runner.loop.wait_ready()
    yield projector, own_db
    stopping.set()
    await asyncio.wait_for(task, 30)
    await producer.stop()
    await mongo.client.drop_database(own_db.name)


async def dead_letter_of(settings: Settings, topic: str, key: bytes, consumer: str | None = None) -> DeadLetter:
    """Waits until a message with `key` is in `topic`'s DLQ (put there by `consumer`, if given)."""

    async def find() -> DeadLetter | None:
        async with reader(settings) as kafka:
            for message in await DeadLetters(settings, kafka).messages(settings.topic(dlq_topic(topic))):
                if message.key == key and consumer in (None, message.consumer):
                    return message
        return None

    found = await eventually(find, timeout=30)
    assert found is not None
    return found


async def test_a_dead_letter_is_listed_shown_and_redriven_once_after_the_fix(
    settings: Settings,
    write_db: WriteDatabase,
    system: RunningSystem,
    buggy_projection: tuple[BuggyUserProjector, AsyncDatabase[Any]],
) -> None:
    projector, own_db = buggy_projection
    user_id = FAKE_IDS_FROM + random.randrange(10**9)
    event = probe_user_event(user_id)
    projector.broken_for.add(user_id)

    # The buggy projector retries the customer's event, gives up and dead-letters it.
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(Topic.USER_CREATED), event.to_bytes(), key=event.key, headers=event.kafka_headers()
        )
    finally:
        await producer.stop()
    dead = await dead_letter_of(settings, Topic.USER_CREATED, event.key)
    assert dead.consumer == "projector" and dead.error_type == "RuntimeError"
    assert dead.attempts == str(settings.consumer_retries + 1)
    assert await own_db["users"].find_one({"_id": user_id}) is None
    where = f"{dead.partition}/{dead.offset}"

    # The operator sees the DLQ has messages, and which ones, and why.
    overview = await invoke(settings, "dlq", "list")
    assert overview.exit_code == 0, overview.output
    assert "user.created.dlq" in overview.output
    listing = await invoke(settings, "dlq", "list", "--topic", "user.created")
    assert listing.exit_code == 0, listing.output
    row = next(line for line in listing.output.splitlines() if where in line)
    for column in ("user.created", str(user_id), "RuntimeError", "projector bug", "projector"):
        assert column in row, row
    assert row.rstrip(" │").endswith("no"), row  # not redriven yet

    shown = await invoke(settings, "dlq", "show", "user.created.dlq", str(dead.partition), str(dead.offset))
    assert shown.exit_code == 0, shown.output
    for text in ("dlq.error_message", "projector bug", "dlq.original_topic", "correlation_id", str(event.event_id)):
        assert text in shown.output
    assert '"name": "Dora Deadletter"' in shown.output  # the value, pretty-printed JSON
    missing = await invoke(settings, "dlq", "show", "user.created.dlq", str(dead.partition), "999999999")
    assert missing.exit_code == 1

    # The fix ships; the redrive sends the message back exactly as it first travelled, and it is projected.
    projector.fixed()
    async with TopicTail(settings, Topic.USER_CREATED) as topic:
        redriven = await invoke(
            settings, "dlq", "redrive", "--topic", "user.created.dlq",
            "--partition", str(dead.partition), "--offset", str(dead.offset),
        )  # fmt: skip
        assert redriven.exit_code == 0, redriven.output
        assert "1 redriven, 0 skipped" in redriven.output
        records = await topic.collect(lambda rs: any(r.key == event.key for r in rs))
    (again,) = [r for r in records if r.key == event.key]
    assert again.value == dead.value and again.key == dead.key
    assert list(again.headers) == dead.original_headers() == event.kafka_headers()
    view = await eventually(lambda: own_db["users"].find_one({"_id": user_id}))
    assert view is not None and view["name"] == "Dora Deadletter"

    # The redrive is on record: listed as redriven, and a second redrive is skipped unless forced.
    assert dead.position in await RedriveLog(write_db).redriven(dead.topic)
    listing = await invoke(settings, "dlq", "list", "--topic", "user.created.dlq")
    assert next(line for line in listing.output.splitlines() if where in line).rstrip(" │").endswith("yes")
    second = await invoke(
        settings,
        "dlq",
        "redrive",
        "-t",
        "user.created",
        "--partition",
        str(dead.partition),
        "--offset",
        str(dead.offset),
    )
    assert second.exit_code == 0 and "0 redriven, 1 skipped" in second.output, second.output
    producer = make_producer(settings)
    await producer.start()
    try:
        forced = await redrive([dead], producer=producer, log=RedriveLog(write_db), force=True)
    finally:
        await producer.stop()
    assert forced.redriven == [dead]


async def test_an_undecodable_message_is_shown_raw_and_redrive_needs_a_choice(
    settings: Settings, system: RunningSystem
) -> None:
    key = unique("raw").encode()
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(Topic.PRODUCT_UPDATED), b"\x00not json at all", key=key)
    finally:
        await producer.stop()
    dead = await dead_letter_of(settings, Topic.PRODUCT_UPDATED, key, consumer="projector")
    assert dead.error_type == "PoisonMessage" and dead.attempts == "0"

    shown = await invoke(settings, "dlq", "show", "product.updated.dlq", str(dead.partition), str(dead.offset))
    assert shown.exit_code == 0, shown.output
    assert "value (not JSON)" in shown.output and "not json at all" in shown.output

    neither = await invoke(settings, "dlq", "redrive", "--topic", "product.updated.dlq")
    both = await invoke(settings, "dlq", "redrive", "--topic", "product.updated.dlq", "--all", "--partition", "0")
    assert neither.exit_code == both.exit_code == 2


# --- a lab of their own for rebuilds and verifies -----------------------------------------------------------


@pytest.fixture(scope="module")
async def lab(settings: Settings) -> AsyncIterator[Lab]:
    """Databases, topics, relay, projector and stock worker that only this module uses."""
    async with lab_of(settings, "ops") as lab, running_system(lab.settings, lab.write_db, lab.mongo):
        yield lab


async def new_user(db: WriteDatabase, name: str) -> int:
    user = await create_user(db, CreateUser(name, f"{unique('ops')}@example.com"))
    assert user.id is not None
    return user.id


async def new_product(db: WriteDatabase, name: str, price: str, stock: int) -> int:
    product = await create_product(db, CreateProduct(name, Decimal(price), stock))
    assert product.id is not None
    return product.id


async def new_order(db: WriteDatabase, user_id: int, *lines: tuple[int, int]) -> int:
    order = await create_order(db, CreateOrder(user_id, tuple(RequestedLine(p, q) for p, q in lines)))
    return order.id


async def shop_history(lab: Lab) -> Scope:
    """A customer who bought, paid, changed their name and canceled; a product withdrawn. Returns their ids.

    The commands run the real handlers; the lab's relay, stock worker and projector do the rest."""
    db = lab.write_db
    customer = await new_user(db, "Olga Operator")
    lamp = await new_product(db, "Ops lamp", "24.90", 10)
    bulb = await new_product(db, "Ops bulb", "1.25", 50)
    withdrawn = await new_product(db, "Ops candle", "3.00", 5)
    paid = await new_order(db, customer, (lamp, 1), (bulb, 4))
    assert await decided(WriteModelProbe(db), str(paid)) == "RESERVED"
    await pay_order(db, PayOrder(paid, PaymentMethod.PIX))
    await update_user(db, UpdateUser(customer, name="Olga O. Operator"))  # orders carry the new name
    canceled = await new_order(db, customer, (bulb, 2))
    assert await decided(WriteModelProbe(db), str(canceled)) == "RESERVED"
    await cancel_order(db, CancelOrder(canceled, "changed my mind"))
    # The stock worker puts the canceled order's bulbs back on its own time: until it has, the views can match
    # the write model and still have that release ahead of them (a rebuild would then see more than `live`).
    await stock_settles_at(WriteModelProbe(db), str(bulb), 50 - 4)
    await delete_product(db, withdrawn)
    return {
        AggregateType.USER: {customer},
        AggregateType.PRODUCT: {lamp, bulb, withdrawn},
        AggregateType.ORDER: {paid, canceled},
    }


async def views_caught_up(lab: Lab) -> None:
    """Until every view matches the write model exactly (the projection lag is over)."""
    last: list[Any] = []

    async def clean() -> bool:
        nonlocal last
        last = await differences(lab.write_db, lab.mongo)
        return not last

    try:
        await eventually(clean, timeout=30)
    except AssertionError:
        raise AssertionError(f"views still differ from the write model: {last}") from None


async def all_documents(mongo: AsyncDatabase[Any], names: dict[str, str] | None = None) -> dict[str, list[Any]]:
    """Every view document, per view, read from the collections `names` gives (the live ones by default),
    without what a view holds of another aggregate as of its own newest event (which a rebuild renews)."""
    found = {}
    for view in VIEW_DOCUMENTS:
        collection = mongo[(names or {}).get(view.collection, view.collection)]
        found[view.collection] = [
            comparable({k: v for k, v in doc.items() if k not in view.as_of_event})
            async for doc in collection.find().sort("_id", 1)
        ]
    return found


# --- rebuild and switch-over ----------------------------------------------------------------------------------


@dataclass
class Readers:
    """A reader asking for a user and an order all along: when each answer came, and whether it found both."""

    read_model: ReadModel
    user_id: int
    order_id: int
    answers: list[tuple[float, float, bool]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    async def __aenter__(self) -> Readers:
        self.stopping = asyncio.Event()
        self.task = asyncio.create_task(self.read())
        await self.more_answers(3)
        return self

    async def more_answers(self, count: int) -> None:
        """Until `count` more reads were answered (or failed) than now."""
        target = len(self.answers) + len(self.errors) + count

        async def enough() -> bool:
            return len(self.answers) + len(self.errors) >= target

        await eventually(enough)

    async def read(self) -> None:
        while not self.stopping.is_set():
            asked = time.monotonic()
            try:
                user = await self.read_model.user(self.user_id)
                order = await self.read_model.order(self.order_id)
            except Exception as exc:
                self.errors.append(exc)
            else:
                self.answers.append((asked, time.monotonic(), user is not None and order is not None))

    async def __aexit__(self, *exc: object) -> None:
        await self.more_answers(3)  # reads that began after the rebuild returned
        self.stopping.set()
        await self.task

    def assert_answered_throughout(self, report: RebuildReport) -> None:
        """Every read answered; only a read that overlapped the renames may have found nothing."""
        window = (report.switch.started, report.switch.finished)
        assert not self.errors, self.errors
        misses = [(a, b) for a, b, found in self.answers if not found]
        assert all(a <= window[1] and b >= window[0] for a, b in misses), (misses, window)
        assert any(b < window[0] for a, b, _ in self.answers) and any(a > window[1] for a, b, _ in self.answers)


@pytest.mark.parametrize("source", list(Source))
async def test_the_read_model_is_rebuilt_while_readers_keep_reading(lab: Lab, source: Source) -> None:
    scope = await shop_history(lab)
    await views_caught_up(lab)
    live = await all_documents(lab.mongo)
    indexes = {d.collection: set(await lab.mongo[d.collection].index_information()) for d in VIEW_DOCUMENTS}

    async def same_as_live(fresh: CollectionSet) -> None:  # before any reader sees them
        assert await all_documents(lab.mongo, fresh.names) == live

    reading = Readers(lab.read_model, min(scope[AggregateType.USER]), min(scope[AggregateType.ORDER]))
    async with reading:
        report = await rebuild(
            source, settings=lab.settings, write_db=lab.write_db, read_db=lab.mongo, before_switch=same_as_live
        )
    reading.assert_answered_throughout(report)

    # Same documents, same indexes, under the same names; nothing left behind.
    assert await all_documents(lab.mongo) == live
    assert report.documents == report.previous == {name: len(docs) for name, docs in live.items()}
    for name, names in indexes.items():
        assert set(await lab.mongo[name].index_information()) == names
    collections = set(await lab.mongo.list_collection_names())
    assert collections == {"users", "products", "orders"}, collections
    assert report.dropped == [f"{v}_old_{report.stamp}" for v in ("users", "products", "orders")] + report.switch.strays

    # The live projector writes to the new collections from now on.
    customer = min(scope[AggregateType.USER])
    await update_user(lab.write_db, UpdateUser(customer, name=f"Olga after the {source.value} rebuild"))
    await views_caught_up(lab)


def renamed_during_build(lab: Lab, user_id: int, name: str) -> Callable[[CollectionSet], Awaitable[None]]:
    """A `before_switch` hook: the customer renames themself once the fresh collections are built, and the live
    projector puts that into the collections readers still use (the old ones, a moment later)."""

    async def rename(fresh: CollectionSet) -> None:
        await update_user(lab.write_db, UpdateUser(user_id, name=name))
        await eventually(lambda: lab.mongo["users"].find_one({"_id": user_id, "name": name}))

    return rename


@pytest.mark.parametrize("source", list(Source))
async def test_changes_made_during_a_rebuild_reach_the_new_collections(lab: Lab, source: Source) -> None:
    """The live projector writes to the old collections until the switch; the catch-up carries that over."""
    customer = await new_user(lab.write_db, "Mid Rebuild")
    await views_caught_up(lab)
    name = f"Renamed during the {source.value} rebuild"
    report = await rebuild(
        source,
        settings=lab.settings,
        write_db=lab.write_db,
        read_db=lab.mongo,
        before_switch=renamed_during_build(lab, customer, name),
    )
    assert report.caught_up >= 1
    view = await lab.mongo["users"].find_one({"_id": customer})
    assert view is not None and view["name"] == name
    await views_caught_up(lab)


# --- verify ------------------------------------------------------------------------------------------------------


async def test_verify_is_clean_then_finds_a_corrupted_view_until_a_rebuild_repairs_it(lab: Lab) -> None:
    scope = await shop_history(lab)
    await views_caught_up(lab)
    clean = await asyncio.to_thread(eventshop, lab.settings, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "read model matches the write model" in clean.stdout

    # Someone edits views by hand, loses one, and leaves a stray one behind.
    customer, (paid, canceled), lamp = (
        min(scope[AggregateType.USER]),
        sorted(scope[AggregateType.ORDER]),
        min(scope[AggregateType.PRODUCT]),
    )
    await lab.mongo["users"].update_one({"_id": customer}, {"$set": {"name": "Mallory"}})
    order = await lab.mongo["orders"].find_one({"_id": paid})
    assert order is not None
    order["items"][1]["quantity"] = 40
    order["paid_at"] = order["paid_at"].replace(year=2001)
    await lab.mongo["orders"].replace_one({"_id": paid}, order)
    await lab.mongo["products"].delete_one({"_id": lamp})
    await lab.mongo["orders"].insert_one({**order, "_id": canceled + 10**6})

    found = {(d.kind, d.id, d.field): (d.expected, d.actual) for d in await differences(lab.write_db, lab.mongo)}
    assert found[(AggregateType.USER, customer, "name")] == ("Olga O. Operator", "Mallory")
    assert found[(AggregateType.ORDER, paid, "items[1].quantity")] == (4, 40)
    assert found[(AggregateType.ORDER, paid, "paid_at")][1].year == 2001
    assert found[(AggregateType.PRODUCT, lamp, "_id")] == ("view document", "missing")
    assert found[(AggregateType.ORDER, canceled + 10**6, "_id")][1] == "unexpected view document"
    assert len(found) == 5

    dirty = await asyncio.to_thread(eventshop, lab.settings, "verify", "--settle", "0", "--limit", "2")
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert "5 difference(s) (3 not shown; --limit)" in dirty.stdout
    assert "Mallory" in dirty.stdout and "name" in dirty.stdout

    rebuilt = await invoke(lab.settings, "projection", "rebuild", "--from", "write-model", "--yes")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "switched over" in rebuilt.output and "dropped the replaced collections" in rebuilt.output
    again = await asyncio.to_thread(eventshop, lab.settings, "verify")
    assert again.returncode == 0, again.stdout + again.stderr


async def test_a_rebuild_without_confirmation_changes_nothing(lab: Lab) -> None:
    before = sorted(await lab.mongo.list_collection_names())
    declined = await invoke(lab.settings, "projection", "rebuild", "--from", "kafka", stdin="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert sorted(await lab.mongo.list_collection_names()) == before
