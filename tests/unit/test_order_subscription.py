"""What an `orderStatusChanged` subscriber is sent after its first answer: each newer version of the order once,
and the order again only when its user's view is newer than the user the subscriber already saw.

Once seen in CI: the user's creation, projected after the subscription began, sent version 1 a second time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from gateway.feed import Announced, Listener
from gateway.subscriptions import order_changes
from projection.documents import OrderView
from shared.events import AggregateType, OrderStatus

AT = datetime(2026, 1, 1, tzinfo=UTC)


def order(version: int, user_version: int = 1) -> OrderView:
    return OrderView(
        id=7, user_id=3, user={"id": 3, "name": "Ada", "email": "a@example.com", "version": user_version},
        items=[], total_cents=100, status=OrderStatus.CREATED if version == 1 else OrderStatus.RESERVED,
        history=[], version=version, created_at=AT, updated_at=AT,
    )  # fmt: skip


def user(version: int, name: str = "Ada") -> Announced:
    document: dict[str, Any] = {"_id": 3, "name": name, "email": "a@example.com", "version": version}
    return Announced(AggregateType.USER, document)


async def sent_after(first: OrderView, shown_user: int, *announced: Announced) -> list[tuple[int, str]]:
    """What the subscriber gets for these announcements: (order version, the order's user name) per message."""
    listener = Listener()
    for message in announced:
        listener.offer(message)

    async def reread() -> OrderView | None:
        return None

    sent: list[tuple[int, str]] = []
    changes = order_changes(listener, first, shown_user, reread)
    while not listener.queue.empty():
        try:
            view = await asyncio.wait_for(anext(changes), 0.2)
        except TimeoutError:
            break
        sent.append((view.version, view.user.name))
    return sent


async def test_the_user_view_the_subscriber_already_saw_sends_nothing() -> None:
    assert await sent_after(order(1), 1, user(1)) == []


async def test_a_renamed_user_sends_the_order_again_once() -> None:
    assert await sent_after(order(2), 1, user(2, "Ada Renamed"), user(2, "Ada Renamed")) == [(2, "Ada")]


async def test_newer_versions_of_the_order_are_sent_in_order_and_only_once() -> None:
    announced = [Announced(AggregateType.ORDER, order(v).stored()) for v in (2, 2, 1, 3)]
    assert [v for v, _ in await sent_after(order(1), 1, *announced)] == [2, 3]
