"""KnownTotals: a total is counted again after every announced change of its view kind, after its maximum age,
and whenever the feed is not following; a change announced while a count ran is never hidden by it."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from pymongo.asynchronous.collection import AsyncCollection

from gateway.feed import ViewFeed
from gateway.totals import KnownTotals
from projection.store import Doc
from shared.events import AggregateType
from tests.conftest import make_test_settings
from tests.doubles import Clock

PRODUCT, ORDER = AggregateType.PRODUCT, AggregateType.ORDER


class Store:
    """What `count` asks of a collection: its name and the database's `count` command (counted here)."""

    def __init__(self) -> None:
        self.total = 10
        self.counted: list[Doc] = []
        self.gate: asyncio.Event | None = None  # when set, a count waits for it (a count in flight)
        self.entered = asyncio.Event()  # set when a count reached the store

    async def command(self, name: str, collection: str, *, query: Doc) -> dict[str, Any]:
        assert (name, collection) == ("count", "products")
        self.counted.append(query)
        self.entered.set()
        total = self.total
        if self.gate is not None:
            await self.gate.wait()
        return {"n": total, "ok": 1.0}


class Collection:
    def __init__(self, store: Store) -> None:
        self.database, self.name, self.full_name = store, "products", "shop.products"


def following(max_age: float = 2.0, **kw: Any) -> tuple[KnownTotals, Store, AsyncCollection[Doc], Clock]:
    store, clock = Store(), Clock(100.0)
    totals = KnownTotals(max_age, clock=clock, **kw)
    totals.following = True
    return totals, store, cast(AsyncCollection[Doc], Collection(store)), clock


IN_STOCK: Doc = {"deleted": False, "in_stock": True}


async def test_a_total_is_counted_once_until_its_view_kind_changes() -> None:
    totals, store, products, _ = following()
    assert await totals.count(PRODUCT, products, IN_STOCK) == 10
    store.total = 11  # changed in the store, not announced yet
    assert await totals.count(PRODUCT, products, {"in_stock": True, "deleted": False}) == 10  # same filter
    assert len(store.counted) == 1
    totals.changed(ORDER)  # another view kind: no effect on product totals
    assert await totals.count(PRODUCT, products, IN_STOCK) == 10
    totals.changed(PRODUCT)
    assert await totals.count(PRODUCT, products, IN_STOCK) == 11
    assert len(store.counted) == 2


async def test_each_filter_has_its_own_total() -> None:
    totals, store, products, _ = following()
    await totals.count(PRODUCT, products, IN_STOCK)
    store.total = 3
    assert await totals.count(PRODUCT, products, {"deleted": False, "price_cents": {"$gte": 100}}) == 3
    assert await totals.count(PRODUCT, products, IN_STOCK) == 10


async def test_a_change_announced_while_counting_is_not_hidden_by_that_count() -> None:
    totals, store, products, _ = following()
    store.gate = asyncio.Event()
    counting = asyncio.create_task(totals.count(PRODUCT, products, IN_STOCK))
    await store.entered.wait()
    totals.changed(PRODUCT)  # the count may or may not have seen this change
    store.gate.set()
    assert await counting == 10
    store.gate, store.total = None, 12
    assert await totals.count(PRODUCT, products, IN_STOCK) == 12


async def test_a_total_is_counted_again_once_it_is_older_than_its_maximum_age() -> None:
    totals, store, products, clock = following(max_age=2.0)
    await totals.count(PRODUCT, products, IN_STOCK)
    store.total = 13
    clock.now += 1.9
    assert await totals.count(PRODUCT, products, IN_STOCK) == 10
    clock.now += 0.2
    assert await totals.count(PRODUCT, products, IN_STOCK) == 13


async def test_every_total_is_counted_while_the_feed_does_not_follow_or_with_no_maximum_age() -> None:
    totals, store, products, _ = following()
    totals.following = False
    for _ in range(3):
        await totals.count(PRODUCT, products, IN_STOCK)
    assert len(store.counted) == 3
    never_kept, store2, products2, _ = following(max_age=0)
    for _ in range(3):
        await never_kept.count(PRODUCT, products2, IN_STOCK)
    assert len(store2.counted) == 3


async def test_forgetting_drops_every_total_and_any_count_still_running() -> None:
    totals, store, products, _ = following()
    await totals.count(PRODUCT, products, {"deleted": False})
    store.gate, store.entered = asyncio.Event(), asyncio.Event()
    counting = asyncio.create_task(totals.count(PRODUCT, products, IN_STOCK))
    await store.entered.wait()
    totals.forget()  # the feed stopped
    store.gate.set()
    await counting
    store.gate, store.total = None, 20
    assert await totals.count(PRODUCT, products, {"deleted": False}) == 20
    assert await totals.count(PRODUCT, products, IN_STOCK) == 20


async def test_the_least_recently_used_total_goes_first() -> None:
    totals, store, products, _ = following(kept=2)
    a, b, c = ({"deleted": False, "stock": n} for n in range(3))
    for query in (a, b, a, c):  # c pushes out b, the least recently used
        await totals.count(PRODUCT, products, query)
    assert len(store.counted) == 3
    await totals.count(PRODUCT, products, a)
    assert len(store.counted) == 3
    await totals.count(PRODUCT, products, b)
    assert len(store.counted) == 4


async def test_a_version_a_read_waited_for_moves_the_totals_of_its_kind_on_before_its_announcement() -> None:
    feed = ViewFeed(make_test_settings())
    feed.totals.following = True
    store = Store()
    products = cast(AsyncCollection[Doc], Collection(store))
    await feed.totals.count(PRODUCT, products, IN_STOCK)
    store.total = 11

    async def current() -> int:
        return 2  # the store already has the version waited for; no announcement has come

    assert await feed.wait_for_version(PRODUCT, 7, 2, current, timeout=1.0) == 2
    assert await feed.totals.count(PRODUCT, products, IN_STOCK) == 11
