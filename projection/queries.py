"""Read-side queries over the view collections, with keyset (cursor) pagination.

Every answer is a view document (UserView, ProductView, OrderView) or, where a reader needs a few fields, a
projection of one (OrderUser), parsed from one pymongo call on the collections the ReadModel is handed (why not
Beanie: projection/documents.py). The stored field names stay here and in the documents: callers filter and sort
by what they mean (`ProductOrder`, prices as Decimal).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, Protocol, Self, TypeVar

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import Doc, OrderView, ProductView, UserView, View
from projection.kinds import VIEW_DOCUMENTS
from shared.construct import construct
from shared.errors import BadUserInput
from shared.events import AggregateType, OrderStatus, OrderUser
from shared.money import to_cents

MAX_PAGE = 100


class Keyed(Protocol):
    """What a page holds: documents with an id (the views; in tests, anything with the sorted fields)."""

    @property
    def id(self) -> Any: ...


D = TypeVar("D", bound=Keyed)
V = TypeVar("V", bound=View)


def id_cursor(document: Keyed) -> str:
    """The cursor of a document in an `_id` ordering."""
    return encode_cursor([document.id])


@dataclass(frozen=True)
class Page(Generic[D]):
    """A slice of a connection as the Relay specification pages it.

    The flag of the direction the client pages in is exact (`has_next_page` after `first`, `has_previous_page`
    after `last`); the other one is False, as the specification allows when it is not known cheaply: the page
    on that side is the one the client came from.
    """

    documents: list[D]
    has_next_page: bool
    end_cursor: str | None
    count: Callable[[], Awaitable[int]]  # the total: a query of its own, made only when someone asks
    has_previous_page: bool = False
    cursor_of: Callable[[D], str] = id_cursor  # every document's cursor: its keyset in the page's ordering

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
    """A keyset ordering: a stored field (or `_id` alone) and a direction; `_id` breaks ties."""

    field: str
    direction: int  # 1 ascending, -1 descending

    def keyset(self, document: Keyed) -> list[Any]:
        return [document.id] if self.field == "_id" else [getattr(document, self.field), document.id]

    def cursor(self, document: Keyed) -> str:
        return encode_cursor(self.keyset(document))

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


class ProductOrder(StrEnum):
    """The orderings of the products view (the GraphQL enum `ProductOrderBy`)."""

    ID_ASC = "ID_ASC"
    NAME_ASC = "NAME_ASC"
    PRICE_ASC = "PRICE_ASC"
    PRICE_DESC = "PRICE_DESC"
    NEWEST = "NEWEST"


PRODUCT_SORT = {
    ProductOrder.ID_ASC: SortKey("_id", 1),
    ProductOrder.NAME_ASC: SortKey("name_lc", 1),
    ProductOrder.PRICE_ASC: SortKey("price_cents", 1),
    ProductOrder.PRICE_DESC: SortKey("price_cents", -1),
    ProductOrder.NEWEST: SortKey("_id", -1),
}
"""Each ordering as the keyset it walks (an index of ProductView's)."""

USER_OF_ORDER = {"_id": 1, "name": 1, "email": 1, "version": 1}
"""The fields of the users view an order shows (`OrderUser`)."""


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


class Totals(Protocol):
    """How a connection's total is counted: every time (COUNTED_EACH_TIME), or by a gateway that reuses the
    totals it counted until its feed announces a change of their view (gateway/totals.py)."""

    async def count(self, kind: AggregateType, collection: AsyncCollection[Doc], query: Doc) -> int: ...


class CountedEachTime:
    async def count(self, kind: AggregateType, collection: AsyncCollection[Doc], query: Doc) -> int:
        return await count(collection, query)


COUNTED_EACH_TIME = CountedEachTime()


class ViewCollection(Generic[V]):
    """One view's collection and its document model: what is read from it comes back as that model.

    The documents were validated when the projector built them; parsing them again costs about 10 us an order
    (`model_validate`), small beside the round trip, and keeps a stored document that no longer fits its
    model an error here rather than a wrong answer later."""

    def __init__(self, db: AsyncDatabase[Doc], model: type[V], totals: Totals = COUNTED_EACH_TIME) -> None:
        self.model: type[V] = model
        self.collection: AsyncCollection[Doc] = db[model.collection]
        self.totals = totals

    async def live(self, doc_id: int) -> V | None:
        """The view of an aggregate that is not deleted."""
        found = await self.collection.find_one({"_id": doc_id, "deleted": False})
        return None if found is None else self.model.model_validate(found)

    async def version_of(self, doc_id: int) -> int | None:
        found = await self.collection.find_one({"_id": doc_id}, {"version": 1})
        return None if found is None else int(found["version"])

    async def page(
        self,
        query: Doc,
        sort: SortKey,
        first: int | None,
        after: str | None,
        *,
        last: int | None = None,
        before: str | None = None,
        with_total: bool = True,
    ) -> Page[V]:
        return await paginate(
            self.collection,
            self.model.model_validate,
            query,
            sort,
            first,
            after,
            last=last,
            before=before,
            with_total=with_total,
            total=lambda q: self.totals.count(self.model.kind, self.collection, q),
        )


class ReadModel:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self._count_with(COUNTED_EACH_TIME)

    def counting_with(self, totals: Totals) -> Self:
        """The same read model, its pages' totals counted through `totals` (a gateway's known totals)."""
        counted = copy.copy(self)
        counted._count_with(totals)
        return counted

    def _count_with(self, totals: Totals) -> None:
        self.users = ViewCollection(self.db, UserView, totals)
        self.products = ViewCollection(self.db, ProductView, totals)
        self.orders = ViewCollection(self.db, OrderView, totals)
        self._by_kind: dict[AggregateType, ViewCollection[Any]] = {
            view.kind: ViewCollection(self.db, view, totals) for view in VIEW_DOCUMENTS
        }

    async def user(self, user_id: int) -> UserView | None:
        return await self.users.live(user_id)

    async def product(self, product_id: int) -> ProductView | None:
        return await self.products.live(product_id)

    async def order(self, order_id: int) -> OrderView | None:
        return await self.orders.live(order_id)

    async def version_of(self, kind: AggregateType, doc_id: int) -> int | None:
        """Stored version, deleted or not (for read-your-writes waits)."""
        return await self._by_kind[kind].version_of(doc_id)

    async def list_users(
        self,
        first: int | None,
        after: str | None,
        search: str | None,
        *,
        last: int | None = None,
        before: str | None = None,
        with_total: bool = True,
    ) -> Page[UserView]:
        query: Doc = {"deleted": False}
        if search and search.strip():
            query["$or"] = [{"name_lc": prefix(search)}, {"email": prefix(search)}]
        return await self.users.page(
            query, SortKey("_id", 1), first, after, last=last, before=before, with_total=with_total
        )

    async def list_products(
        self,
        first: int | None,
        after: str | None,
        *,
        search: str | None,
        in_stock: bool | None,
        min_price: Decimal | None,
        max_price: Decimal | None,
        order: ProductOrder,
        last: int | None = None,
        before: str | None = None,
        with_total: bool = True,
    ) -> Page[ProductView]:
        query: Doc = {"deleted": False}
        if search and search.strip():
            query["name_lc"] = prefix(search)
        if in_stock is not None:
            query["in_stock"] = in_stock
        price: Doc = {}
        if min_price is not None:
            price["$gte"] = to_cents(min_price)
        if max_price is not None:
            price["$lte"] = to_cents(max_price)
        if price:
            query["price_cents"] = price
        return await self.products.page(
            query, PRODUCT_SORT[order], first, after, last=last, before=before, with_total=with_total
        )

    async def list_orders(
        self,
        first: int | None,
        after: str | None,
        *,
        user_id: int | None,
        status: OrderStatus | None,
        last: int | None = None,
        before: str | None = None,
        with_total: bool = True,
    ) -> Page[OrderView]:
        query: Doc = {"deleted": False}
        if user_id is not None:
            query["user_id"] = user_id
        if status is not None:
            query["status"] = status.value
        return await self.orders.page(
            query, SortKey("_id", -1), first, after, last=last, before=before, with_total=with_total
        )

    async def first_orders_of_users(
        self, user_ids: list[int], first: int, status: OrderStatus | None
    ) -> dict[int, Page[OrderView]]:
        """The first page of orders of many users (newest first): one indexed page query per user, all at once.

        Each is a walk of the (deleted, user_id, _id) index to its limit, so the cost is per user shown,
        not per order stored; the totals are counted only if asked for.
        """
        check_first(first)
        pages = await asyncio.gather(
            *(self.list_orders(first, None, user_id=u, status=status, with_total=False) for u in user_ids)
        )
        return dict(zip(user_ids, pages, strict=True))

    async def users_by_id(self, user_ids: Sequence[int]) -> dict[int, OrderUser]:
        """Who placed orders, from the users view, deleted or not (an order keeps showing who placed it): one
        `_id` lookup, of the few fields an order shows (`USER_OF_ORDER`)."""
        found = self.users.collection.find({"_id": {"$in": list(user_ids)}}, USER_OF_ORDER)
        users = [construct(OrderUser, doc, id=doc["_id"]) async for doc in found]
        return {user.id: user for user in users}


def current_user(placed_by: OrderUser, view: OrderUser | None) -> OrderUser:
    """Who an order shows: the users view's user, unless the order's own snapshot (as of its newest event) is
    newer. A rename shows on every order at once; a mutation's answer shows the user it committed with."""
    return view if view is not None and view.version >= placed_by.version else placed_by


async def count(collection: AsyncCollection[Doc], query: Doc) -> int:
    """The `count` command: an index count on MongoDB, one SQL count on the patched FerretDB (`count_documents`
    is an aggregation, which FerretDB v1 runs by reading every matching document)."""
    reply = await collection.database.command("count", collection.name, query=query)
    return int(reply["n"])


async def paginate(
    collection: AsyncCollection[Doc],
    parse: Callable[[Doc], D],
    query: Doc,
    sort: SortKey,
    first: int | None,
    after: str | None,
    *,
    last: int | None = None,
    before: str | None = None,
    with_total: bool = True,
    total: Callable[[Doc], Awaitable[int]] | None = None,
) -> Page[D]:
    """One page in keyset order, sliced as the Relay specification slices a connection: the documents after
    `after` and before `before`, then the first `first` of them or the last `last` (one of the two, not both).

    Backwards (`last`) is the same index walk in the reversed ordering, reversed again in memory, so either
    way a page reads at most its size + 1 documents. With `with_total`, the total (of the whole connection,
    cursors aside) is read at the same time as the page; without, later, and only if someone asks for it. Each
    document read is `parse`d (into its view model) once, before the page is cut. `total` counts a query's
    documents (by default the `count` command on `collection`)."""
    size, backwards = page_size(first, last)
    order = sort.order(-sort.direction if backwards else sort.direction)
    find = collection.find(between_cursors(query, sort, after, before)).sort(order).limit(size + 1).to_list(size + 1)
    counted: Callable[[], Awaitable[int]] = (
        (lambda: count(collection, query)) if total is None else (lambda: total(query))
    )
    if with_total:
        found, known_total = await asyncio.gather(find, counted())
    else:
        found = await find
    more = len(found) > size
    documents = [parse(doc) for doc in found[:size]]
    if backwards:
        documents.reverse()
    return Page(
        documents,
        has_next_page=more and not backwards,
        end_cursor=sort.cursor(documents[-1]) if documents else None,
        count=known(known_total) if with_total else counted,
        has_previous_page=more and backwards,
        cursor_of=sort.cursor,
    )


def page_size(first: int | None, last: int | None) -> tuple[int, bool]:
    """How many documents a page holds, and whether it is counted from the end (`last`): one of the two."""
    if first is not None and last is not None:
        raise BadUserInput("pass first or last, not both", field="last")
    if last is not None:
        return check_count(last, "last"), True
    if first is not None:
        return check_first(first), False
    raise BadUserInput("pass first or last", field="first")


def between_cursors(query: Doc, sort: SortKey, after: str | None, before: str | None) -> Doc:
    """`query` narrowed to the documents after `after` and before `before`, in the shapes the indexes serve."""
    window: list[Doc] = []
    if after is not None:
        window.append(sort.beyond(after, "after", later=True))
    if before is not None:
        window.append(sort.beyond(before, "before", later=False))
    if not window:
        return query
    if sort.field == "_id":  # one range on `_id`, beside the filter
        return {**query, "_id": {op: v for keyset in window for op, v in keyset["_id"].items()}}
    return {"$and": [query, *window]}
