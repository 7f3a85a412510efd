"""The shop's vocabulary for the scenario tests: GraphQL documents and the small steps every story uses
(register a customer, stock a product, place an order, read the views once they have caught up).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from command.db import Transaction, WriteDatabase
from shared.events import Event, Topic
from tests.conftest import GraphQLClient, HighWater, WriteModelProbe, eventually, unique

PRODUCT_FIELDS = "id name description price stock version createdAt updatedAt"
ORDER_FIELDS = """
  id userId user { id name email }
  items { productId productName quantity unitPrice subtotal }
  totalAmount status paymentMethod cancelReason rejectReason
  history { status at reason }
  version createdAt updatedAt paidAt canceledAt
"""
PAGE = "pageInfo { hasNextPage endCursor } totalCount"

CREATE_USER = "mutation($input: CreateUserInput!) { createUser(input: $input) { id name email version } }"
DELETE_USER = "mutation($id: ID!) { deleteUser(id: $id) { id version } }"

CREATE_PRODUCT = f"mutation($input: CreateProductInput!) {{ createProduct(input: $input) {{ {PRODUCT_FIELDS} }} }}"
UPDATE_PRODUCT = f"""
mutation($id: ID!, $input: UpdateProductInput!, $v: Int) {{
  updateProduct(id: $id, input: $input, expectedVersion: $v) {{ {PRODUCT_FIELDS} }}
}}"""
DELETE_PRODUCT = "mutation($id: ID!) { deleteProduct(id: $id) { id version } }"
READ_PRODUCT = f"query($id: ID!, $v: Int) {{ product(id: $id, minVersion: $v) {{ {PRODUCT_FIELDS} }} }}"
LIST_PRODUCTS = f"""
query($first: Int!, $after: String, $search: String, $inStock: Boolean, $minPrice: Decimal, $maxPrice: Decimal,
      $orderBy: ProductOrderBy!) {{
  products(first: $first, after: $after, search: $search, inStock: $inStock, minPrice: $minPrice,
           maxPrice: $maxPrice, orderBy: $orderBy) {{ nodes {{ {PRODUCT_FIELDS} }} {PAGE} }}
}}"""

CREATE_ORDER = f"""
mutation($input: CreateOrderInput!) {{ createOrder(input: $input) {{ {ORDER_FIELDS} }} }}"""
PAY_ORDER = f"""
mutation($id: ID!, $method: PaymentMethod!) {{
  payOrder(id: $id, input: {{paymentMethod: $method}}) {{ {ORDER_FIELDS} }}
}}"""
UPDATE_ORDER = f"""
mutation($id: ID!, $status: OrderStatus!, $v: Int) {{
  updateOrder(id: $id, input: {{status: $status}}, expectedVersion: $v) {{ {ORDER_FIELDS} }}
}}"""
CANCEL_ORDER = f"""
mutation($id: ID!, $reason: String!) {{ cancelOrder(id: $id, input: {{reason: $reason}}) {{ {ORDER_FIELDS} }} }}"""
DELETE_ORDER = "mutation($id: ID!) { deleteOrder(id: $id) { id version } }"
READ_ORDER = f"query($id: ID!, $v: Int) {{ order(id: $id, minVersion: $v) {{ {ORDER_FIELDS} }} }}"
LIST_ORDERS = f"""
query($first: Int!, $after: String, $userId: ID, $status: OrderStatus) {{
  orders(first: $first, after: $after, userId: $userId, status: $status) {{ nodes {{ id status }} {PAGE} }}
}}"""
USER_ORDERS = f"""
query($id: ID!, $first: Int!, $after: String, $status: OrderStatus) {{
  user(id: $id) {{ id orders(first: $first, after: $after, status: $status) {{ nodes {{ id status }} {PAGE} }} }}
}}"""

PRODUCT_TOPICS = ("product.created", "product.updated", "product.deleted", "stock.reserved", "stock.released")


async def register_customer(gql: GraphQLClient, name: str = "Ada Lovelace") -> dict[str, Any]:
    data = await gql.data(CREATE_USER, input={"name": name, "email": f"{unique('customer')}@example.com"})
    return data["createUser"]


async def stock_product(gql: GraphQLClient, name: str, price: str, stock: int, description: str = "") -> dict[str, Any]:
    data = await gql.data(
        CREATE_PRODUCT, input={"name": name, "price": price, "stock": stock, "description": description}
    )
    return data["createProduct"]


def order_input(user_id: str, *lines: tuple[Any, ...]) -> dict[str, Any]:
    """Lines are (productId, quantity) or (productId, quantity, unitPrice guard)."""
    items = []
    for line in lines:
        item: dict[str, Any] = {"productId": line[0], "quantity": line[1]}
        if len(line) > 2:
            item["unitPrice"] = line[2]
        items.append(item)
    return {"userId": user_id, "items": items}


async def place_order(gql: GraphQLClient, user: dict[str, Any], *lines: tuple[Any, ...]) -> dict[str, Any]:
    """Lines are (product, quantity) or (product, quantity, unitPrice guard)."""
    wire = [(line[0]["id"], *line[1:]) for line in lines]
    return (await gql.data(CREATE_ORDER, input=order_input(user["id"], *wire)))["createOrder"]


async def error_of(gql: GraphQLClient, query: str, **variables: Any) -> dict[str, Any]:
    """The extensions (code, field, details) of the single error of a request that must fail."""
    body = await gql.execute(query, **variables)
    assert body.get("errors") and len(body["errors"]) == 1, body
    return body["errors"][0]["extensions"]  # type: ignore[no-any-return]


async def _read(gql: GraphQLClient, query: str, field: str, doc_id: str, min_version: int | None) -> Any:
    """A read with minVersion, asked again while the read model answers STALE_READ."""

    async def attempt() -> dict[str, Any] | None:
        body = await gql.execute(query, id=doc_id, v=min_version)
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] == "STALE_READ", body
            return None
        return body["data"]  # type: ignore[no-any-return]

    return (await eventually(attempt, timeout=120))[field]


async def read_order(gql: GraphQLClient, order_id: str, min_version: int | None = None) -> dict[str, Any] | None:
    return await _read(gql, READ_ORDER, "order", order_id, min_version)  # type: ignore[no-any-return]


async def read_product(gql: GraphQLClient, product_id: str, min_version: int | None = None) -> dict[str, Any] | None:
    return await _read(gql, READ_PRODUCT, "product", product_id, min_version)  # type: ignore[no-any-return]


async def write_row(probe: WriteModelProbe, table: str, row_id: int | str) -> dict[str, Any]:
    """One row of the write model, as MySQL has it."""
    async with probe.db.engine.connect() as conn:
        result = await conn.exec_driver_sql(f"SELECT * FROM {table} WHERE id = %s", (int(row_id),))
        return dict(result.mappings().one())


async def write_stock(probe: WriteModelProbe, product_id: str) -> int:
    return int(await probe.scalar("SELECT stock FROM products WHERE id = %s", int(product_id)))


async def write_status(probe: WriteModelProbe, order_id: str) -> str:
    return str(await probe.scalar("SELECT status FROM orders WHERE id = %s", int(order_id)))


async def decided(probe: WriteModelProbe, order_id: str) -> str:
    """Waits until the stock worker has decided the order (no longer CREATED); returns its status."""

    async def status() -> str | None:
        current = await write_status(probe, order_id)
        return None if current == "CREATED" else current

    return await eventually(status, timeout=60)


async def stock_settles_at(probe: WriteModelProbe, product_id: str, expected: int) -> None:
    async def settled() -> bool:
        return await write_stock(probe, product_id) == expected

    await eventually(settled, timeout=60)


async def order_events_since(probe: WriteModelProbe, since: HighWater, order_id: str) -> list[str]:
    """Topics of the events written for one order after the `since` high-water mark, in order."""
    return [e.topic for e in await probe.events_of(since, "order", order_id)]


async def product_events_since(probe: WriteModelProbe, since: HighWater, product_id: str) -> list[str]:
    return [e.topic for e in await probe.events_of(since, "product", product_id)]


# Other test sessions may share the test databases and write at the same time, so "nothing was written"
# is checked as "nothing new since the high-water mark belongs to this command": on a quiet database
# that is the same as an unchanged high-water mark and no new event on the topics.


async def products_written(probe: WriteModelProbe, before: HighWater, marker: str) -> dict[str, int]:
    """Product rows and product events added since `before` that carry `marker` as their description."""
    rows = await probe.scalar(
        "SELECT COUNT(*) FROM products WHERE id > %s AND description = %s", before["products"], marker
    )
    events = [
        e for e in await probe.events_since(before) if e.topic in PRODUCT_TOPICS and e.data.get("description") == marker
    ]
    return {"products": int(rows), "events": len(events)}


async def orders_written(probe: WriteModelProbe, before: HighWater, *user_ids: int | str) -> dict[str, int]:
    """Order rows, items, history and order events added since `before` for these customers."""
    users = ", ".join(str(int(u)) for u in user_ids)
    mine = f"SELECT id FROM orders WHERE user_id IN ({users})"
    counts = {
        "orders": f"SELECT COUNT(*) FROM orders WHERE id > %s AND user_id IN ({users})",
        "order_items": f"SELECT COUNT(*) FROM order_items WHERE id > %s AND order_id IN ({mine})",
        "order_status_history": f"SELECT COUNT(*) FROM order_status_history WHERE id > %s AND order_id IN ({mine})",
    }
    written = {table: int(await probe.scalar(sql, before[table])) for table, sql in counts.items()}
    customers = {int(u) for u in user_ids}
    events = [
        e for e in await probe.events_since(before) if e.aggregate_type == "order" and e.data["user_id"] in customers
    ]
    return {**written, "events": len(events)}


async def order_written(probe: WriteModelProbe, before: HighWater, order_id: int | str) -> dict[str, int]:
    """History rows and events added since `before` for one order."""
    history = await probe.scalar(
        "SELECT COUNT(*) FROM order_status_history WHERE id > %s AND order_id = %s",
        before["order_status_history"],
        int(order_id),
    )
    return {"history": int(history), "events": len(await probe.events_of(before, "order", order_id))}


NOTHING_FOR_PRODUCT = {"products": 0, "events": 0}
NOTHING_FOR_CUSTOMERS = {"orders": 0, "order_items": 0, "order_status_history": 0, "events": 0}
NOTHING_FOR_ORDER = {"history": 0, "events": 0}


def ms(timestamp: str | None) -> datetime | None:
    """A timestamp to the millisecond, the precision both models keep."""
    if timestamp is None:
        return None
    value = datetime.fromisoformat(timestamp)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def statuses(order: dict[str, Any]) -> list[str]:
    return [change["status"] for change in order["history"]]


class HeldTransaction(Transaction):
    """A transaction whose events stay in `events`: no outbox row is written for the relay."""

    async def write_outbox(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


class HeldOutbox:
    """The write database with its outbox held back by the test.

    Commands run the real handlers and commit, but their events never reach the relay: they are
    kept in `events`, so the test plays the broker and delivers them to the stock worker itself,
    late, out of order or twice.
    """

    def __init__(self, db: WriteDatabase) -> None:
        self.db = db
        self.events: list[Event] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.db.transaction(HeldTransaction) as tx:
            yield tx
        self.events.extend(tx.events)

    def last(self, topic: Topic, aggregate_id: int | str) -> Event:
        """The most recent held event of one aggregate on one topic."""
        found = [e for e in self.events if e.event_type is topic and e.aggregate_id == int(aggregate_id)]
        assert found, f"no held {topic} event for {aggregate_id}"
        return found[-1]
