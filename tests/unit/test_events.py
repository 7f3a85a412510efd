"""The event catalog: every event is a typed model, and an event written by an older release is still read.

Kafka keeps events for as long as its retention says, and a rebuild reads them all: today's consumers must read
version 1 (one envelope for every event, `reason`, `order_id` and `quantity` on all of them) as well as today's.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from shared.events import (
    EVENT_TYPES,
    OrderCanceled,
    OrderSnapshot,
    OrderStatus,
    StockReserved,
    Topic,
    UserCreated,
    UserSnapshot,
    parse_event,
)

AT = "2026-01-01T00:00:00+00:00"
USER = {"id": 7, "name": "Ada", "email": "ada@example.com", "version": 1, "created_at": AT, "updated_at": AT}
ORDER = {
    "id": 41, "user_id": 7, "user": {"id": 7, "name": "Ada", "email": "ada@example.com", "version": 1},
    "items": [{"product_id": 3, "product_name": "Lamp", "quantity": 2, "unit_price": "19.90", "subtotal": "39.80"}],
    "total_amount": "39.80", "status": "CANCELED", "payment_method": None, "cancel_reason": "too dear",
    "reject_reason": None,
    "history": [{"status": "CREATED", "at": AT, "reason": None},
                {"status": "CANCELED", "at": AT, "reason": "too dear"}],
    "version": 2, "created_at": AT, "updated_at": AT, "paid_at": None, "canceled_at": AT, "deleted_at": None,
}  # fmt: skip


def version_1(topic: Topic, aggregate: str, data: dict[str, Any], **own: Any) -> bytes:
    """An event exactly as release 1 wrote it: every event-specific field on every event, null when unused."""
    return json.dumps(
        {
            "event_id": "0b4a5d2e-8f6c-4f0e-9a51-3c1d2e4f5a6b",
            "event_type": topic.value,
            "occurred_at": AT,
            "aggregate_type": aggregate,
            "aggregate_id": data["id"],
            "aggregate_version": data["version"],
            "schema_version": 1,
            "trace": None,
            "correlation_id": "c-1",
            "data": data,
            "reason": None,
            "order_id": None,
            "quantity": None,
            **own,
        }
    ).encode()


def test_a_version_1_cancellation_is_read_as_today_s_typed_event() -> None:
    event = parse_event(version_1(Topic.ORDER_CANCELED, "order", ORDER, reason="too dear"))

    assert isinstance(event, OrderCanceled) and event.schema_version == OrderCanceled.class_version == 2
    assert event.reason == "too dear"
    assert event.data.status is OrderStatus.CANCELED and event.data.total_amount == Decimal("39.80")
    assert event.data.items[0].unit_price == Decimal("19.90")
    assert event.data.canceled_at is not None and event.data.canceled_at.tzinfo is not None


def test_a_version_1_user_event_loses_the_empty_fields_it_never_used() -> None:
    event = parse_event(version_1(Topic.USER_CREATED, "user", USER))

    assert isinstance(event, UserCreated)
    assert "reason" not in event.model_dump() and event.data.name == "Ada"


def test_upcasting_reads_a_copy_and_leaves_what_it_was_given_as_it_was() -> None:
    stored = json.loads(version_1(Topic.STOCK_RESERVED, "product", PRODUCT, order_id=41, quantity=2))
    as_stored = json.loads(json.dumps(stored))

    event = parse_event(stored)

    assert isinstance(event, StockReserved) and (event.order_id, event.quantity) == (41, 2)
    assert stored == as_stored


def test_each_event_class_says_its_own_version_and_writes_it() -> None:
    """Every class is at version 2 today, the number the whole catalog wrote before classes had their own: what
    Kafka and the outbox hold already reads as it is."""
    for topic, event_class in EVENT_TYPES.items():
        assert event_class.class_version == 2, topic
        assert callable(getattr(event_class, "upcast_v1_v2", None)), topic
    written = json.loads(UserCreated.of(UserSnapshot.model_validate(USER)).to_bytes())
    assert written["schema_version"] == UserCreated.class_version
    assert parse_event(written) == parse_event(json.dumps(written))


def test_a_model_refuses_a_version_it_was_not_upcast_to() -> None:
    stored = json.loads(version_1(Topic.USER_CREATED, "user", USER))
    with pytest.raises(ValidationError, match="upcast it first"):
        UserCreated.model_validate(stored)


def test_a_version_1_event_carrying_a_field_of_another_kind_is_refused() -> None:
    with pytest.raises(ValidationError, match="quantity"):
        parse_event(version_1(Topic.USER_CREATED, "user", USER, quantity=3))


def test_an_event_newer_than_this_release_is_refused_not_guessed_at() -> None:
    newer = json.loads(version_1(Topic.USER_CREATED, "user", USER)) | {"schema_version": UserCreated.class_version + 1}
    with pytest.raises(ValueError, match="newer than this release"):
        parse_event(json.dumps(newer))


def test_what_the_write_side_builds_reads_back_the_same() -> None:
    snapshot = OrderSnapshot.model_validate(ORDER)
    canceled = OrderCanceled.of(snapshot, reason="too dear")
    reserved = StockReserved.of(
        parse_event(version_1(Topic.PRODUCT_CREATED, "product", PRODUCT)).data,  # type: ignore[arg-type]
        order_id=41,
        quantity=2,
    )
    for event in (canceled, reserved, UserCreated.of(UserSnapshot.model_validate(USER))):
        assert parse_event(event.to_bytes()) == event
    assert (canceled.aggregate_id, canceled.aggregate_version, canceled.aggregate_type) == (41, 2, "order")
    assert json.loads(canceled.to_bytes())["data"]["total_amount"] == "39.80"  # money stays a string


PRODUCT = {
    "id": 3, "name": "Lamp", "description": "", "price": "19.90", "stock": 5, "version": 1,
    "created_at": AT, "updated_at": AT,
}  # fmt: skip


@pytest.mark.parametrize("raw", [None, b"not json", b"[]", b'{"event_type": "order.exploded"}'])
def test_what_is_not_a_domain_event_is_refused(raw: bytes | None) -> None:
    with pytest.raises(ValueError):
        parse_event(raw)


def test_every_domain_topic_has_its_model() -> None:
    assert set(EVENT_TYPES) == {t for t in Topic if t is not Topic.VIEWS_CHANGED}
