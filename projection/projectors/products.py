"""ProductProjector: `product.*` and `stock.*` events -> ProductView (every one carries the full product)."""

from __future__ import annotations

from projection.documents import ProductView
from projection.projectors.base import Projector
from shared.events import ProductEvent, ProductSnapshot, Topic
from shared.money import to_cents


def product_document(snapshot: ProductSnapshot) -> ProductView:
    """The ProductView of a write-side product snapshot (the projector's, a mutation's answer, rebuild's, verify's)."""
    return ProductView(
        id=snapshot.id,
        name=snapshot.name,
        name_lc=snapshot.name.lower(),
        description=snapshot.description,
        price_cents=to_cents(snapshot.price),
        stock=snapshot.stock,
        in_stock=snapshot.stock > 0,
        version=snapshot.version,
        created_at=snapshot.created_at,
        updated_at=snapshot.updated_at,
        deleted=snapshot.deleted_at is not None,
    )


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

    def view(self, event: ProductEvent) -> ProductView:
        return product_document(event.data)
