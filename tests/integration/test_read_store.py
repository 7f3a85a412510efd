"""The read model's store does what the views rely on, at any size.

Against the devstack FerretDB these test our patch (devstack/patches): version-gated writes to one document
from many writers at once lose nothing, and filters, sorts, limits and counts pushed down to PostgreSQL select
exactly what MongoDB would, on indexes. The semantic tests hold on MongoDB too; the plan tests need FerretDB.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId, Regex
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import OrderView, ProductView, UserView
from projection.projectors.base import apply_many_if_newer
from projection.queries import ReadModel, SortKey, count, encode_cursor, paginate
from projection.store import Doc


class Fields:
    """A scratch document as a page holds it: its `_id` as `id`, its other fields as attributes (what the
    keyset of a cursor reads)."""

    def __init__(self, document: Doc) -> None:
        self.id = document["_id"]
        vars(self).update({k: v for k, v in document.items() if k != "_id"})

    @classmethod
    def of(cls, document: Doc) -> Fields:
        return cls(document)


def user_view(user_id: int, version: int) -> UserView:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    name = f"v{version}"
    return UserView(
        id=user_id, name=name, name_lc=name, email=f"{name}@example.com", version=version, created_at=at, updated_at=at
    )


async def is_ferretdb(db: AsyncDatabase[Doc]) -> bool:
    return "ferretdbVersion" in await db.client.admin.command("buildInfo")


@pytest.fixture
async def scratch(mongo: AsyncDatabase[Doc]) -> AsyncIterator[AsyncCollection[Doc]]:
    collection = mongo[f"scratch_{uuid.uuid4().hex[:8]}"]
    yield collection
    await collection.drop()


async def test_concurrent_version_gated_writes_to_one_document_keep_the_newest(
    scratch: AsyncCollection[Doc],
) -> None:
    """50 writers at once, versions in random order, five rounds: the view ends at the highest version every
    time. Unpatched FerretDB reads then writes without a lock and ends lower in most rounds."""
    for round_ in range(5):
        versions = list(range(1, 51))
        random.shuffle(versions)
        doc_id = round_ + 1
        await asyncio.gather(*(apply_many_if_newer(scratch, [user_view(doc_id, v)]) for v in versions))
        stored = await scratch.find_one({"_id": doc_id})
        assert stored is not None
        assert (stored["version"], stored["name"]) == (50, "v50"), f"round {round_}"


# --- exact pushdown ------------------------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)
HEX = "0123456789abcdef01234567"


def mixed_documents() -> list[Doc]:
    """Fields of one type each, as the views have them, plus documents that try every type boundary."""
    rng = random.Random(7)
    docs: list[Doc] = []
    for i in range(1, 301):
        docs.append(
            {
                "_id": i,
                "deleted": i % 7 == 0,
                "price_cents": rng.randrange(0, 5000),
                "stock": rng.choice([0, 0, 1, 5, 20]),
                "name_lc": rng.choice(["mech", "mechanical", "mouse", "monitor", "m", "méchant", "zebra", "a b"])
                + f" {i:03d}",
                "status": rng.choice(["CREATED", "PAID", "SHIPPED"]),
                "user_id": rng.randrange(1, 20),
                "created_at": BASE + timedelta(minutes=i),
                "ratio": rng.random(),
            }
        )
    docs += [  # values whose JSON form another type shares, and missing or null fields
        {"_id": 1001, "price_cents": BASE, "status": HEX, "user_id": None, "name_lc": True},
        {"_id": 1002, "price_cents": "1000", "status": ObjectId(HEX), "created_at": 1_000, "name_lc": 5},
        {"_id": 1003, "price_cents": True, "stock": False, "deleted": 0, "name_lc": "mech\u00ff"},
        {"_id": 1004, "price_cents": 2500.5, "stock": 1.0, "deleted": None},
        {"_id": 1005},
        {"_id": "1006", "price_cents": 10},
    ]
    return docs


def matches(doc: Doc, flt: Doc) -> bool:
    """MongoDB's semantics for the filters below (scalars only), written out."""

    def bracket(v: Any) -> str:
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int | float):
            return "number"
        if isinstance(v, datetime):
            return "date"
        if isinstance(v, ObjectId):
            return "oid"
        if isinstance(v, str):
            return "string"
        return type(v).__name__

    def cond(value: Any, op: str, arg: Any) -> bool:
        if op == "$ne":
            return not cond(value, "$eq", arg)
        if op == "$in":
            return any(cond(value, "$eq", a) for a in arg)
        if op == "$regex":
            return isinstance(value, str) and re.search(arg, value) is not None
        if arg is None and op == "$eq":
            return value is None
        if value is None or bracket(value) != bracket(arg):
            return False
        return {
            "$eq": value == arg,
            "$gt": value > arg,
            "$gte": value >= arg,
            "$lt": value < arg,
            "$lte": value <= arg,
        }[op]

    for key, want in flt.items():
        if key == "$or":
            if not any(matches(doc, sub) for sub in want):
                return False
            continue
        if key == "$and":
            if not all(matches(doc, sub) for sub in want):
                return False
            continue
        value = doc.get(key)
        if isinstance(want, Regex):
            want = {"$regex": want.pattern}
        ops = want if isinstance(want, dict) else {"$eq": want}
        if not all(cond(value, op, arg) for op, arg in ops.items()):
            return False
    return True


FILTERS: list[Doc] = [
    {"deleted": False},
    {"deleted": False, "user_id": 5},
    {"user_id": {"$in": [3, 4, 5]}, "deleted": False},
    {"status": "PAID", "deleted": False},
    {"status": HEX},
    {"status": ObjectId(HEX)},
    {"stock": {"$gt": 0}},
    {"stock": 0},
    {"stock": {"$ne": 0}},
    {"price_cents": {"$gte": 1000, "$lte": 2500}},
    {"price_cents": {"$lt": 10}},
    {"price_cents": {"$gt": 2500}},
    {"created_at": {"$gte": BASE + timedelta(minutes=100)}},
    {"created_at": {"$lt": BASE + timedelta(minutes=5)}},
    {"ratio": {"$lt": 0.25}},
    {"name_lc": {"$regex": "^mech"}},
    {"name_lc": {"$regex": "^m"}},
    {"name_lc": {"$regex": "^a\\ b"}},
    {"name_lc": {"$regex": "^"}},
    {"name_lc": Regex("^mo")},  # a regex as the value (Regex: re.compile would add the "u" flag)
    {"deleted": False, "$or": [{"name_lc": {"$regex": "^mo"}}, {"status": "SHIPPED"}]},
    {"$and": [{"deleted": False}, {"$or": [{"price_cents": {"$gt": 4000}}, {"price_cents": 10, "_id": {"$gt": 3}}]}]},
    {"user_id": None},
    {"_id": 5},
    {"_id": "1006"},
    {"_id": {"$in": [1, 2, 1001, "1006"]}},
    {"_id": {"$gt": 290}},
    {"name_lc": {"$regex": "e"}},  # not a prefix: filtered after reading, still exact
    {"items.product_id": 1},  # dotted: not pushed down, still exact
]


@pytest.mark.parametrize("flt", FILTERS, ids=[str(f) for f in FILTERS])
async def test_pushed_down_filters_count_sort_and_limit_select_what_mongodb_would(
    scratch: AsyncCollection[Doc], flt: Doc
) -> None:
    docs = mixed_documents()
    await scratch.insert_many(docs)
    for keys in ([("deleted", ASCENDING), ("price_cents", ASCENDING), ("_id", ASCENDING)], [("name_lc", ASCENDING)]):
        await scratch.create_indexes([IndexModel(keys)])
    expected = sorted(d["_id"] for d in docs if matches(d, flt) and isinstance(d["_id"], int))
    expected += [d["_id"] for d in docs if matches(d, flt) and isinstance(d["_id"], str)]

    assert [d["_id"] async for d in scratch.find(flt).sort("_id", ASCENDING)] == expected
    assert await count(scratch, flt) == len(expected)
    # Sorted and limited in SQL (numeric `_id`s only: sorts are exact for fields of one type).
    numeric = {"$and": [flt, {"_id": {"$lt": 10**6}}]}
    limited = [d["_id"] async for d in scratch.find(numeric).sort("_id", DESCENDING).limit(7)]
    assert limited == sorted((i for i in expected if isinstance(i, int)), reverse=True)[:7]


@pytest.mark.parametrize(
    "sort",
    [
        [("price_cents", ASCENDING), ("_id", ASCENDING)],
        [("price_cents", DESCENDING), ("_id", DESCENDING)],
        [("name_lc", ASCENDING), ("_id", ASCENDING)],
        [("ratio", DESCENDING), ("_id", DESCENDING)],
    ],
)
async def test_a_pushed_down_sort_pages_like_mongodb(
    scratch: AsyncCollection[Doc], sort: list[tuple[str, int]]
) -> None:
    """Keyset pages over fields of one type, through `paginate`, list every document once in MongoDB's order."""
    docs = [d for d in mixed_documents() if isinstance(d["_id"], int) and d["_id"] < 1000]
    await scratch.insert_many(docs)
    field, direction = sort[0]

    def key(d: Doc) -> tuple[Any, int]:
        return d[field], d["_id"]

    expected = [d["_id"] for d in sorted((d for d in docs if not d["deleted"]), key=key, reverse=direction < 0)]

    seen: list[int] = []
    after = None
    while True:
        page = await paginate(
            scratch, Fields.of, {"deleted": False}, SortKey(field, direction), 17, after, with_total=False
        )
        seen += [d.id for d in page.documents]
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert seen == expected

    # Backwards from the end (`last`/`before`): the reversed walk, each page in the ordering's own order.
    seen = []
    before = None
    while True:
        page = await paginate(
            scratch,
            Fields.of,
            {"deleted": False},
            SortKey(field, direction),
            None,
            None,
            last=17,
            before=before,
            with_total=False,
        )
        seen = [d.id for d in page.documents] + seen
        if not page.has_previous_page:
            break
        before = page.start_cursor
    assert seen == expected


# --- the hot queries walk an index to their limit ---------------------------------------------------------------


def plan_nodes(plan: Doc) -> list[Doc]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


QueryShape = tuple[type[Any], Doc, list[tuple[str, int]]]


def hot_queries() -> dict[str, QueryShape]:
    """The find of every list query `ReadModel` makes, as the gateway sends it."""
    return {
        "orders(userId)": (OrderView, {"deleted": False, "user_id": 7}, [("_id", -1)]),
        "orders(userId, status)": (OrderView, {"deleted": False, "user_id": 7, "status": "PAID"}, [("_id", -1)]),
        "orders(status)": (OrderView, {"deleted": False, "status": "PAID"}, [("_id", -1)]),
        "orders()": (OrderView, {"deleted": False}, [("_id", -1)]),
        "products(ID_ASC)": (ProductView, {"deleted": False}, [("_id", 1)]),
        "products(NAME_ASC, inStock)": (
            ProductView,
            {"deleted": False, "in_stock": True},
            [("name_lc", 1), ("_id", 1)],
        ),
        "products(PRICE_DESC, minPrice)": (
            ProductView,
            {"deleted": False, "price_cents": {"$gte": 1000}},
            [("price_cents", -1), ("_id", -1)],
        ),
        "products(search)": (ProductView, {"deleted": False, "name_lc": {"$regex": "^mech"}}, [("_id", 1)]),
        "users(search)": (
            UserView,
            {"deleted": False, "$or": [{"name_lc": {"$regex": "^ad"}}, {"email": {"$regex": "^ad"}}]},
            [("_id", 1)],
        ),
        # Paging on: `after` bounds the walk; `last`/`before` walk the same index the other way round.
        "orders(userId, after)": (OrderView, {"deleted": False, "user_id": 7, "_id": {"$lt": 4000}}, [("_id", -1)]),
        "orders(userId, last, before)": (
            OrderView,
            {"deleted": False, "user_id": 7, "_id": {"$gt": 1000}},
            [("_id", 1)],
        ),
        "orders(status, last)": (OrderView, {"deleted": False, "status": "PAID"}, [("_id", 1)]),
        "orders(last, before)": (OrderView, {"deleted": False, "_id": {"$gt": 1000}}, [("_id", 1)]),
        "products(ID_ASC, last, before)": (ProductView, {"deleted": False, "_id": {"$lt": 4000}}, [("_id", -1)]),
        "products(NEWEST, last)": (ProductView, {"deleted": False}, [("_id", 1)]),
        "products(PRICE_ASC, after)": (
            ProductView,
            {"$and": [{"deleted": False}, keyset("price_cents", "$gt", 50_000, 2500)]},
            [("price_cents", 1), ("_id", 1)],
        ),
        "products(PRICE_ASC, last, before)": (
            ProductView,
            {"$and": [{"deleted": False}, keyset("price_cents", "$lt", 50_000, 2500)]},
            [("price_cents", -1), ("_id", -1)],
        ),
        "products(PRICE_DESC, minPrice, last, before)": (
            ProductView,
            {"$and": [{"deleted": False, "price_cents": {"$gte": 1000}}, keyset("price_cents", "$gt", 50_000, 2500)]},
            [("price_cents", 1), ("_id", 1)],
        ),
        "products(NAME_ASC, inStock, last, before)": (
            ProductView,
            {"$and": [{"deleted": False, "in_stock": True}, keyset("name_lc", "$lt", "keyboard 2500", 2500)]},
            [("name_lc", -1), ("_id", -1)],
        ),
        "products(PRICE_ASC, after, before)": (
            ProductView,
            {
                "$and": [
                    {"deleted": False},
                    keyset("price_cents", "$gt", 20_000, 1000),
                    keyset("price_cents", "$lt", 80_000, 4000),
                ]
            },
            [("price_cents", 1), ("_id", 1)],
        ),
        "users(search, last, before)": (
            UserView,
            {
                "deleted": False,
                "$or": [{"name_lc": {"$regex": "^ad"}}, {"email": {"$regex": "^ad"}}],
                "_id": {"$lt": 4000},
            },
            [("_id", -1)],
        ),
    }


def keyset(field: str, op: str, value: Any, doc_id: int) -> Doc:
    """The keyset bound of a cursor in a `field, _id` ordering, as `SortKey.beyond` writes it."""
    return {"$or": [{field: {op: value}}, {field: value, "_id": {op: doc_id}}]}


async def test_the_hot_paging_shapes_are_the_ones_paginate_sends() -> None:
    """The table above is what `paginate` sends for those arguments (so the plans checked are the real ones)."""
    sent: list[tuple[Doc, list[tuple[str, int]]]] = []

    class Recorder:
        def find(self, flt: Doc) -> Recorder:
            sent.append((flt, []))
            return self

        def sort(self, order: list[tuple[str, int]]) -> Recorder:
            sent[-1][1].extend(order)
            return self

        def limit(self, n: int) -> Recorder:
            return self

        async def to_list(self, n: int) -> list[Doc]:
            return []

    def cursor(*values: Any) -> str:
        return encode_cursor(values)

    price = SortKey("price_cents", 1)
    cases = {
        "orders(userId, last, before)": (
            {"deleted": False, "user_id": 7},
            SortKey("_id", -1),
            {"last": 5, "before": cursor(1000)},
        ),
        "products(ID_ASC, last, before)": ({"deleted": False}, SortKey("_id", 1), {"last": 5, "before": cursor(4000)}),
        "products(PRICE_ASC, after)": ({"deleted": False}, price, {"first": 5, "after": cursor(50_000, 2500)}),
        "products(PRICE_ASC, last, before)": ({"deleted": False}, price, {"last": 5, "before": cursor(50_000, 2500)}),
        "products(PRICE_DESC, minPrice, last, before)": (
            {"deleted": False, "price_cents": {"$gte": 1000}},
            SortKey("price_cents", -1),
            {"last": 5, "before": cursor(50_000, 2500)},
        ),
        "products(PRICE_ASC, after, before)": (
            {"deleted": False},
            price,
            {"first": 5, "after": cursor(20_000, 1000), "before": cursor(80_000, 4000)},
        ),
    }
    for name, (flt, sort, args) in cases.items():
        sent.clear()
        first = args.pop("first", None)
        await paginate(
            Recorder(),  # type: ignore[arg-type]
            Fields.of,
            flt,
            sort,
            first,
            args.pop("after", None),
            with_total=False,
            **args,
        )
        assert sent == [hot_queries()[name][1:]], name


@pytest.mark.parametrize("name", list(hot_queries()))
async def test_every_hot_list_query_is_served_by_an_index_with_its_limit(
    mongo: AsyncDatabase[Doc], read_model: ReadModel, name: str
) -> None:
    if not await is_ferretdb(mongo):
        pytest.skip("the plan checked here is PostgreSQL's, under FerretDB")
    view, flt, sort = hot_queries()[name]
    collection = mongo[f"plan_{view.collection}_{uuid.uuid4().hex[:8]}"]
    for index in view.indexes:
        await collection.create_indexes([index])
    rng = random.Random(3)
    await collection.insert_many(
        {
            "_id": i,
            "deleted": i % 50 == 0,
            "user_id": rng.randrange(1, 500),
            "status": rng.choice(["CREATED", "RESERVED", "PAID", "SHIPPED"]),
            "name_lc": f"{rng.choice(['ada', 'mech', 'bob', 'keyboard'])} {i}",
            "email": f"user{i}@example.com",
            "price_cents": rng.randrange(100, 100_000),
            "stock": rng.choice([0, 3, 10]),
            "in_stock": rng.random() < 0.7,
        }
        for i in range(1, 5001)
    )
    try:
        plan = await mongo.command(
            "explain",
            {"find": collection.name, "filter": flt, "sort": dict(sort), "limit": 21},
            verbosity="queryPlanner",
        )
    finally:
        await collection.drop()
    assert (plan["filterPushdown"], plan["sortPushdown"], plan["limitPushdown"]) == (True, True, True), name
    nodes = plan_nodes(plan["queryPlanner"]["Plan"])
    assert any("Index" in node.get("Node Type", "") for node in nodes), (name, nodes)
    assert "Seq Scan" not in {node.get("Node Type") for node in nodes}, (name, nodes)
