"""A page's totalCount through the gateway: counted once and reused until the gateway's feed announces a change
of that view (gateway/totals.py), then counted again; a minVersion read shows in the totals at once.

The totals' maximum age is made far longer than the deadlines here, so only the feed can make them move.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from command.db import WriteDatabase
from gateway.totals import KnownTotals
from projection.documents import ProductView
from projection.queries import ReadModel
from tests.conftest import (
    GraphQLClient,
    RunningSystem,
    asgi_http,
    bearer,
    eventually,
    fed_gateway,
    make_test_settings,
    unique,
)
from tests.integration.shop import LIST_PRODUCTS, read_product, stock_product


@pytest.fixture
async def counted(write_db: WriteDatabase, read_model: ReadModel) -> AsyncIterator[tuple[GraphQLClient, KnownTotals]]:
    settings = make_test_settings(totals_max_age_seconds=3600)
    async with fed_gateway(settings, write_db, read_model) as (app, feed):
        async with asgi_http(app, bearer(settings)) as http:
            yield GraphQLClient(http), feed.totals


async def total(gql: GraphQLClient, tag: str) -> int:
    listed = await gql.data(LIST_PRODUCTS, first=1, search=tag, orderBy="ID_ASC")
    return int(listed["products"]["totalCount"])


async def test_a_total_is_reused_until_the_feed_announces_a_change_of_its_view(
    counted: tuple[GraphQLClient, KnownTotals], read_model: ReadModel, system: RunningSystem
) -> None:
    gql, totals = counted
    tag = unique("tot")
    assert totals.following
    assert await total(gql, tag) == 0

    # A view written behind the feed's back (no announcement) does not move the total: it was reused.
    now = datetime.now(UTC)
    name = f"{tag} hidden"
    hidden = ProductView(
        _id=10**12 + 1,
        version=1,
        created_at=now,
        updated_at=now,
        name=name,
        name_lc=name.lower(),
        description="",
        price_cents=100,
        stock=1,
        in_stock=True,
    )
    await read_model.products.collection.insert_one(hidden.stored())
    try:
        assert await total(gql, tag) == 0

        # A product stocked through the gateway is projected and announced: the total is counted again.
        await stock_product(gql, f"{tag} lamp", "12.00", 3)

        async def counted_again() -> bool:
            return await total(gql, tag) == 2  # the lamp, and the hidden view counted along with it

        await eventually(counted_again, timeout=30)
    finally:
        await read_model.products.collection.delete_one({"_id": hidden.id})


async def test_a_read_that_waited_for_a_version_shows_in_the_totals_at_once(
    counted: tuple[GraphQLClient, KnownTotals], system: RunningSystem
) -> None:
    gql, _ = counted
    tag = unique("tot")
    assert await total(gql, tag) == 0
    lamp = await stock_product(gql, f"{tag} lamp", "12.00", 3)
    assert await read_product(gql, lamp["id"], min_version=1) is not None
    assert await total(gql, tag) == 1
