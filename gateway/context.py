"""What every resolver gets: explicit handles on the write and read models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry

from command.db import WriteDatabase
from gateway.feed import ViewFeed
from projection.queries import ReadModel
from shared.settings import Settings


@dataclass
class GatewayContext:
    write_db: WriteDatabase
    read_model: ReadModel
    settings: Settings
    feed: ViewFeed
    request: Any = None
    response: Any = None


Info = strawberry.Info[GatewayContext, None]
