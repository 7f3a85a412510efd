"""updateProduct: change the given fields of a live product; emits `product.updated` (nothing when nothing
changes)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from command.db import WriteDatabase
from command.domain.product import ProductChanges
from command.store import clock, lock_product, save
from shared.events import ProductSnapshot


@dataclass(frozen=True)
class UpdateProduct:
    product_id: int
    name: str | None = None
    description: str | None = None
    price: Decimal | None = None
    stock: int | None = None
    expected_version: int | None = None


async def update_product(db: WriteDatabase, command: UpdateProduct) -> ProductSnapshot:
    changes = ProductChanges.of(command.name, command.description, command.price, command.stock)
    async with db.transaction() as tx:
        product = await lock_product(tx, command.product_id)
        product.change(changes, clock(), command.expected_version)
        await save(tx, product)
    return product.state
