"""What every resolver gets: explicit handles on the write and read models, made per request."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader

from command.db import WriteDatabase
from gateway.feed import ViewFeed
from projection.queries import Page, ReadModel
from shared.settings import Settings

UserOrdersKey = tuple[int, int, str | None]  # user id, first, status


@dataclass
class GatewayContext:
    write_db: WriteDatabase
    read_model: ReadModel
    settings: Settings
    feed: ViewFeed
    request: Any = None
    response: Any = None
    user_orders: DataLoader[UserOrdersKey, Page] = field(init=False)

    def __post_init__(self) -> None:
        self.user_orders = DataLoader(load_fn=self._load_user_orders)

    async def _load_user_orders(self, keys: Sequence[UserOrdersKey]) -> list[Page]:
        groups: dict[tuple[int, str | None], list[int]] = defaultdict(list)
        for user_id, first, status in keys:
            groups[(first, status)].append(user_id)
        pages: dict[UserOrdersKey, Page] = {}
        for (first, status), user_ids in groups.items():
            for user_id, page in (await self.read_model.first_orders_of_users(user_ids, first, status)).items():
                pages[(user_id, first, status)] = page
        return [pages[key] for key in keys]


Info = strawberry.Info[GatewayContext, None]
