"""The read-path baseline server: a bare Strawberry schema with the gateway's own types (Product, Order,
Connection, the Decimal scalar) answering `products(first)` and `order(id)` from objects built once in memory.

No MongoDB at request time, no extensions (limits, error masking, metrics, permissions), no middleware;
served by uvicorn with the gateway's Config, in the default asyncio loop as `eventshop gateway` runs.
Run by bench/reads.py: `python -m bench.bare --port P --mongo-uri URI --database DB`.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.dataloader import DataLoader
from strawberry.schema.config import StrawberryConfig

from gateway.connections import Connection, connection
from gateway.scalars import DecimalScalar
from gateway.types import Order, Product
from projection.documents import OrderUser, OrderView, ProductView
from projection.queries import Page, ReadModel, encode_cursor, known
from projection.store import connect_read_model


@dataclass
class BareContext:
    """What the gateway's types ask of the context: `Order.user` loads users through `users` (from memory here)."""

    users: DataLoader[int, OrderUser | None]


class BareGraphQL(GraphQL[BareContext, None]):
    def __init__(self, schema: strawberry.Schema, users: dict[int, OrderUser]) -> None:
        super().__init__(schema, graphql_ide=None, allow_queries_via_get=False)
        self.by_id = users

    async def get_context(self, request: Any, response: Any = None) -> BareContext:
        async def load(ids: list[int]) -> list[OrderUser | None]:
            return [self.by_id.get(i) for i in ids]

        return BareContext(users=DataLoader(load_fn=load, cache=False))


def build_schema(products: list[ProductView], orders: list[OrderView]) -> strawberry.Schema:
    ordered = sorted(products, key=lambda d: d.id)
    pages: dict[int, Connection[Product]] = {}
    by_id = {doc.id: Order.from_doc(doc) for doc in orders}

    def page(first: int) -> Connection[Product]:
        if first not in pages:
            docs = ordered[:first]
            cursor = encode_cursor([docs[-1].id]) if docs else None
            pages[first] = connection(Page(docs, len(ordered) > first, cursor, known(len(ordered))), Product.from_doc)
        return pages[first]

    @strawberry.type
    class Query:
        @strawberry.field
        def products(self, first: int = 20) -> Connection[Product]:
            return page(first)

        @strawberry.field
        def order(self, id: strawberry.ID) -> Order | None:
            return by_id.get(int(id))

    page(20)
    return strawberry.Schema(query=Query, config=StrawberryConfig(scalar_map={Decimal: DecimalScalar}))


async def load(mongo_uri: str, database: str) -> tuple[list[ProductView], list[OrderView], dict[int, OrderUser]]:
    """The view documents, read once as the gateway reads them (parsed into the document models)."""
    client, db = await connect_read_model(mongo_uri, database)
    try:
        views = ReadModel(db)
        products = [ProductView.model_validate(d) async for d in views.products.collection.find({"deleted": False})]
        orders = [OrderView.model_validate(d) async for d in views.orders.collection.find({"deleted": False})]
        return products, orders, await views.users_by_id([order.user_id for order in orders])
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mongo-uri", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    products, orders, users = asyncio.run(load(args.mongo_uri, args.database))
    graphql = BareGraphQL(build_schema(products, orders), users)

    async def healthz(request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok", "products": len(products), "orders": len(orders)})

    app = Starlette(routes=[Route("/readyz", healthz), Route("/graphql", graphql, methods=["GET", "POST"])])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="off",
        ws="auto",
        timeout_graceful_shutdown=5,
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
