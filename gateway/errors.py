"""Every GraphQL error leaves with an `extensions.code`; unexpected ones are masked as INTERNAL."""

from __future__ import annotations

import re
import uuid

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from shared import tracing
from shared.errors import DomainError, ErrorCode
from shared.logging import get_logger
from shared.settings import mask_dsn

log = get_logger("gateway.errors")
TOKEN_LIMIT = "tokens. Parsing aborted"  # graphql-core's message when MaxTokensLimiter trips
SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?", re.DOTALL)


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
    """Domain errors keep their code; parse/validation errors are BAD_USER_INPUT; the rest is INTERNAL.

    Without `suggestions` (introspection off), a "Did you mean ...?" is cut from every message: validation
    leaves them out already (gateway/limits.py), and this catches those of variable coercion."""

    def __init__(self, *, suggestions: bool = True) -> None:
        super().__init__()
        self.suggestions = suggestions

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
            return _with_code(error, ErrorCode.BAD_USER_INPUT, self.shown(error.message))
        if isinstance(original, ValueError | TypeError) and error.path is None:
            return _with_code(error, ErrorCode.BAD_USER_INPUT, self.shown(error.message))  # scalars of variables
        correlation_id = tracing.correlation_id.get() or uuid.uuid4().hex
        log.error(
            "graphql.internal_error",
            correlation_id=correlation_id,
            path=error.path,
            error=mask_dsn(repr(original)),
            exc_info=original,
        )
        return _with_code(error, ErrorCode.INTERNAL, "Internal error", correlation_id=correlation_id)

    def shown(self, message: str) -> str:
        return message if self.suggestions else SUGGESTION.sub("", message)
