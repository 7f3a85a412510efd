"""Per-operation timing for /metrics: a histogram by operation type and name."""

from __future__ import annotations

import time
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from shared.metrics import GRAPHQL_DURATION


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        try:
            operation_type = context.operation_type.value
        except Exception:  # unparsable documents have no operation type
            operation_type = "invalid"
        name = (context.operation_name or "anonymous")[:64]
        GRAPHQL_DURATION.labels(operation_type=operation_type, operation_name=name).observe(
            time.perf_counter() - started
        )
