"""Every GraphQL error leaves with an `extensions.code`; unexpected ones are masked as INTERNAL."""

from __future__ import annotations

import uuid

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from shared import tracing
from shared.errors import DomainError, ErrorCode
from shared.logging import get_logger
from shared.settings import mask_dsn

log = get_logger("gateway.errors")
TOKEN_LIMIT = "tokens. Parsing aborted"  # graphql-core's message when MaxTokensLimiter trips


def _with_code(error: GraphQLError, code: ErrorCode, message: str | None = None, **extra: str) -> GraphQLError:
    return GraphQLError(
        message=message or error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**(error.extensions or {}), "code": code.value, **extra},
    )


class ErrorCodes(MaskErrors):
    """Domain errors keep their code; parse/validation errors are BAD_USER_INPUT; the rest is INTERNAL."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self.classify(error) for error in errors]

    def classify(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, DomainError):
            return error
        if original is None or isinstance(original, GraphQLError):  # parse, validation, variable coercion
            if error.extensions and "code" in error.extensions:
                return error
            if TOKEN_LIMIT in error.message:
                return _with_code(error, ErrorCode.QUERY_REJECTED)
            return _with_code(error, ErrorCode.BAD_USER_INPUT)
        if isinstance(original, ValueError | TypeError) and error.path is None:
            return _with_code(error, ErrorCode.BAD_USER_INPUT)  # scalar parsing of variables
        correlation_id = tracing.correlation_id.get() or uuid.uuid4().hex
        log.error(
            "graphql.internal_error",
            correlation_id=correlation_id,
            path=error.path,
            error=mask_dsn(repr(original)),
            exc_info=original,
        )
        return _with_code(error, ErrorCode.INTERNAL, "Internal error", correlation_id=correlation_id)
