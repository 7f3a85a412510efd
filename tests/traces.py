"""What the tracing tests share: a caller's W3C traceparent, the ids it carries, the SDK's exporter threads."""

from __future__ import annotations

import secrets
import threading


def caller() -> str:
    """A sampled traceparent as a caller upstream sends it."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def ids(traceparent: str) -> tuple[int, int]:
    """The trace id and the parent span id a traceparent carries."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


def batch_threads() -> list[threading.Thread]:
    """The threads of the SDK's batch span processors running in this process."""
    return [t for t in threading.enumerate() if t.name.startswith("OtelBatch")]
