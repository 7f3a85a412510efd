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


def id_cursor(doc: Doc) -> str:
    """The cursor of a document in an `_id` ordering."""
    return encode_cursor([doc["_id"]])


@dataclass(frozen=True)
class Page:
    """A slice of a connection as the Relay specification pages it.

    The flag of the direction the client pages in is exact (`has_next_page` after `first`, `has_previous_page`
    after `last`); the other one is False, as the specification allows when it is not known cheaply: the page
    on that side is the one the client came from.
    """

    documents: list[Doc]
    has_next_page: bool
    end_cursor: str | None
    count: Callable[[], Awaitable[int]]  # the total: a query of its own, made only when someone asks
    has_previous_page: bool = False
    cursor_of: Callable[[Doc], str] = id_cursor  # every document's cursor: its keyset in the page's ordering

    @property
    def start_cursor(self) -> str | None:
        return self.cursor_of(self.documents[0]) if self.documents else None


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

    def keyset(self, doc: Doc) -> list[Any]:
        return [doc["_id"]] if self.field == "_id" else [doc[self.field], doc["_id"]]

    def cursor(self, doc: Doc) -> str:
        return encode_cursor(self.keyset(doc))

    def order(self, direction: int) -> list[tuple[str, int]]:
        return [("_id", direction)] if self.field == "_id" else [(self.field, direction), ("_id", direction)]

    def beyond(self, cursor: str, name: str, *, later: bool) -> Doc:
        """The documents strictly after (`later`) or before the cursor's document in this ordering."""
        op = "$gt" if (self.direction == 1) == later else "$lt"
        if self.field == "_id":
            (last_id,) = decode_cursor(cursor, 1, name)
            return {"_id": {op: last_id}}
        last_value, last_id = decode_cursor(cursor, 2, name)
        return {"$or": [{self.field: {op: last_value}}, {self.field: last_value, "_id": {op: last_id}}]}


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode()


def decode_cursor(cursor: str, size: int, name: str = "after") -> list[Any]:
    """The keyset in a cursor; `name` is the argument it came in (for the error)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except Exception as exc:
        raise BadUserInput(f"{name} is not a valid cursor", field=name) from exc
    if not isinstance(values, list) or len(values) != size:
        raise BadUserInput(f"{name} is not a valid cursor", field=name)
    return values


def check_count(value: int, name: str) -> int:
    if not 0 <= value <= MAX_PAGE:
        raise BadUserInput(f"{name} must be between 0 and {MAX_PAGE}", field=name)
    return value


def check_first(first: int) -> int:
    return check_count(first, "first")


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

    async def list_users(
        self,
        first: int | None,
        after: str | None,
        search: str | None,
        *,
        last: int | None = None,
        before: str | None = None,
        with_total: bool = True,
    ) -> Page:
        query: Doc = {"deleted": False}
        if search and search.strip():
            query["$or"] = [{"name_lc": prefix(search)}, {"email": prefix(search)}]
        return await paginate(
            self.users, query, SortKey("_id", 1), first, after, last=last, before=before, with_total=with_total
        )

    async def list_products(
        self,
        first: int | None,
        after: str | None,
        *,
        search: str | None,
        in_stock: bool | None,
        min_price_cents: int | None,
        max_price_cents: int | None,
        sort: SortKey,
        last: int | None = None,
        before: str | None = None,
        with_total: bool = True,
    ) -> Page:
        query: Doc = {"deleted": False}
        if search and search.strip():
            query["name_lc"] = prefix(search)
        if in_stock is not None:
            query["in_stock"] = in_stock
        price: Doc = {}
        if min_price_cents is not None:
            price["$gte"] = min_price_cents
        if max_price_cents is not None:
            price["$lte"] = max_price_cents
        if price:
            query["price_cents"] = price
        return await paginate(self.products, query, sort, first, after, last=last, before=before, with_total=with_total)

    async def list_orders(
        self,
        first: int | None,
        after: str | None,
        *,
        user_id: int | None,
        status: str | None,
        last: int | None = None,
        before: str | None = None,
        with_total: bool = True,
    ) -> Page:
        query: Doc = {"deleted": False}
        if user_id is not None:
            query["user_id"] = user_id
        if status is not None:
            query["status"] = status
        return await paginate(
            self.orders, query, SortKey("_id", -1), first, after, last=last, before=before, with_total=with_total
        )

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
    collection: Any,
    query: Doc,
    sort: SortKey,
    first: int | None,
    after: str | None,
    *,
    last: int | None = None,
    before: str | None = None,
    with_total: bool = True,
) -> Page:
    """One page in keyset order, sliced as the Relay specification slices a connection: the documents after
    `after` and before `before`, then the first `first` of them or the last `last` (one of the two, not both).

    Backwards (`last`) is the same index walk in the reversed ordering, reversed again in memory, so either
    way a page reads at most its size + 1 documents. With `with_total`, the total (of the whole connection,
    cursors aside) is read at the same time as the page; without, later, and only if someone asks for it."""
    if first is not None and last is not None:
        raise BadUserInput("pass first or last, not both", field="last")
    if last is not None:
        size, backwards = check_count(last, "last"), True
    elif first is not None:
        size, backwards = check_first(first), False
    else:
        raise BadUserInput("pass first or last", field="first")
    window = []  # the cursors' bounds, in the shapes the indexes serve
    if after is not None:
        window.append(sort.beyond(after, "after", later=True))
    if before is not None:
        window.append(sort.beyond(before, "before", later=False))
    if not window:
        page_query = query
    elif sort.field == "_id":  # one range on `_id`, beside the filter
        page_query = {**query, "_id": {op: v for keyset in window for op, v in keyset["_id"].items()}}
    else:
        page_query = {"$and": [query, *window]}
    order = sort.order(-sort.direction if backwards else sort.direction)
    find = collection.find(page_query).sort(order).limit(size + 1).to_list(size + 1)
    if with_total:
        documents, total = await asyncio.gather(find, count(collection, query))
    else:
        documents = await find
    more = len(documents) > size
    documents = documents[:size]
    if backwards:
        documents.reverse()
    return Page(
        documents,
        has_next_page=more and not backwards,
        end_cursor=sort.cursor(documents[-1]) if documents else None,
        count=known(total) if with_total else lambda: count(collection, query),
        has_previous_page=more and backwards,
        cursor_of=sort.cursor,
    )
