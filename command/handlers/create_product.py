"""createProduct: a product with a positive price (2 decimals) and stock >= 0; emits `product.created`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from command.db import WriteDatabase
from command.models import Product
from command.snapshots import product_snapshot
from command.validation import MAX_STOCK, require_int, require_price, require_text
from shared.events import ProductCreated


@dataclass(frozen=True)
class CreateProduct:
    name: str
    price: Decimal
    stock: int
    description: str = ""


async def create_product(db: WriteDatabase, command: CreateProduct) -> Product:
    product = Product(
        name=require_text(command.name, "name"),
        description=(command.description or "").strip()[:10_000],
        price=require_price(command.price),
        stock=require_int(command.stock, "stock", low=0, high=MAX_STOCK),
    )
    async with db.transaction() as tx:
        tx.session.add(product)
        await tx.session.flush()
        tx.record(ProductCreated.of(product_snapshot(product)))
    return product
