"""ProductProjector: `product.*` and `stock.*` events -> ProductView (every one carries the full product)."""

from __future__ import annotations

from projection.documents import ProductView
from projection.projectors.base import Projector
from shared.events import ProductEvent


class ProductProjector(Projector[ProductEvent]):
    view_type = ProductView
