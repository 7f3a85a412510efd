"""Relay cursor connections, paged the way a Relay client pages them: forwards to the end, backwards to the start.

There is no maintained Python client with a Relay pagination helper, so the client side is written out here as
the specification's client algorithm (https://relay.dev/graphql/connections.htm): forwards, ask `first: n`, then
`after: pageInfo.endCursor` while `pageInfo.hasNextPage`; backwards, ask `last: n`, then `before:
pageInfo.startCursor` while `pageInfo.hasPreviousPage`, putting each page in front of the ones already read.
Every page is checked against the specification on the way (edges and their cursors, start and end cursors).

What the server answers for the flag of the other direction (documented in the schema): False, as the
specification allows when it is not known cheaply (after `first`, hasPreviousPage; after `last`, hasNextPage).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.conftest import GraphQLClient, RunningSystem, eventually, unique
from tests.integration.shop import error_of, place_order, register_customer, stock_product

Connection = dict[str, Any]
Fetch = Callable[..., Awaitable[Connection]]

PAGE = """
  edges { cursor node { id } }
  nodes { id }
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  totalCount
"""
PRODUCTS = f"""
query($first: Int, $after: String, $last: Int, $before: String, $search: String, $orderBy: ProductOrderBy!) {{
  products(first: $first, after: $after, last: $last, before: $before, search: $search, orderBy: $orderBy) {{
    {PAGE}
  }}
}}"""
USERS = f"""
query($first: Int, $after: String, $last: Int, $before: String, $search: String) {{
  users(first: $first, after: $after, last: $last, before: $before, search: $search) {{ {PAGE} }}
}}"""
ORDERS = f"""
query($first: Int, $after: String, $last: Int, $before: String, $userId: ID) {{
  orders(first: $first, after: $after, last: $last, before: $before, userId: $userId) {{ {PAGE} }}
}}"""
USER_ORDERS = f"""
query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {{
  user(id: $id) {{ orders(first: $first, after: $after, last: $last, before: $before) {{ {PAGE} }} }}
}}"""


def fetcher(gql: GraphQLClient, query: str, path: tuple[str, ...], **fixed: Any) -> Fetch:
    """One connection field as a function of the paging arguments. Arguments left out are not sent at all
    (an explicit null `first` is an error: the contract declares it `Int! = 20`)."""

    async def fetch(**paging: Any) -> Connection:
        variables = {k: v for k, v in {**fixed, **paging}.items() if v is not None}
        data: Any = await gql.data(query, **variables)
        for key in path:
            data = data[key]
        return data  # type: ignore[no-any-return]

    return fetch


def check_page(page: Connection) -> None:
    """What the specification says every page is: edges with a node and a cursor, `nodes` the same nodes,
    startCursor/endCursor the cursors of the first and last edge (null on an empty page)."""
    edges = page["edges"]
    assert page["nodes"] == [edge["node"] for edge in edges]
    assert all(isinstance(edge["cursor"], str) and edge["cursor"] for edge in edges)
    info = page["pageInfo"]
    assert info["startCursor"] == (edges[0]["cursor"] if edges else None)
    assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)


@dataclass
class Walk:
    ids: list[str] = field(default_factory=list)  # the nodes in connection order
    cursors: list[str] = field(default_factory=list)  # the cursor of each of them
    pages: list[Connection] = field(default_factory=list)  # in the order they were fetched

    def add(self, page: Connection, *, in_front: bool = False) -> None:
        """A fetched page, checked and kept; its nodes go after what was read, or in front of it."""
        check_page(page)
        self.pages.append(page)
        at = 0 if in_front else len(self.ids)
        self.ids[at:at] = [edge["node"]["id"] for edge in page["edges"]]
        self.cursors[at:at] = [edge["cursor"] for edge in page["edges"]]


async def forwards(fetch: Fetch, size: int) -> Walk:
    """The specification's forward loop: `first`, then `after: endCursor` while `hasNextPage`."""
    walk = Walk()
    after: str | None = None
    while True:
        page = await fetch(first=size, after=after)
        walk.add(page)
        if not page["pageInfo"]["hasNextPage"]:
            return walk
        after = page["pageInfo"]["endCursor"]


async def backwards(fetch: Fetch, size: int) -> Walk:
    """The specification's backward loop: `last`, then `before: startCursor` while `hasPreviousPage`;
    each page goes in front of what was read."""
    walk = Walk()
    before: str | None = None
    while True:
        page = await fetch(last=size, before=before)
        walk.add(page, in_front=True)
        if not page["pageInfo"]["hasPreviousPage"]:
            return walk
        before = page["pageInfo"]["startCursor"]


def flags(walk: Walk, flag: str) -> list[bool]:
    return [page["pageInfo"][flag] for page in walk.pages]


async def pages_both_ways(fetch: Fetch, expected: list[str], size: int) -> None:
    """Forwards to the end and backwards to the start list every node once, in the connection's order, with
    the same cursors; the flags tell where the ends are; every edge's cursor continues the list either way."""
    pages = -(-len(expected) // size)  # ceil
    ahead = await forwards(fetch, size)
    assert ahead.ids == expected
    assert [len(page["edges"]) for page in ahead.pages] == [size] * (pages - 1) + [len(expected) - size * (pages - 1)]
    assert flags(ahead, "hasNextPage") == [True] * (pages - 1) + [False]
    assert flags(ahead, "hasPreviousPage") == [False] * pages  # not looked up when paging forwards

    behind = await backwards(fetch, size)
    assert behind.ids == expected
    assert behind.cursors == ahead.cursors  # a node's cursor is its place in the order, however it was reached
    assert [len(page["edges"]) for page in behind.pages] == [size] * (pages - 1) + [len(expected) - size * (pages - 1)]
    assert flags(behind, "hasPreviousPage") == [True] * (pages - 1) + [False]
    assert flags(behind, "hasNextPage") == [False] * pages  # not looked up when paging backwards
    assert {page["totalCount"] for page in ahead.pages + behind.pages} == {len(expected)}

    # Any edge's cursor picks up where that edge is, in both directions, and two cursors bound a window.
    for i, cursor in enumerate(ahead.cursors):
        after = await fetch(first=2, after=cursor)
        assert [n["id"] for n in after["nodes"]] == expected[i + 1 : i + 3]
        assert after["pageInfo"]["hasNextPage"] == (i + 3 < len(expected))
        before = await fetch(last=2, before=cursor)
        assert [n["id"] for n in before["nodes"]] == expected[max(0, i - 2) : i]
        assert before["pageInfo"]["hasPreviousPage"] == (i - 2 > 0)
    low, high = ahead.cursors[1], ahead.cursors[-2]
    inside = expected[2:-2]
    assert [n["id"] for n in (await fetch(first=100, after=low, before=high))["nodes"]] == inside
    assert [n["id"] for n in (await fetch(last=100, after=low, before=high))["nodes"]] == inside
    window = await fetch(last=3, after=low, before=high)
    assert [n["id"] for n in window["nodes"]] == inside[-3:]
    assert window["pageInfo"]["hasPreviousPage"] == (len(inside) > 3)


# Names with repeats in other cases and prices with repeats: every ordering has ties that `_id` breaks.
NAMES = ["kiwi", "Apple", "apple", "fig", "Kiwi", "date", "banana", "cherry"]
PRICES = ["2.50", "1.00", "9.99", "2.50", "1.00"]


async def test_the_catalogue_pages_forwards_and_backwards_in_every_order(
    gql: GraphQLClient, system: RunningSystem
) -> None:
    tag = unique("relay")
    stocked = [
        await stock_product(gql, f"{tag} {NAMES[n % len(NAMES)]}", PRICES[n % len(PRICES)], n % 3) for n in range(23)
    ]
    fetch_total = fetcher(gql, PRODUCTS, ("products",), search=tag, orderBy="ID_ASC")

    async def all_projected() -> bool:
        return (await fetch_total(first=1))["totalCount"] == len(stocked)

    await eventually(all_projected, timeout=120)

    def ids(key: Callable[[dict[str, Any]], Any], reverse: bool = False) -> list[str]:
        return [p["id"] for p in sorted(stocked, key=key, reverse=reverse)]

    orderings = {
        "ID_ASC": ids(lambda p: int(p["id"])),
        "NAME_ASC": ids(lambda p: (p["name"].lower(), int(p["id"]))),
        "PRICE_ASC": ids(lambda p: (Decimal(p["price"]), int(p["id"]))),
        "PRICE_DESC": ids(lambda p: (Decimal(p["price"]), int(p["id"])), reverse=True),
        "NEWEST": ids(lambda p: int(p["id"]), reverse=True),
    }
    for order_by, expected in orderings.items():
        fetch = fetcher(gql, PRODUCTS, ("products",), search=tag, orderBy=order_by)
        for size in (5, 23):
            await pages_both_ways(fetch, expected, size)


async def test_users_and_a_customers_orders_page_forwards_and_backwards(
    gql: GraphQLClient, system: RunningSystem
) -> None:
    tag = unique("relay")
    users = [await register_customer(gql, f"{tag} customer {n}") for n in range(7)]
    buyer = users[3]
    tea = await stock_product(gql, unique("tea"), "3.50", 1000)
    placed = [await place_order(gql, buyer, (tea, 1)) for _ in range(12)]
    await place_order(gql, users[0], (tea, 1))  # someone else's order is not in the buyer's connection

    by_user = fetcher(gql, ORDERS, ("orders",), userId=buyer["id"])
    from_user = fetcher(gql, USER_ORDERS, ("user", "orders"), id=buyer["id"])
    people = fetcher(gql, USERS, ("users",), search=tag)

    async def all_projected() -> bool:
        return (await by_user(first=1))["totalCount"] == len(placed) and (await people(first=1))["totalCount"] == 7

    await eventually(all_projected, timeout=120)

    newest_first = [o["id"] for o in reversed(placed)]
    for size in (4, 5):  # 12 in pages of 4 ends on a full page; of 5, on a short one
        await pages_both_ways(by_user, newest_first, size)
        await pages_both_ways(from_user, newest_first, size)
    await pages_both_ways(people, [u["id"] for u in users], 3)


async def test_paging_arguments_are_checked(gql: GraphQLClient) -> None:
    products = fetcher(gql, PRODUCTS, ("products",), orderBy="PRICE_ASC")
    some = await products(first=3)

    async def refused(query: str, **variables: Any) -> dict[str, Any]:
        return await error_of(gql, query, **{k: v for k, v in variables.items() if v is not None})

    for query in (PRODUCTS, USERS, ORDERS):
        for variables, field_name in (
            ({"first": 5, "last": 5}, "last"),  # one direction at a time
            ({"last": 101}, "last"),
            ({"last": -1}, "last"),
            ({"first": 101}, "first"),
            ({"last": 5, "before": "not-a-cursor"}, "before"),
            ({"first": 5, "after": "not-a-cursor"}, "after"),
        ):
            error = await refused(query, orderBy="PRICE_ASC" if query is PRODUCTS else None, **variables)
            assert (error["code"], error.get("field")) == ("BAD_USER_INPUT", field_name), (query, variables)
    # A cursor of one ordering does not fit another.
    error = await refused(PRODUCTS, orderBy="ID_ASC", last=2, before=some["pageInfo"]["endCursor"])
    assert (error["code"], error["field"]) == ("BAD_USER_INPUT", "before")

    # Zero is a page size: no edges, no cursors, and whether anything lies that way.
    if some["edges"]:
        empty = await products(last=0)
        assert empty["edges"] == [] and empty["pageInfo"]["hasPreviousPage"] is True
        assert (empty["pageInfo"]["startCursor"], empty["pageInfo"]["endCursor"]) == (None, None)
        assert (await products(first=0))["pageInfo"]["hasNextPage"] is True
