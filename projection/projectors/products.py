"""ProductProjector: `product.*` and `stock.*` events -> ProductView (every one carries the full product)."""

from __future__ import annotations

from projection.documents import ProductView
from projection.projectors.base import Projector
from shared.events import ProductEvent, Topic


class ProductProjector(Projector[ProductEvent]):
    view_type = ProductView

    topics = frozenset(
        {
            Topic.PRODUCT_CREATED,
            Topic.PRODUCT_UPDATED,
            Topic.PRODUCT_DELETED,
            Topic.STOCK_RESERVED,
            Topic.STOCK_RELEASED,
        }
    )
