"""deleteProduct: soft delete; existing orders keep their item snapshots; emits `product.deleted`."""

from __future__ import annotations

from command.db import WriteDatabase
from command.handlers.soft_delete import soft_delete
from command.store import lock_product
from shared.events import ProductSnapshot


async def delete_product(db: WriteDatabase, product_id: int) -> ProductSnapshot:
    return await soft_delete(db, lock_product, product_id)
