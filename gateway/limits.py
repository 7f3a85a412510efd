"""Abuse limits checked before execution: query depth, alias count and token count -> QUERY_REJECTED."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLError, ValidationContext, ValidationRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from shared.errors import ErrorCode


class _Rejecting:
    """A view of the validation context whose reported errors carry QUERY_REJECTED."""

    def __init__(self, context: ValidationContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {**(error.extensions or {}), "code": ErrorCode.QUERY_REJECTED.value}
        self._context.report_error(error)


def rejecting(rule: type[ValidationRule]) -> type[ValidationRule]:
    class Rejecting(rule):  # type: ignore[valid-type,misc]
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(_Rejecting(context))  # type: ignore[arg-type]

    return Rejecting


def limit_extensions(*, max_depth: int, max_aliases: int, max_tokens: int) -> list[Callable[[], SchemaExtension]]:
    introspection = lambda ignore: ignore.field_name.startswith("__")  # noqa: E731 - GraphiQL's own query
    rules = [rejecting(depth_rule(max_depth, introspection, None)), rejecting(alias_rule(max_aliases))]
    return [lambda: AddValidationRules(rules), lambda: MaxTokensLimiter(max_token_count=max_tokens)]
