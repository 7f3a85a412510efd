"""createProduct: a product with a positive price (2 decimals) and stock >= 0; emits `product.created`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from command.db import WriteDatabase
from command.domain.product import NewProduct
from command.store import clock, insert_product, save
from shared.events import ProductSnapshot


@dataclass(frozen=True)
class CreateProduct:
    name: str
    price: Decimal
    stock: int
    description: str = ""


async def create_product(db: WriteDatabase, command: CreateProduct) -> ProductSnapshot:
    new = NewProduct.of(command.name, command.description, command.price, command.stock, clock())
    async with db.transaction() as tx:
        product = await insert_product(tx, new)
        await save(tx, product)
    return product.state
