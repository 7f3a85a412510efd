"""deleteProduct: soft delete; existing orders keep their item snapshots; emits `product.deleted`."""

from __future__ import annotations

from command.db import WriteDatabase
from command.handlers.common import bump, lock_live
from command.models import Product, db_now
from command.snapshots import product_snapshot
from shared.events import ProductDeleted


async def delete_product(db: WriteDatabase, product_id: int) -> Product:
    async with db.transaction() as tx:
        product = await lock_live(tx, Product, product_id, "product")
        product.deleted_at = db_now()
        bump(product)
        await tx.session.flush()
        tx.record(ProductDeleted.of(product_snapshot(product)))
    return product
