"""One place per field: a snapshot is built from its rows by name, its view stores it by name (money as cents),
and the view and the GraphQL types give back what the snapshot said."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

from command.snapshots import order_snapshot, product_snapshot
from gateway.types import Order, Product
from projection.documents import OrderView, ProductView, UserView
from shared.events import OrderLine, OrderSnapshot, OrderStatus, OrderUser, PaymentMethod, StatusChange, UserSnapshot

AT = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
NAIVE = AT.replace(tzinfo=None)


def paid_order() -> OrderSnapshot:
    return OrderSnapshot(
        id=7, version=3, created_at=AT, updated_at=AT, user_id=3,
        user=OrderUser(id=3, name="Ada", email="ada@example.com", version=2),
        items=(
            OrderLine(product_id=1, product_name="Lamp", quantity=2, unit_price=Decimal("1.50"),
                      subtotal=Decimal("3.00")),
        ),
        total_amount=Decimal("3.00"), status=OrderStatus.PAID, payment_method=PaymentMethod.PIX,
        history=(StatusChange(status=OrderStatus.CREATED, at=AT), StatusChange(status=OrderStatus.PAID, at=AT)),
        paid_at=AT,
    )  # fmt: skip


def test_an_order_row_and_its_parts_make_the_snapshot_the_events_carry() -> None:
    row = SimpleNamespace(
        id=7, version=3, created_at=NAIVE, updated_at=NAIVE, deleted_at=None, user_id=3, total_amount=Decimal("3.00"),
        status="PAID", payment_method="PIX", cancel_reason=None, reject_reason=None, paid_at=NAIVE, canceled_at=None,
        reserved_until=None, stock_held=True,
    )  # fmt: skip
    user = SimpleNamespace(id=3, name="Ada", email="ada@example.com", version=2, created_at=NAIVE)
    items = [SimpleNamespace(id=1, order_id=7, product_id=1, product_name="Lamp", quantity=2,
                             unit_price=Decimal("1.50"), subtotal=Decimal("3.00"))]  # fmt: skip
    history = [
        SimpleNamespace(id=9, order_id=7, status="PAID", at=NAIVE, reason=None),
        SimpleNamespace(id=8, order_id=7, status="CREATED", at=NAIVE, reason=None),
    ]
    snapshot = order_snapshot(row, items, history, user)
    assert snapshot == paid_order()
    assert snapshot.status is OrderStatus.PAID and snapshot.created_at.tzinfo is UTC


def test_the_stored_order_view_keeps_its_format() -> None:
    assert OrderView.of(paid_order()).stored() == {
        "_id": 7, "version": 3, "created_at": AT, "updated_at": AT, "deleted": False, "user_id": 3,
        "user": {"id": 3, "name": "Ada", "email": "ada@example.com", "version": 2},
        "items": [
            {"product_id": 1, "product_name": "Lamp", "quantity": 2, "unit_price_cents": 150, "subtotal_cents": 300}
        ],
        "total_cents": 300, "status": "PAID", "payment_method": "PIX", "cancel_reason": None, "reject_reason": None,
        "history": [{"status": "CREATED", "at": AT, "reason": None}, {"status": "PAID", "at": AT, "reason": None}],
        "paid_at": AT, "canceled_at": None, "reserved_until": None,
    }  # fmt: skip


def test_a_view_read_back_is_the_snapshot_it_was_made_from() -> None:
    order = paid_order()
    assert OrderView.model_validate(OrderView.of(order).stored()).snapshot() == order
    product = product_snapshot(
        SimpleNamespace(id=1, version=1, created_at=NAIVE, updated_at=NAIVE, deleted_at=None, name="Desk Lamp",
                        description="", price=Decimal("19.90"), stock=0)
    )  # fmt: skip
    stored = ProductView.of(product).stored()
    assert (stored["name_lc"], stored["price_cents"], stored["in_stock"]) == ("desk lamp", 1990, False)
    assert ProductView.model_validate(stored).snapshot() == product


def test_a_deleted_aggregate_is_a_view_marked_deleted() -> None:
    user = UserSnapshot(id=4, version=2, created_at=AT, updated_at=AT, deleted_at=AT, name="Bo", email="bo@example.com")
    stored = UserView.of(user).stored()
    assert stored["deleted"] is True and "deleted_at" not in stored
    assert list(stored) == ["_id", "version", "created_at", "updated_at", "deleted", "name", "name_lc", "email"]


def test_graphql_types_show_the_snapshot_fields_of_their_names() -> None:
    answer = Order.from_snapshot(paid_order(), committed=True)
    assert (answer.id, answer.user_id, answer.total_amount, answer.payment_method) == ("7", "3", Decimal("3.00"), "PIX")
    assert [(i.product_id, i.unit_price, i.subtotal) for i in answer.items] == [("1", Decimal("1.50"), Decimal("3.00"))]
    assert answer.committed and answer.placed_by.name == "Ada"
    assert Order.from_doc(OrderView.of(paid_order())) == Order.from_snapshot(paid_order())
    product = Product.from_doc(ProductView.of(product_snapshot(SimpleNamespace(
        id=1, version=1, created_at=NAIVE, updated_at=NAIVE, deleted_at=None, name="Lamp", description="d",
        price=Decimal("19.90"), stock=2))))  # fmt: skip
    assert (product.id, product.price, product.stock) == ("1", Decimal("19.90"), 2)
