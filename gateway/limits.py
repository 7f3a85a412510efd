"""Abuse limits: query depth, alias, directive and token counts, introspection (-> QUERY_REJECTED, before
execution),
and the per-client mutation rate with a budget per kind of caller (-> RATE_LIMITED, applied by the access
policy)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from graphql import (
    ASTValidationRule,
    DirectiveNode,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    NoSchemaIntrospectionCustomRule,
    ValidationContext,
    ValidationRule,
    validate,
)
from graphql.language import Node
from strawberry.extensions import MaxTokensLimiter, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from gateway.auth import Principal, Role
from shared.errors import ErrorCode
from shared.settings import Settings


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


def directive_limits(max_directives: int) -> type[ValidationRule]:
    class DirectiveLimits(ValidationRule):
        """At most `max_directives` directives in a document, and a directive that is not repeatable once per
        location: each refusal reported once, however many copies the document holds."""

        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.repeatable = {d.name: d.is_repeatable for d in context.schema.directives}
            self.count = 0
            self.refused = False

        def enter(self, node: Node, *_args: Any) -> None:
            directives: list[DirectiveNode] | None = getattr(node, "directives", None)
            if not directives or self.refused:
                return
            self.count += len(directives)
            names = Counter(d.name.value for d in directives)
            repeated = [n for n, times in names.items() if times > 1 and not self.repeatable.get(n, False)]
            if repeated:
                self.refuse(f"The directive '@{repeated[0]}' can only be used once at this location.", directives)
            elif self.count > max_directives:
                self.refuse(f"more than {max_directives} directives in the document", directives)

        def refuse(self, message: str, directives: list[DirectiveNode]) -> None:
            self.refused = True
            self.report_error(GraphQLError(message, list(directives[:2])))

    return DirectiveLimits


Validator = Callable[[GraphQLSchema, DocumentNode, tuple[type[ASTValidationRule], ...]], list[GraphQLError]]


def two_pass_validator(limits: tuple[type[ASTValidationRule], ...], *, suggestions: bool, cache_size: int) -> Validator:
    """Validation in two passes: the abuse limits first, and the specification's rules only for a document
    within them, so a bomb is refused with its limits' errors alone, before the costlier rules walk it.
    Suggestions ("Did you mean ...?") are left out when introspection is off: they would tell the schema
    field by field. Results are kept per document (an LRU: clients send the same few documents)."""
    hide = not suggestions

    @lru_cache(maxsize=cache_size)
    def validated(
        schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
    ) -> list[GraphQLError]:
        spec = (*rules, MaybeNullValidationRule, OneOfInputValidationRule)  # as Strawberry validates
        return validate(schema, document, limits, hide_suggestions=hide) or validate(
            schema, document, spec, hide_suggestions=hide
        )

    return validated


class Validation(SchemaExtension):
    def __init__(self, validator: Validator) -> None:
        self.validator = validator

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        context.pre_execution_errors = self.validator(
            context.schema._schema, context.graphql_document, tuple(context.validation_rules)
        )
        yield


def limit_extensions(
    *,
    max_depth: int,
    max_aliases: int,
    max_tokens: int,
    max_directives: int,
    introspection: bool = True,
    cache_size: int = 1000,
) -> list[Callable[[], SchemaExtension]]:
    meta = lambda ignore: ignore.field_name.startswith("__")  # noqa: E731 - GraphiQL's own query
    rules: list[type[ASTValidationRule]] = [
        rejecting(depth_rule(max_depth, meta, None)),
        rejecting(alias_rule(max_aliases)),
        rejecting(directive_limits(max_directives)),
    ]
    if not introspection:  # __schema and __type are refused; __typename stays
        rules.append(rejecting(NoSchemaIntrospectionCustomRule))
    validator = two_pass_validator(tuple(rules), suggestions=introspection, cache_size=cache_size)
    return [lambda: Validation(validator), lambda: MaxTokensLimiter(max_token_count=max_tokens)]


class RateLimiter:
    """A token bucket per client: `rate` tokens a second refill it, up to `burst`; each mutation takes one.

    Buckets live in this gateway instance (N instances behind a balancer allow N times the rate).
    """

    MAX_CLIENTS = 10_000

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when counted)

    def take(self, client: str) -> float:
        """0.0 when a token was taken; otherwise the seconds until the next one (nothing is taken)."""
        now = self.clock()
        tokens, counted = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - counted) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.MAX_CLIENTS:
                self._forget_idle(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """A full bucket is the same as no bucket: drop those so memory stays bounded."""
        full = [
            c for c, (tokens, counted) in self._buckets.items() if tokens + (now - counted) * self.rate >= self.burst
        ]
        for client in full:
            del self._buckets[client]


class Caller(StrEnum):
    """Whose budget a mutation takes from: admins and services share one kind (backends, operators)."""

    ANONYMOUS = "anonymous"
    CUSTOMER = "customer"
    SERVICE = "service"


def caller_of(principal: Principal | None) -> Caller:
    if principal is None:
        return Caller.ANONYMOUS
    return Caller.CUSTOMER if principal.role is Role.CUSTOMER else Caller.SERVICE


@dataclass(frozen=True)
class Budget:
    rate: float  # tokens per second
    burst: int


def budgets(settings: Settings) -> dict[Caller, Budget | None]:
    """Each kind of caller's budget; None is unlimited.

    Customers and anonymous callers fall back to MUTATION_RATE / MUTATION_BURST where their own setting is
    unset; admins and services are unlimited unless SERVICE_MUTATION_RATE is set. A rate of 0 is unlimited.
    """

    def budget(rate: float | None, burst: int | None, fallback_rate: float) -> Budget | None:
        rate = fallback_rate if rate is None else rate
        return Budget(rate, settings.mutation_burst if burst is None else burst) if rate > 0 else None

    return {
        Caller.ANONYMOUS: budget(
            settings.anonymous_mutation_rate, settings.anonymous_mutation_burst, settings.mutation_rate
        ),
        Caller.CUSTOMER: budget(
            settings.customer_mutation_rate, settings.customer_mutation_burst, settings.mutation_rate
        ),
        Caller.SERVICE: budget(settings.service_mutation_rate, settings.service_mutation_burst, 0.0),
    }


class MutationLimits:
    """One token bucket per client, in the budget of its kind of caller (a kind without one is unlimited).

    Buckets live in this gateway instance: N instances behind a balancer allow up to N times each budget.
    """

    def __init__(self, budgets: Mapping[Caller, Budget | None], clock: Callable[[], float] = time.monotonic) -> None:
        self.limiters = {
            caller: RateLimiter(budget.rate, budget.burst, clock)
            for caller, budget in budgets.items()
            if budget is not None
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> MutationLimits:
        return cls(budgets(settings))

    def take(self, principal: Principal | None, client: str) -> float:
        """0.0 when the mutation may run; otherwise the seconds until the client's next token."""
        limiter = self.limiters.get(caller_of(principal))
        return 0.0 if limiter is None else limiter.take(client)
