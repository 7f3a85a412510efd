"""ProductProjector: `product.*` and `stock.*` events -> ProductView (every one carries the full product)."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from projection.documents import ProductView
from projection.projectors.base import ViewChange, apply_if_newer
from projection.store import Doc
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


class ProductProjector:
    topics = frozenset(
        {
            Topic.PRODUCT_CREATED,
            Topic.PRODUCT_UPDATED,
            Topic.PRODUCT_DELETED,
            Topic.STOCK_RESERVED,
            Topic.STOCK_RELEASED,
        }
    )

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.products = db[ProductView.collection]

    async def apply(self, event: ProductEvent) -> list[ViewChange]:
        return await apply_if_newer(self.products, product_document(event.data))
