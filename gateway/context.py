"""What every resolver gets: explicit handles on the write and read models, and who is calling; made per
request (per connection for WebSockets)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader

from command.db import WriteDatabase
from gateway.auth import Principal
from gateway.feed import ViewFeed
from gateway.limits import MutationLimits
from projection.documents import OrderUser, OrderView
from projection.queries import Page, ReadModel
from shared.errors import Unauthenticated
from shared.events import OrderStatus
from shared.settings import Settings

UserOrdersKey = tuple[int, int, OrderStatus | None]  # user id, first, status


@dataclass
class GatewayContext:
    write_db: WriteDatabase
    read_model: ReadModel
    settings: Settings
    feed: ViewFeed
    request: Any = None
    response: Any = None
    principal: Principal | None = None  # None: anonymous
    auth_error: Unauthenticated | None = None  # a token was sent but is not valid
    limiter: MutationLimits | None = None
    client_ip: str = "unknown"
    connection_params: dict[str, Any] | None = None  # WebSocket connection_init payload (set by Strawberry)
    user_orders: DataLoader[UserOrdersKey, Page[OrderView]] = field(init=False)
    users: DataLoader[int, OrderUser | None] = field(init=False)

    def __post_init__(self) -> None:
        self.user_orders = DataLoader(load_fn=self._load_user_orders)
        # Not cached: a subscription keeps its context for as long as it runs, and names change meanwhile.
        self.users = DataLoader(load_fn=self._load_users, cache=False)

    @property
    def client(self) -> str:
        """The rate-limit key: the token's principal, or the client address when anonymous."""
        if self.principal is not None and self.principal.from_token:
            return f"{self.principal.role.value}:{self.principal.subject}"
        return f"ip:{self.client_ip}"

    async def _load_user_orders(self, keys: Sequence[UserOrdersKey]) -> list[Page[OrderView]]:
        groups: dict[tuple[int, OrderStatus | None], list[int]] = defaultdict(list)
        for user_id, first, status in keys:
            groups[(first, status)].append(user_id)
        pages: dict[UserOrdersKey, Page[OrderView]] = {}
        for (first, status), user_ids in groups.items():
            for user_id, page in (await self.read_model.first_orders_of_users(user_ids, first, status)).items():
                pages[(user_id, first, status)] = page
        return [pages[key] for key in keys]

    async def _load_users(self, keys: Sequence[int]) -> list[OrderUser | None]:
        found = await self.read_model.users_by_id(keys)
        return [found.get(key) for key in keys]


Info = strawberry.Info[GatewayContext, None]
