"""Per-operation observability: a histogram by operation type and name for /metrics and, when
OpenTelemetry is on, the operation's SERVER span (continuing the request's `traceparent`) from the telemetry
the schema was made with."""

from __future__ import annotations

import time
from collections.abc import Iterator

from graphql import FieldNode, OperationDefinitionNode
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from shared.metrics import GRAPHQL_DURATION
from shared.telemetry import OFF, Telemetry, describe_operation


class OperationMetrics(SchemaExtension):
    """Strawberry makes one per operation, from the factory `create_schema` passes (which holds `telemetry`)."""

    def __init__(self, telemetry: Telemetry = OFF) -> None:
        self.telemetry = telemetry

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        with self.telemetry.graphql_operation() as span:
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
            if span is not None:
                describe_operation(
                    span,
                    None if operation_type == "invalid" else operation_type,
                    context.operation_name[:64] if context.operation_name else None,
                    _root_fields(context),
                    _error_codes(context),
                )


def _root_fields(context: ExecutionContext) -> list[str]:
    document = context.graphql_document
    if document is None:
        return []
    wanted = context.operation_name
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            wanted is None or (definition.name is not None and definition.name.value == wanted)
        ):
            return [node.name.value for node in definition.selection_set.selections if isinstance(node, FieldNode)]
    return []


def _error_codes(context: ExecutionContext) -> list[str]:
    """The `extensions.code` of each error the client sees (after masking)."""
    errors = getattr(context.result, "errors", None) or context.pre_execution_errors or []
    return [str((error.extensions or {}).get("code", "UNKNOWN")) for error in errors]
