"""Realistic event streams (write-side snapshots in envelopes) for the relay and projector benchmarks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from projection.store import Doc
from shared.events import EVENT_TYPES, AggregateType, Event, Topic, parse_event

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def user_snapshot(user_id: int, version: int) -> Doc:
    return {
        "id": user_id,
        "name": f"Bench Customer {user_id} v{version}",
        "email": f"customer{user_id}@bench.example.com",
        "version": version,
        "created_at": _at(user_id),
        "updated_at": _at(user_id + version),
        "deleted_at": None,
    }


def product_snapshot(product_id: int, version: int) -> Doc:
    return {
        "id": product_id,
        "name": f"Bench product {product_id:05d}",
        "description": "A product of the benchmark catalogue, described in a sentence or two. " * 2,
        "price": f"{10 + product_id % 90}.{product_id % 100:02d}",
        "stock": 100_000 - version,
        "version": version,
        "created_at": _at(product_id),
        "updated_at": _at(product_id + version),
        "deleted_at": None,
    }


STATUSES = ("CREATED", "RESERVED", "PAID")


def order_snapshot(order_id: int, version: int, user_id: int, product_ids: list[int]) -> Doc:
    """An order with `len(product_ids)` lines, in the status of `version` (1 CREATED, 2 RESERVED, 3 PAID)."""
    items: list[Doc] = [
        {
            "product_id": pid,
            "product_name": f"Bench product {pid:05d}",
            "quantity": 1 + (pid + order_id) % 3,
            "unit_price": f"{10 + pid % 90}.{pid % 100:02d}",
            "subtotal": "0.00",
        }
        for pid in product_ids
    ]
    total = 0
    for item in items:
        units, cents = item["unit_price"].split(".")
        subtotal = (int(units) * 100 + int(cents)) * item["quantity"]
        item["subtotal"] = f"{subtotal // 100}.{subtotal % 100:02d}"
        total += subtotal
    history = [{"status": STATUSES[v], "at": _at(order_id + v), "reason": None} for v in range(version)]
    return {
        "id": order_id,
        "user_id": user_id,
        "user": {
            "id": user_id,
            "name": f"Bench Customer {user_id} v1",
            "email": f"customer{user_id}@bench.example.com",
            "version": 1,
        },
        "items": items,
        "total_amount": f"{total // 100}.{total % 100:02d}",
        "status": STATUSES[version - 1],
        "payment_method": "PIX" if version >= 3 else None,
        "cancel_reason": None,
        "reject_reason": None,
        "history": history,
        "version": version,
        "created_at": _at(order_id),
        "updated_at": _at(order_id + version),
        "paid_at": _at(order_id + 3) if version >= 3 else None,
        "canceled_at": None,
        "deleted_at": None,
    }


def envelope(topic: Topic, kind: AggregateType, snapshot: Doc, **fields: Any) -> Event:
    """The typed event of a snapshot written as plain values, read as consumers read it."""
    return parse_event(
        {
            "schema_version": EVENT_TYPES[topic].class_version,
            "event_type": topic,
            "aggregate_type": kind,
            "aggregate_id": snapshot["id"],
            "aggregate_version": snapshot["version"],
            "occurred_at": snapshot["updated_at"],
            "data": snapshot,
            "trace": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "correlation_id": "bench",
            **fields,
        }
    )


def projection_stream(users: int, products: int, orders: int, seed: int = 7) -> list[Event]:
    """Every aggregate's events in version order, aggregates interleaved the way a busy shop produces them:
    users created then renamed, products created, repriced and reserved, orders created then reserved."""
    rng = random.Random(seed)
    user_ids = list(range(1, users + 1))
    product_ids = list(range(1, products + 1))
    lines = {o: rng.sample(product_ids, 2) for o in range(1, orders + 1)}
    owner = {o: rng.choice(user_ids) for o in range(1, orders + 1)}
    events: list[Event] = []
    for version in (1, 2, 3):
        if version <= 2:
            events += [
                envelope(
                    Topic.USER_CREATED if version == 1 else Topic.USER_UPDATED,
                    AggregateType.USER,
                    user_snapshot(u, version),
                )
                for u in user_ids
            ]
        topic = {1: Topic.PRODUCT_CREATED, 2: Topic.PRODUCT_UPDATED, 3: Topic.STOCK_RESERVED}[version]
        extra: Doc = {"order_id": 1, "quantity": 1} if version == 3 else {}
        events += [envelope(topic, AggregateType.PRODUCT, product_snapshot(p, version), **extra) for p in product_ids]
        if version <= 2:
            topic = Topic.ORDER_CREATED if version == 1 else Topic.ORDER_RESERVED
            events += [
                envelope(topic, AggregateType.ORDER, order_snapshot(o, version, owner[o], lines[o]))
                for o in range(1, orders + 1)
            ]
    return events


def relay_payloads(count: int, aggregates: int = 1000, seed: int = 11) -> list[Event]:
    """`count` order events over `aggregates` orders (the relay's typical row: an order snapshot, ~1.3 KB)."""
    rng = random.Random(seed)
    versions: dict[int, int] = {}
    events = []
    for _ in range(count):
        order_id = rng.randint(1, aggregates)
        version = versions[order_id] = versions.get(order_id, 0) + 1
        snapshot = order_snapshot(order_id, min(version, 3), 1 + order_id % 50, [1 + order_id % 97, 2 + order_id % 89])
        snapshot["version"] = version
        events.append(envelope(Topic.ORDER_UPDATED, AggregateType.ORDER, snapshot))
    return events
