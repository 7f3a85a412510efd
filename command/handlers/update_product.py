"""updateProduct: change the given fields of a live product; emits `product.updated`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from command.db import WriteDatabase
from command.handlers.common import bump, lock_live
from command.models import Product
from command.snapshots import product_snapshot
from command.validation import MAX_STOCK, check_expected_version, require_int, require_price, require_text
from shared.errors import BadUserInput
from shared.events import ProductUpdated


@dataclass(frozen=True)
class UpdateProduct:
    product_id: int
    name: str | None = None
    description: str | None = None
    price: Decimal | None = None
    stock: int | None = None
    expected_version: int | None = None


async def update_product(db: WriteDatabase, command: UpdateProduct) -> Product:
    changes: dict[str, object] = {}
    if command.name is not None:
        changes["name"] = require_text(command.name, "name")
    if command.description is not None:
        changes["description"] = command.description.strip()[:10_000]
    if command.price is not None:
        changes["price"] = require_price(command.price)
    if command.stock is not None:
        changes["stock"] = require_int(command.stock, "stock", low=0, high=MAX_STOCK)
    if not changes:
        raise BadUserInput("give at least one field to change", field="input")
    async with db.transaction() as tx:
        product = await lock_live(tx, Product, command.product_id, "product")
        check_expected_version(product.version, command.expected_version)
        changes = {k: v for k, v in changes.items() if getattr(product, k) != v}
        if not changes:
            return product  # nothing changes: no new version, no event
        for field, value in changes.items():
            setattr(product, field, value)
        bump(product)
        await tx.session.flush()
        tx.record(ProductUpdated.of(product_snapshot(product)))
    return product
