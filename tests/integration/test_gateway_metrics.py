"""Each gateway app's /metrics counts its own subscriptions, however many apps one process runs."""

from __future__ import annotations

import re

from starlette.applications import Starlette

from command.db import WriteDatabase
from gateway.app import create_app
from gateway.feed import ViewFeed
from projection.queries import ReadModel
from shared.settings import Settings
from tests.conftest import asgi_http


async def open_subscriptions(app: Starlette) -> float:
    async with asgi_http(app) as http:
        text = (await http.get("/metrics")).text
    match = re.search(r"^eventshop_subscriptions_active (\S+)$", text, re.MULTILINE)
    assert match, "metric eventshop_subscriptions_active missing"
    assert "eventshop_relay_published_total" in text, "the process's own metrics are shown too"
    return float(match.group(1))


async def test_two_apps_in_one_process_each_report_their_own_open_subscriptions(
    settings: Settings, write_db: WriteDatabase, read_model: ReadModel
) -> None:
    first, second = ViewFeed(settings), ViewFeed(settings)
    apps = [
        create_app(write_db=write_db, read_model=read_model, feed=feed, settings=settings, readiness={})
        for feed in (first, second)
    ]
    async with first.listen(("order", 1)) as watching, first.listen(("order", 2)), second.listen(("order", 1)):
        first.follow(watching, ("user", 7))  # an order's subscriber follows its user too: still one subscription
        assert [await open_subscriptions(app) for app in apps] == [2, 1]
    assert [await open_subscriptions(app) for app in apps] == [0, 0]
