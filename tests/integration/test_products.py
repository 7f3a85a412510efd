"""Products, as the shop keeper sees them: stock a product, reprice it, take it off the shelf, browse the catalogue.

Every story runs through every layer (GraphQL -> MySQL + outbox -> Kafka -> projector -> MongoDB), and every
refused command is shown to have written nothing: no row, no outbox event.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import GraphQLClient, RunningSystem, WriteModelProbe, eventually, unique
from tests.integration.shop import (
    CREATE_ORDER,
    CREATE_PRODUCT,
    DELETE_PRODUCT,
    LIST_PRODUCTS,
    NOTHING_FOR_CUSTOMERS,
    NOTHING_FOR_PRODUCT,
    READ_PRODUCT,
    UPDATE_PRODUCT,
    error_of,
    ms,
    order_input,
    orders_written,
    place_order,
    product_events_since,
    products_written,
    read_product,
    register_customer,
    stock_product,
    write_row,
)

COMPARED = ("id", "name", "description", "price", "stock", "version")


def same_product(seen: dict[str, Any], written: dict[str, Any]) -> None:
    """The read model shows exactly what the write model committed, timestamps included (the write side
    keeps milliseconds, as MongoDB does, so a mutation's answer and a later query agree to the character)."""
    assert {k: seen[k] for k in (*COMPARED, "createdAt", "updatedAt")} == {
        k: written[k] for k in (*COMPARED, "createdAt", "updatedAt")
    }


async def test_a_product_is_stocked_and_shows_up_in_the_catalogue(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    before = await probe.high_water()
    name = f"{unique('kb')} Mechanical keyboard"

    # A new product may start with nothing on the shelf; its price comes back with two decimals.
    keyboard = await stock_product(gql, f"  {name} ", "10.5", 0, description=" Tenkeyless ")
    assert keyboard["name"] == name
    assert keyboard["description"] == "Tenkeyless"
    assert keyboard["price"] == "10.50"
    assert keyboard["stock"] == 0
    assert keyboard["version"] == 1

    # The write model holds exact money and announced the product once.
    row = await write_row(probe, "products", keyboard["id"])
    assert row["price"] == Decimal("10.50") and row["stock"] == 0 and row["version"] == 1
    assert row["deleted_at"] is None
    assert await product_events_since(probe, before, keyboard["id"]) == ["product.created"]

    # The catalogue (read model) catches up with the same product.
    seen = await read_product(gql, keyboard["id"], min_version=1)
    assert seen is not None
    same_product(seen, keyboard)


async def test_boundary_products_are_accepted(gql: GraphQLClient) -> None:
    tag = unique("edge")
    longest = await stock_product(gql, tag + "n" * (255 - len(tag)), "0.01", 2**31 - 1)
    assert len(longest["name"]) == 255
    assert longest["price"] == "0.01" and longest["stock"] == 2**31 - 1

    dearest = await stock_product(gql, f"{tag} yacht", "9999999999.99", 1)
    assert dearest["price"] == "9999999999.99"

    # A whole number is still money with two decimals; the description defaults to empty.
    data = await gql.data(
        'mutation($name: String!) { createProduct(input: {name: $name, price: "7", stock: 3}) { price description } }',
        name=f"{tag} pencil",
    )
    assert data["createProduct"] == {"price": "7.00", "description": ""}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"price": "0"}, "price"),
        ({"price": "0.00"}, "price"),
        ({"price": "-1.00"}, "price"),
        ({"price": "10000000000.00"}, "price"),
        ({"stock": -1}, "stock"),
    ],
)
async def test_an_invalid_product_is_refused_and_nothing_is_written(
    gql: GraphQLClient, probe: WriteModelProbe, changes: dict[str, Any], field: str
) -> None:
    before, marker = await probe.high_water(), unique("refused")
    widget = {"name": "Widget", "price": "5.00", "stock": 1, "description": marker, **changes}
    error = await error_of(gql, CREATE_PRODUCT, input=widget)
    assert error["code"] == "BAD_USER_INPUT"
    assert error["field"] == field
    assert await products_written(probe, before, marker) == NOTHING_FOR_PRODUCT


async def test_a_description_beyond_ten_thousand_characters_is_refused_not_cut(
    gql: GraphQLClient, probe: WriteModelProbe
) -> None:
    """Input beyond a limit is refused with its code, as a name is: a cut description would be a silent loss."""
    marker = unique("long")
    too_long, longest = (marker + "d" * (size - len(marker)) for size in (10_001, 10_000))

    async def written_with_marker() -> int:
        rows = await probe.scalar(
            "SELECT COUNT(*) FROM products WHERE id > %s AND description LIKE %s", before["products"], f"{marker}%"
        )
        events = [e for e in await probe.events_since(before) if str(e.data.get("description")).startswith(marker)]
        return int(rows) + len(events)

    before = await probe.high_water()
    widget = {"name": "Widget", "price": "5.00", "stock": 1, "description": too_long}
    assert await error_of(gql, CREATE_PRODUCT, input=widget) == {"code": "BAD_USER_INPUT", "field": "description"}
    assert await written_with_marker() == 0

    # An update is refused the same way, and the product keeps its description and version.
    notes = await stock_product(gql, unique("notes"), "3.00", 1, description="short")
    before = await probe.high_water()
    error = await error_of(gql, UPDATE_PRODUCT, id=notes["id"], input={"description": too_long})
    assert error == {"code": "BAD_USER_INPUT", "field": "description"}
    assert await product_events_since(probe, before, notes["id"]) == []
    row = await write_row(probe, "products", notes["id"])
    assert (row["description"], row["version"]) == ("short", 1)

    # Up to the limit, the description is kept whole, in the write model and in the answer.
    kept = await stock_product(gql, "Widget", "5.00", 1, description=longest)
    assert kept["description"] == longest
    assert (await write_row(probe, "products", kept["id"]))["description"] == longest
    assert await written_with_marker() == 2  # the control: the product row and its product.created event


async def test_the_nothing_written_checks_do_see_what_an_accepted_command_writes(
    gql: GraphQLClient, probe: WriteModelProbe
) -> None:
    """The control for every refusal here: the same product and an order, valid, are counted."""
    before, marker = await probe.high_water(), unique("accepted")
    widget = await stock_product(gql, "Widget", "5.00", 3, description=marker)
    assert await products_written(probe, before, marker) == {"products": 1, "events": 1}
    customer = await register_customer(gql)
    await place_order(gql, customer, (widget, 2))
    written = await orders_written(probe, before, customer["id"])
    assert (written["orders"], written["order_items"]) == (1, 1)
    # CREATED, then RESERVED with its own event once a running stock worker has reserved it.
    assert written["order_status_history"] >= 1 and written["events"] >= 1


async def test_a_price_with_more_than_two_decimals_is_refused(gql: GraphQLClient, probe: WriteModelProbe) -> None:
    before, marker = await probe.high_water(), unique("fraction")
    create = """mutation($marker: String!) {
      createProduct(input: {name: "Fraction", price: "10.505", stock: 1, description: $marker}) { id }
    }"""
    assert (await error_of(gql, create, marker=marker))["code"] == "BAD_USER_INPUT"
    assert await products_written(probe, before, marker) == NOTHING_FOR_PRODUCT

    product = await stock_product(gql, unique("whole"), "10.50", 1)
    before = await probe.high_water()
    update = 'mutation($id: ID!) { updateProduct(id: $id, input: {price: "1.001"}) { id } }'
    assert (await error_of(gql, update, id=product["id"]))["code"] == "BAD_USER_INPUT"
    assert await product_events_since(probe, before, product["id"]) == []
    row = await write_row(probe, "products", product["id"])
    assert (row["price"], row["version"]) == (Decimal("10.50"), 1)


@pytest.mark.parametrize(
    "changes",
    [{"price": "10.505"}, {"price": "abc"}, {"price": "NaN"}, {"price": True}, {"stock": 2**31}],
    ids=["three-decimals", "not-a-number", "nan", "boolean", "int-overflow"],
)
async def test_a_malformed_money_or_count_variable_is_bad_user_input(
    gql: GraphQLClient, probe: WriteModelProbe, changes: dict[str, Any]
) -> None:
    before, marker = await probe.high_water(), unique("malformed")
    widget = {"name": "Widget", "price": "5.00", "stock": 1, "description": marker, **changes}
    assert (await error_of(gql, CREATE_PRODUCT, input=widget))["code"] == "BAD_USER_INPUT"
    assert await products_written(probe, before, marker) == NOTHING_FOR_PRODUCT


async def test_a_product_is_renamed_repriced_and_restocked(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    lamp = await stock_product(gql, unique("lamp"), "25.00", 4)
    before = await probe.high_water()

    renamed = (await gql.data(UPDATE_PRODUCT, id=lamp["id"], input={"name": "Desk lamp", "description": "LED"}, v=1))[
        "updateProduct"
    ]
    assert renamed["name"] == "Desk lamp" and renamed["description"] == "LED"
    assert renamed["price"] == "25.00" and renamed["stock"] == 4 and renamed["version"] == 2

    repriced = (await gql.data(UPDATE_PRODUCT, id=lamp["id"], input={"price": "19.9"}, v=2))["updateProduct"]
    assert repriced["price"] == "19.90" and repriced["version"] == 3

    sold_out = (await gql.data(UPDATE_PRODUCT, id=lamp["id"], input={"stock": 0}))["updateProduct"]
    assert sold_out["stock"] == 0 and sold_out["version"] == 4

    # Setting what is already there is not a change: no new version, no event.
    same = (await gql.data(UPDATE_PRODUCT, id=lamp["id"], input={"price": "19.90", "stock": 0}))["updateProduct"]
    assert same["version"] == 4

    assert await product_events_since(probe, before, lamp["id"]) == ["product.updated"] * 3
    row = await write_row(probe, "products", lamp["id"])
    assert (row["name"], row["price"], row["stock"], row["version"]) == ("Desk lamp", Decimal("19.90"), 0, 4)

    seen = await read_product(gql, lamp["id"], min_version=4)
    assert seen is not None
    same_product(seen, sold_out)
    assert ms(seen["createdAt"]) == ms(lamp["createdAt"])  # created once, kept through the updates


async def test_updating_a_product_follows_the_rules_and_a_refusal_writes_nothing(
    gql: GraphQLClient, probe: WriteModelProbe
) -> None:
    chair = await stock_product(gql, unique("chair"), "80.00", 2)
    before = await probe.high_water()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"id": chair["id"], "input": {"name": "Stool"}, "v": 2}, "CONFLICT"),
        ({"id": chair["id"], "input": {"name": "Stool"}, "v": 0}, "CONFLICT"),
        ({"id": "999999999999", "input": {"name": "Ghost"}}, "NOT_FOUND"),
        ({"id": chair["id"], "input": {}}, "BAD_USER_INPUT"),
        ({"id": chair["id"], "input": {"name": ""}}, "BAD_USER_INPUT"),
        ({"id": chair["id"], "input": {"name": " " * 3}}, "BAD_USER_INPUT"),
        ({"id": chair["id"], "input": {"name": "x" * 256}}, "BAD_USER_INPUT"),
        ({"id": chair["id"], "input": {"price": "0"}}, "BAD_USER_INPUT"),
        ({"id": chair["id"], "input": {"price": "-80.00"}}, "BAD_USER_INPUT"),
        ({"id": chair["id"], "input": {"stock": -1}}, "BAD_USER_INPUT"),
        ({"id": chair["id"], "input": {"name": "Stool", "stock": -1}}, "BAD_USER_INPUT"),  # all or nothing
        ({"id": "abc", "input": {"name": "Stool"}}, "BAD_USER_INPUT"),
        ({"id": "0", "input": {"name": "Stool"}}, "BAD_USER_INPUT"),
    ]
    for variables, code in cases:
        assert (await error_of(gql, UPDATE_PRODUCT, **variables))["code"] == code, variables

    assert await product_events_since(probe, before, chair["id"]) == []
    row = await write_row(probe, "products", chair["id"])
    assert (row["name"], row["price"], row["stock"], row["version"]) == (chair["name"], Decimal("80.00"), 2, 1)

    # The version the caller read is the one that counts.
    moved = (await gql.data(UPDATE_PRODUCT, id=chair["id"], input={"stock": 3}, v=1))["updateProduct"]
    assert moved["version"] == 2


async def test_a_deleted_product_leaves_the_catalogue_and_cannot_be_ordered(
    gql: GraphQLClient, system: RunningSystem, probe: WriteModelProbe
) -> None:
    tag = unique("retired")
    kettle = await stock_product(gql, f"{tag} kettle", "30.00", 5)
    customer = await register_customer(gql)
    assert await read_product(gql, kettle["id"], min_version=1) is not None

    before = await probe.high_water()
    deleted = (await gql.data(DELETE_PRODUCT, id=kettle["id"]))["deleteProduct"]
    assert deleted == {"id": kettle["id"], "version": 2}

    # Soft delete: the row stays (orders keep their snapshots), marked deleted, and the deletion is announced.
    row = await write_row(probe, "products", kettle["id"])
    assert row["deleted_at"] is not None and row["version"] == 2 and row["stock"] == 5
    assert await product_events_since(probe, before, kettle["id"]) == ["product.deleted"]

    # Once projected, the product is gone from lookups and from the catalogue.
    assert await read_product(gql, kettle["id"], min_version=2) is None
    listed = await gql.data(LIST_PRODUCTS, first=10, search=tag, orderBy="ID_ASC")
    assert listed["products"]["totalCount"] == 0 and listed["products"]["nodes"] == []

    # Nobody can order it any more, and trying writes nothing.
    before = await probe.high_water()
    error = await error_of(gql, CREATE_ORDER, input=order_input(customer["id"], (kettle["id"], 1)))
    assert error == {"code": "NOT_FOUND", "field": "items[0].productId"}
    assert await orders_written(probe, before, customer["id"]) == NOTHING_FOR_CUSTOMERS

    # It cannot be deleted or changed again.
    assert (await error_of(gql, DELETE_PRODUCT, id=kettle["id"]))["code"] == "NOT_FOUND"
    assert (await error_of(gql, UPDATE_PRODUCT, id=kettle["id"], input={"stock": 9}))["code"] == "NOT_FOUND"
    assert (await error_of(gql, DELETE_PRODUCT, id="abc"))["code"] == "BAD_USER_INPUT"
    assert (await error_of(gql, DELETE_PRODUCT, id="0"))["code"] == "BAD_USER_INPUT"
    assert (await error_of(gql, DELETE_PRODUCT, id="999999999999"))["code"] == "NOT_FOUND"
    assert await product_events_since(probe, before, kettle["id"]) == []


async def test_looking_up_a_product(gql: GraphQLClient) -> None:
    assert (await gql.data(READ_PRODUCT, id="999999999999"))["product"] is None
    assert (await error_of(gql, READ_PRODUCT, id="abc"))["code"] == "BAD_USER_INPUT"
    assert (await error_of(gql, READ_PRODUCT, id="1", v=0))["code"] == "BAD_USER_INPUT"


# The catalogue of one test, in the order the products are stocked (so ids ascend down this list).
CATALOGUE = [
    ("Fig", "7.25", 0),
    ("cherry", "12.00", 0),
    ("elderberry", "99.99", 25),
    ("Apple", "1.50", 10),
    ("Date", "7.25", 1),
    ("Cherry", "12.00", 3),
    ("banana", "0.99", 0),
]
ORDERINGS = {
    "ID_ASC": ["Fig", "cherry", "elderberry", "Apple", "Date", "Cherry", "banana"],
    "NEWEST": ["banana", "Cherry", "Date", "Apple", "elderberry", "cherry", "Fig"],
    # Case-insensitive; equal names keep id order.
    "NAME_ASC": ["Apple", "banana", "cherry", "Cherry", "Date", "elderberry", "Fig"],
    # Equal prices keep id order (ascending) or reverse id order (descending).
    "PRICE_ASC": ["banana", "Apple", "Fig", "Date", "cherry", "Cherry", "elderberry"],
    "PRICE_DESC": ["elderberry", "Cherry", "cherry", "Date", "Fig", "Apple", "banana"],
}


async def browse(gql: GraphQLClient, tag: str, page_size: int, **filters: Any) -> list[str]:
    """Walk every page of the catalogue; returns the product names (without the tag) in the order served."""
    filters = {"orderBy": "ID_ASC", **filters}
    filters.setdefault("search", tag)
    names: list[str] = []
    after = None
    totals = set()
    while True:
        page = (await gql.data(LIST_PRODUCTS, first=page_size, after=after, **filters))["products"]
        assert len(page["nodes"]) <= page_size
        names += [node["name"].removeprefix(f"{tag} ") for node in page["nodes"]]
        totals.add(page["totalCount"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert page["nodes"] and page["pageInfo"]["endCursor"]
        after = page["pageInfo"]["endCursor"]
    assert totals == {len(names)}, (totals, names)  # every page tells the same total
    return names


async def test_the_catalogue_is_searched_filtered_and_paged_in_every_order(
    gql: GraphQLClient, system: RunningSystem
) -> None:
    tag = unique("fruit")
    stocked = {name: await stock_product(gql, f"{tag} {name}", price, stock) for name, price, stock in CATALOGUE}

    async def all_projected() -> bool:
        page = await gql.data(LIST_PRODUCTS, first=1, search=tag, orderBy="ID_ASC")
        return page["products"]["totalCount"] == len(CATALOGUE)

    await eventually(all_projected, timeout=120)

    # Every ordering, walked page by page; small pages split runs of equal names and prices across pages.
    for order_by, expected in ORDERINGS.items():
        for page_size in (1, 2, 3, 100):
            assert await browse(gql, tag, page_size, orderBy=order_by) == expected, (order_by, page_size)

    # The catalogue shows what was stocked.
    page = await gql.data(LIST_PRODUCTS, first=100, search=tag, orderBy="ID_ASC")
    for node in page["products"]["nodes"]:
        name = node["name"].removeprefix(f"{tag} ")
        assert {k: node[k] for k in ("id", "price", "stock")} == {k: stocked[name][k] for k in ("id", "price", "stock")}

    # Search is a case-insensitive prefix of the name.
    assert await browse(gql, tag, 2, search=tag.upper()) == ORDERINGS["ID_ASC"]
    assert await browse(gql, tag, 2, search=f"{tag} CH") == ["cherry", "Cherry"]
    assert await browse(gql, tag, 2, search=f"  {tag} app  ") == ["Apple"]
    assert await browse(gql, tag, 2, search=tag[3:]) == []  # not a prefix
    assert await browse(gql, tag, 2, search=f"{tag} .*") == []  # taken literally, not as a pattern

    # In stock or sold out.
    assert await browse(gql, tag, 2, inStock=True) == ["elderberry", "Apple", "Date", "Cherry"]
    assert await browse(gql, tag, 2, inStock=False) == ["Fig", "cherry", "banana"]

    # Price bounds are inclusive.
    assert await browse(gql, tag, 2, minPrice="7.25") == ["Fig", "cherry", "elderberry", "Date", "Cherry"]
    assert await browse(gql, tag, 2, maxPrice="7.25") == ["Fig", "Apple", "Date", "banana"]
    assert await browse(gql, tag, 2, minPrice="7.25", maxPrice="7.25") == ["Fig", "Date"]
    assert await browse(gql, tag, 2, minPrice="7.26", maxPrice="11.99") == []

    # Everything at once: in stock, between 1.50 and 12.00, dearest first.
    combined = await browse(gql, tag, 1, inStock=True, minPrice="1.50", maxPrice="12.00", orderBy="PRICE_DESC")
    assert combined == ["Cherry", "Date", "Apple"]


async def test_paging_arguments_are_checked(gql: GraphQLClient, system: RunningSystem) -> None:
    tag = unique("page")
    await stock_product(gql, f"{tag} one", "1.00", 1)
    await stock_product(gql, f"{tag} two", "2.00", 1)
    for variables in ({"first": 101}, {"first": -1}, {"first": 2, "after": "not-a-cursor"}):
        error = await error_of(gql, LIST_PRODUCTS, orderBy="ID_ASC", **variables)
        assert error["code"] == "BAD_USER_INPUT", variables

    # A cursor of one ordering does not fit another.
    async def first_page() -> dict[str, Any] | None:
        page = (await gql.data(LIST_PRODUCTS, first=1, search=tag, orderBy="ID_ASC"))["products"]
        return page if page["pageInfo"]["hasNextPage"] else None

    cursor = (await eventually(first_page, timeout=120))["pageInfo"]["endCursor"]
    error = await error_of(gql, LIST_PRODUCTS, first=1, search=tag, after=cursor, orderBy="PRICE_ASC")
    assert error["code"] == "BAD_USER_INPUT"
