"""Correlation id and W3C trace context that follow a request through the outbox, Kafka and consumers.

They live in contextvars (bound into every structlog line): the gateway sets them per request,
the outbox writer copies them into each event, and consumers restore them from each event.
With OpenTelemetry on, `shared.telemetry` keeps `traceparent` equal to the open span's context.
"""

from __future__ import annotations

import re
import secrets
import uuid
from contextvars import ContextVar

import structlog

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
traceparent: ContextVar[str | None] = ContextVar("traceparent", default=None)
# The caller's trace context as received (request header or message header): what a span continues.
remote_parent: ContextVar[str | None] = ContextVar("remote_parent", default=None)

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent(parent: str | None = None) -> str:
    """A child span id under the parent's trace (or a new trace)."""
    match = TRACEPARENT.match(parent or "")
    trace_id = match.group(1) if match else secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def bind(correlation: str | None, parent_trace: str | None) -> None:
    """Enter a unit of work (request or message) that continues `parent_trace`."""
    cid = correlation or uuid.uuid4().hex
    trace = new_traceparent(parent_trace)
    correlation_id.set(cid)
    traceparent.set(trace)
    remote_parent.set(parent_trace)
    structlog.contextvars.bind_contextvars(correlation_id=cid, trace_id=trace.split("-")[1])
