"""The event catalog: topic names, the vocabulary both sides share, and one typed model per event.

Every event carries the full snapshot of its aggregate after the change (event-carried state), plus the
fields of its own kind (a rejection's reason, a stock move's order and quantity). The write side builds
these models; every consumer reads them with `parse_event`, which first brings an event written by an
older release up to its class's version of today (`shared.upcasting`): Kafka keeps old events, and a rebuild
reads them all.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, cast

import bson
from bson.codec_options import CodecOptions
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

from shared import tracing
from shared.money import format_money, parse_money
from shared.upcasting import State, drop_nulls, upcast
from shared.utc import aware


class Topic(StrEnum):
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_DELETED = "user.deleted"
    PRODUCT_CREATED = "product.created"
    PRODUCT_UPDATED = "product.updated"
    PRODUCT_DELETED = "product.deleted"
    STOCK_RESERVED = "stock.reserved"
    STOCK_RELEASED = "stock.released"
    ORDER_CREATED = "order.created"
    ORDER_RESERVED = "order.reserved"
    ORDER_REJECTED = "order.rejected"
    ORDER_PAID = "order.paid"
    ORDER_UPDATED = "order.updated"
    ORDER_CANCELED = "order.canceled"
    ORDER_EXPIRED = "order.expired"
    ORDER_DELETED = "order.deleted"
    VIEWS_CHANGED = "views.changed"


DOMAIN_TOPICS: tuple[Topic, ...] = tuple(t for t in Topic if t is not Topic.VIEWS_CHANGED)


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


ALL_TOPICS: tuple[str, ...] = (*(t.value for t in Topic), *(dlq_topic(t) for t in Topic))


class AggregateType(StrEnum):
    """The kinds of aggregate: the one vocabulary of events, outbox rows, views and operations."""

    USER = "user"
    PRODUCT = "product"
    ORDER = "order"


class OrderStatus(StrEnum):
    CREATED = "CREATED"
    RESERVED = "RESERVED"
    REJECTED = "REJECTED"
    PAID = "PAID"
    PROCESSING = "PROCESSING"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


class PaymentMethod(StrEnum):
    CREDIT_CARD = "CREDIT_CARD"
    DEBIT_CARD = "DEBIT_CARD"
    PIX = "PIX"
    BOLETO = "BOLETO"
    BANK_TRANSFER = "BANK_TRANSFER"


def utcnow() -> datetime:
    return datetime.now(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(aware)]
Money = Annotated[Decimal, BeforeValidator(parse_money), PlainSerializer(format_money, return_type=str)]
"""A Decimal with two places; a string in JSON, so no float ever rounds it."""


class Snapshot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    version: int = Field(ge=1)
    created_at: UtcDatetime
    updated_at: UtcDatetime
    deleted_at: UtcDatetime | None = None


class UserSnapshot(Snapshot):
    name: str
    email: str


class ProductSnapshot(Snapshot):
    name: str
    description: str
    price: Money
    stock: int


class OrderUser(BaseModel):
    """The user as of the order's event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    name: str
    email: str
    version: int


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: int
    product_name: str
    quantity: int = Field(ge=1)
    unit_price: Money
    subtotal: Money


class StatusChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    status: OrderStatus
    at: UtcDatetime
    reason: str | None = None


class OrderSnapshot(Snapshot):
    user_id: int
    user: OrderUser
    items: tuple[OrderLine, ...]
    total_amount: Money
    status: OrderStatus
    payment_method: PaymentMethod | None = None
    cancel_reason: str | None = None
    reject_reason: str | None = None
    history: tuple[StatusChange, ...]
    paid_at: UtcDatetime | None = None
    canceled_at: UtcDatetime | None = None
    reserved_until: UtcDatetime | None = None
    """The payment deadline of a RESERVED order (None in every other status, and when reservations never expire)."""


class Event(BaseModel):
    """What every event is: its identity, its aggregate's id and version, and the trace it belongs to.

    The Kafka value is the event as JSON; the key is the aggregate id, so one aggregate's events stay in order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    aggregate: ClassVar[AggregateType]
    class_version: ClassVar[int] = 1
    """The version of this class's shape, written as `schema_version`. A change of shape raises it and adds the
    class's step from the previous version (`upcast_vN_vN+1`, see `shared.upcasting`)."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: Topic
    occurred_at: UtcDatetime
    """When the change happened: the `now` of the command that made it, which is also the snapshot's `updated_at`."""
    aggregate_type: AggregateType
    aggregate_id: int
    aggregate_version: int = Field(ge=1)
    schema_version: int = Field(default=None, validate_default=True)
    """The class's version the event was written in: always today's here (`parse_event` upcasts older ones)."""
    # The request or message that caused the event (contextvars of the unit of work that builds it).
    trace: str | None = Field(default_factory=lambda: tracing.traceparent.get())
    correlation_id: str | None = Field(default_factory=lambda: tracing.correlation_id.get())
    data: Snapshot

    @field_validator("schema_version", mode="before")
    @classmethod
    def _in_todays_version(cls, written: int | None) -> int:
        if written is None:
            return cls.class_version
        if written != cls.class_version:
            raise ValueError(f"{cls.__name__} is version {cls.class_version}, not {written}: upcast it first")
        return written

    @classmethod
    def of(cls, snapshot: Snapshot, **fields: Any) -> Self:
        """The event of this type for an aggregate's snapshot after the change (and the event's own fields). It
        occurred when the snapshot changed: every change stamps `updated_at` with the command's `now`."""
        return cls(
            event_type=cls.model_fields["event_type"].default,
            occurred_at=snapshot.updated_at,
            aggregate_type=cls.aggregate,
            aggregate_id=snapshot.id,
            aggregate_version=snapshot.version,
            data=snapshot,
            **fields,
        )

    @property
    def key(self) -> bytes:
        """Kafka key: every event of one aggregate lands on one partition."""
        return str(self.aggregate_id).encode()

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("event_id", str(self.event_id).encode()),
            ("event_type", self.event_type.value.encode()),
            ("aggregate_version", str(self.aggregate_version).encode()),
        ]
        if self.trace:
            headers.append(("traceparent", self.trace.encode()))
        if self.correlation_id:
            headers.append(("correlation_id", self.correlation_id.encode()))
        return headers


class UserEvent(Event):
    aggregate = AggregateType.USER
    aggregate_type: Literal[AggregateType.USER] = AggregateType.USER
    data: UserSnapshot

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: State) -> None:
        """Version 1 had `reason`, `order_id`, `quantity` (null if unused) on all; a user event owns none."""
        drop_nulls(state, "reason", "order_id", "quantity")


class UserCreated(UserEvent):
    event_type: Literal[Topic.USER_CREATED] = Topic.USER_CREATED


class UserUpdated(UserEvent):
    event_type: Literal[Topic.USER_UPDATED] = Topic.USER_UPDATED


class UserDeleted(UserEvent):
    event_type: Literal[Topic.USER_DELETED] = Topic.USER_DELETED


class ProductEvent(Event):
    aggregate = AggregateType.PRODUCT
    aggregate_type: Literal[AggregateType.PRODUCT] = AggregateType.PRODUCT
    data: ProductSnapshot

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: State) -> None:
        """Version 1 had `reason`, `order_id`, `quantity` (null if unused) on all; a product event owns none."""
        drop_nulls(state, "reason", "order_id", "quantity")


class ProductCreated(ProductEvent):
    event_type: Literal[Topic.PRODUCT_CREATED] = Topic.PRODUCT_CREATED


class ProductUpdated(ProductEvent):
    event_type: Literal[Topic.PRODUCT_UPDATED] = Topic.PRODUCT_UPDATED


class ProductDeleted(ProductEvent):
    event_type: Literal[Topic.PRODUCT_DELETED] = Topic.PRODUCT_DELETED


class StockMoved(ProductEvent):
    """Stock taken for (reserved) or given back by (released) one line of an order."""

    order_id: int
    quantity: int = Field(ge=1)

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: State) -> None:
        """Version 1 had `reason`, `order_id`, `quantity` (null if unused) on all; a stock move owns the last two."""
        drop_nulls(state, "reason")


class StockReserved(StockMoved):
    event_type: Literal[Topic.STOCK_RESERVED] = Topic.STOCK_RESERVED


class StockReleased(StockMoved):
    event_type: Literal[Topic.STOCK_RELEASED] = Topic.STOCK_RELEASED


class OrderEvent(Event):
    aggregate = AggregateType.ORDER
    aggregate_type: Literal[AggregateType.ORDER] = AggregateType.ORDER
    data: OrderSnapshot

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: State) -> None:
        """Version 1 had `reason`, `order_id`, `quantity` (null if unused) on all; an order event owns none."""
        drop_nulls(state, "reason", "order_id", "quantity")


class OrderCreated(OrderEvent):
    event_type: Literal[Topic.ORDER_CREATED] = Topic.ORDER_CREATED


class OrderReserved(OrderEvent):
    event_type: Literal[Topic.ORDER_RESERVED] = Topic.ORDER_RESERVED


class OrderRejected(OrderEvent):
    event_type: Literal[Topic.ORDER_REJECTED] = Topic.ORDER_REJECTED
    reason: str

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: State) -> None:
        """Version 1 had `reason`, `order_id`, `quantity` (null if unused) on all; a rejection owns `reason`."""
        drop_nulls(state, "order_id", "quantity")


class OrderPaid(OrderEvent):
    event_type: Literal[Topic.ORDER_PAID] = Topic.ORDER_PAID


class OrderUpdated(OrderEvent):
    """A fulfilment step: PROCESSING, SHIPPED or DELIVERED."""

    event_type: Literal[Topic.ORDER_UPDATED] = Topic.ORDER_UPDATED


class OrderCanceled(OrderEvent):
    event_type: Literal[Topic.ORDER_CANCELED] = Topic.ORDER_CANCELED
    reason: str

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: State) -> None:
        """Version 1 had `reason`, `order_id`, `quantity` (null if unused) on all; a cancel owns `reason`."""
        drop_nulls(state, "order_id", "quantity")


class OrderExpired(OrderEvent):
    """Unpaid at its deadline: EXPIRED, and the stock it held released in the same transaction."""

    event_type: Literal[Topic.ORDER_EXPIRED] = Topic.ORDER_EXPIRED


class OrderDeleted(OrderEvent):
    event_type: Literal[Topic.ORDER_DELETED] = Topic.ORDER_DELETED


EVENT_TYPES: dict[Topic, type[Event]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (
        UserCreated,
        UserUpdated,
        UserDeleted,
        ProductCreated,
        ProductUpdated,
        ProductDeleted,
        StockReserved,
        StockReleased,
        OrderCreated,
        OrderReserved,
        OrderRejected,
        OrderPaid,
        OrderUpdated,
        OrderCanceled,
        OrderExpired,
        OrderDeleted,
    )
}
"""The model of each domain topic: what `parse_event` builds."""

TOPICS_OF: dict[AggregateType, frozenset[Topic]] = {
    kind: frozenset(topic for topic, cls in EVENT_TYPES.items() if cls.aggregate is kind) for kind in AggregateType
}
"""The topics of each kind of aggregate's events (a product's include `stock.*`): what its projector consumes."""

SNAPSHOT_OF: dict[AggregateType, type[Snapshot]] = {
    cls.aggregate: cast(type[Snapshot], cls.model_fields["data"].annotation) for cls in EVENT_TYPES.values()
}
"""The snapshot every event of a kind of aggregate carries."""


def parse_event(raw: bytes | str | dict[str, Any] | None) -> Event:
    """The typed event of a Kafka value or an outbox payload, of whatever release wrote it."""
    if raw is None:
        raise ValueError("empty message value")
    document = raw if isinstance(raw, dict) else json.loads(raw)
    if not isinstance(document, dict) or document.get("event_type") not in EVENT_TYPES:
        raise ValueError(f"not a domain event: {str(document)[:200]}")
    event_class = EVENT_TYPES[Topic(document["event_type"])]
    return event_class.model_validate(upcast(event_class, document))


def encode_view_change(kind: str, document: dict[str, Any]) -> bytes:
    """A `views.changed` message: the new view document as BSON, the read model's own types (dates) kept.

    BSON rather than Extended JSON: pymongo's C codec makes one message about ten times cheaper to write and
    read, and the projector writes one per applied event."""
    return bson.encode({"kind": kind, "id": document["_id"], "version": document["version"], "document": document})


def decode_view_change(raw: bytes) -> dict[str, Any]:
    return bson.decode(raw, codec_options=_VIEW_CODEC)


_VIEW_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
