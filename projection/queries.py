"""Read-side queries over the view collections, with keyset (cursor) pagination."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import OrderView, ProductView, UserView
from shared.errors import BadUserInput

Doc = dict[str, Any]
MAX_PAGE = 100


@dataclass(frozen=True)
class Page:
    documents: list[Doc]
    has_next_page: bool
    end_cursor: str | None
    count: Callable[[], Awaitable[int]]  # the total: a query of its own, made only when someone asks


def known(total: int) -> Callable[[], Awaitable[int]]:
    """A page's total that is already known."""

    async def count() -> int:
        return total

    return count


@dataclass(frozen=True)
class SortKey:
    """A keyset ordering: a field (or `_id` alone) and a direction; `_id` breaks ties."""

    field: str
    direction: int  # 1 ascending, -1 descending


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode()


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except Exception as exc:
        raise BadUserInput("after is not a valid cursor", field="after") from exc
    if not isinstance(values, list) or len(values) != size:
        raise BadUserInput("after is not a valid cursor", field="after")
    return values


def check_first(first: int) -> int:
    if not 0 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be between 0 and {MAX_PAGE}", field="first")
    return first


def prefix(text: str) -> dict[str, str]:
    """Anchored, case-insensitive-by-normalisation match on a lower-cased field (index friendly)."""
    return {"$regex": "^" + re.escape(text.strip().lower())}


class ReadModel:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.users = db[UserView.Settings.name]
        self.products = db[ProductView.Settings.name]
        self.orders = db[OrderView.Settings.name]

    async def user(self, user_id: int) -> Doc | None:
        return await self.users.find_one({"_id": user_id, "deleted": False})

    async def product(self, product_id: int) -> Doc | None:
        return await self.products.find_one({"_id": product_id, "deleted": False})

    async def order(self, order_id: int) -> Doc | None:
        return await self.orders.find_one({"_id": order_id, "deleted": False})

    async def version_of(self, kind: str, doc_id: int) -> int | None:
        """Stored version, deleted or not (for read-your-writes waits)."""
        collection = {"user": self.users, "product": self.products, "order": self.orders}[kind]
        doc = await collection.find_one({"_id": doc_id}, {"version": 1})
        return None if doc is None else int(doc["version"])

    async def list_users(self, first: int, after: str | None, search: str | None, *, with_total: bool = True) -> Page:
        query: Doc = {"deleted": False}
        if search and search.strip():
            query["$or"] = [{"name_lc": prefix(search)}, {"email": prefix(search)}]
        return await paginate(self.users, query, SortKey("_id", 1), first, after, with_total=with_total)

    async def list_products(
        self,
        first: int,
        after: str | None,
        *,
        search: str | None,
        in_stock: bool | None,
        min_price_cents: int | None,
        max_price_cents: int | None,
        sort: SortKey,
        with_total: bool = True,
    ) -> Page:
        query: Doc = {"deleted": False}
        if search and search.strip():
            query["name_lc"] = prefix(search)
        if in_stock is True:
            query["stock"] = {"$gt": 0}
        elif in_stock is False:
            query["stock"] = 0
        price: Doc = {}
        if min_price_cents is not None:
            price["$gte"] = min_price_cents
        if max_price_cents is not None:
            price["$lte"] = max_price_cents
        if price:
            query["price_cents"] = price
        return await paginate(self.products, query, sort, first, after, with_total=with_total)

    async def list_orders(
        self, first: int, after: str | None, *, user_id: int | None, status: str | None, with_total: bool = True
    ) -> Page:
        query: Doc = {"deleted": False}
        if user_id is not None:
            query["user_id"] = user_id
        if status is not None:
            query["status"] = status
        return await paginate(self.orders, query, SortKey("_id", -1), first, after, with_total=with_total)

    async def first_orders_of_users(self, user_ids: list[int], first: int, status: str | None) -> dict[int, Page]:
        """The first page of orders of many users (newest first): one indexed page query per user, all at once.

        Each is a walk of the (deleted, user_id, _id) index to its limit, so the cost is per user shown,
        not per order stored; the totals are counted only if asked for.
        """
        check_first(first)
        pages = await asyncio.gather(
            *(self.list_orders(first, None, user_id=u, status=status, with_total=False) for u in user_ids)
        )
        return dict(zip(user_ids, pages, strict=True))

    async def users_by_id(self, user_ids: Sequence[int]) -> dict[int, Doc]:
        """User views by id, deleted or not (an order keeps showing who placed it): one `_id` lookup."""
        return {doc["_id"]: doc async for doc in self.users.find({"_id": {"$in": list(user_ids)}})}


def current_user(placed_by: Doc, view: Doc | None) -> Doc:
    """Who an order shows: the users view's user, unless the order's own snapshot (as of its newest event) is
    newer. A rename shows on every order at once; a mutation's answer shows the user it committed with."""
    return view if view is not None and view["version"] >= placed_by["version"] else placed_by


async def count(collection: Any, query: Doc) -> int:
    """The `count` command: an index count on MongoDB, one SQL count on the patched FerretDB (`count_documents`
    is an aggregation, which FerretDB v1 runs by reading every matching document)."""
    reply = await collection.database.command("count", collection.name, query=query)
    return int(reply["n"])


async def paginate(
    collection: Any, query: Doc, sort: SortKey, first: int, after: str | None, *, with_total: bool = True
) -> Page:
    """One page in keyset order. With `count`, the total is read at the same time as the page; without,
    it is read later, and only if someone asks for it."""
    check_first(first)
    page_query = dict(query)
    op = "$gt" if sort.direction == 1 else "$lt"
    if sort.field == "_id":
        order = [("_id", sort.direction)]
        if after is not None:
            (last_id,) = decode_cursor(after, 1)
            page_query["_id"] = {op: last_id}
    else:
        order = [(sort.field, sort.direction), ("_id", sort.direction)]
        if after is not None:
            last_value, last_id = decode_cursor(after, 2)
            keyset = {"$or": [{sort.field: {op: last_value}}, {sort.field: last_value, "_id": {op: last_id}}]}
            page_query = {"$and": [query, keyset]}
    find = collection.find(page_query).sort(order).limit(first + 1).to_list(first + 1)
    if with_total:
        documents, total = await asyncio.gather(find, count(collection, query))
    else:
        documents = await find
    has_next = len(documents) > first
    documents = documents[:first]
    end_cursor = None
    if documents:
        last = documents[-1]
        end_cursor = encode_cursor([last["_id"]] if sort.field == "_id" else [last[sort.field], last["_id"]])
    return Page(documents, has_next, end_cursor, known(total) if with_total else lambda: count(collection, query))
