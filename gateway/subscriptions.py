"""The Subscription type: an order's changes, or a user's orders' changes, merged from this gateway's feed."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import strawberry

from command.validation import parse_id
from gateway.context import Info
from gateway.feed import Listener
from gateway.policy import owner_scope
from gateway.types import Order
from projection.documents import OrderView
from projection.queries import current_user
from shared.errors import NotFound
from shared.events import AggregateType


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def order_status_changed(self, info: Info, order_id: strawberry.ID) -> AsyncGenerator[Order, None]:
        """First the order as the read model has it now, then each newer version, in order; and the order
        again when its user changes (a rename writes the users view only)."""
        oid = parse_id(order_id, "orderId")
        ctx = info.context
        async with ctx.feed.listen((AggregateType.ORDER, oid)) as listener:
            current = await ctx.read_model.order(oid)
            if current is None:  # perhaps just created: give the projector the read-your-writes wait
                await ctx.feed.wait_for_version(
                    AggregateType.ORDER,
                    oid,
                    1,
                    lambda: ctx.read_model.version_of(AggregateType.ORDER, oid),
                    ctx.settings.read_wait_timeout,
                )
                current = await ctx.read_model.order(oid)
            if current is None:
                raise NotFound(f"order {oid} not found", field="orderId")
            # Before the first answer resolves Order.user, so a rename is either in it or announced after it.
            ctx.feed.follow(listener, (AggregateType.USER, current.user_id))
            view = (await ctx.read_model.users_by_id([current.user_id])).get(current.user_id)
            shown_user = current_user(current.user, view).version
            yield Order.from_doc(current)
            async for document in order_changes(listener, current, shown_user, lambda: ctx.read_model.order(oid)):
                yield Order.from_doc(document)

    @strawberry.subscription
    async def order_updates(self, info: Info, user_id: strawberry.ID | None = None) -> AsyncGenerator[Order, None]:
        """Every change of every order of one user (or of all orders: admins; customers get their own)."""
        uid = owner_scope(info, user_id)
        async with info.context.feed.listen(("order-of-user", uid)) as listener:
            last_seen: dict[int, int] = {}
            while True:
                order = OrderView.model_validate((await listener.queue.get()).document)
                if order.version > last_seen.get(order.id, 0):
                    last_seen[order.id] = order.version
                    yield Order.from_doc(order)


async def order_changes(
    listener: Listener, sent: OrderView, shown_user: int, reread: Callable[[], Awaitable[OrderView | None]]
) -> AsyncIterator[OrderView]:
    """The order's announced versions above the last one sent (never a duplicate or a step back), and the last
    one sent again when its user's view reaches a version newer than the user the client saw (`shown_user`):
    Order.user resolves from the users view at read time. A users view the client already saw (its creation
    projected late, a redelivery) sends nothing."""
    while True:
        changes = [await listener.queue.get()]
        newer: list[OrderView] = []
        if listener.overflowed:  # the client fell behind: skip to the current state
            listener.overflowed = False
            while not listener.queue.empty():
                changes.append(listener.queue.get_nowait())
            newer.append(await reread() or sent)
        newer += [  # parsed only when newer: most announcements a subscriber gets are not
            OrderView.model_validate(c.document)
            for c in changes
            if c.kind == AggregateType.ORDER and c.document["version"] > sent.version
        ]
        newer = [order for order in newer if order.version > sent.version]
        if newer:
            sent = max(newer, key=lambda order: order.version)
        renamed = max((c.document["version"] for c in changes if c.kind == AggregateType.USER), default=0)
        if newer or renamed > shown_user:
            shown_user = max(shown_user, renamed, sent.user.version)
            yield sent
            if sent.deleted:
                return
