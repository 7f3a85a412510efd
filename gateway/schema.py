"""The schema factory: the Query, Mutation and Subscription types with the limits, caches and extensions of
one gateway's settings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import strawberry
from graphql import DocumentNode
from graphql.error import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway.caches import QUERY_CACHE_SIZE, LRUCache, ParsedDocuments
from gateway.errors import ErrorCodes
from gateway.limits import limit_extensions
from gateway.mutations import Mutation
from gateway.observability import OperationMetrics
from gateway.persisted import RememberValidPersistedQueries
from gateway.policy import enforce
from gateway.queries import Query
from gateway.scalars import DecimalScalar
from gateway.subscriptions import Subscription
from gateway.types import User
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry


class EventshopSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Logging happens in ErrorCodes, once per unexpected error; expected errors are not noise."""


def create_schema(settings: Settings, telemetry: Telemetry = OFF) -> strawberry.Schema:
    """The gateway's schema with the limits of `settings`, its operations traced by `telemetry`; made by the app
    factory and `eventshop export-schema`."""
    # Every operation passes the access policy (gateway/policy.py); a field without a rule is refused.
    # Here rather than at import: the guard is part of every schema made, whoever imports the types.
    enforce(Query, Mutation, Subscription, User)
    parsed: LRUCache[tuple[str, tuple[tuple[str, Any], ...]], DocumentNode] = LRUCache(QUERY_CACHE_SIZE)
    return EventshopSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={Decimal: DecimalScalar}),
        extensions=[
            lambda: OperationMetrics(telemetry),
            lambda: ErrorCodes(suggestions=settings.graphql_introspection),
            *limit_extensions(
                max_depth=settings.max_query_depth,
                max_aliases=settings.max_query_aliases,
                max_tokens=settings.max_query_tokens,
                max_directives=settings.max_query_directives,
                introspection=settings.graphql_introspection,
                cache_size=QUERY_CACHE_SIZE,  # clients send the same few documents over and over
            ),
            lambda: ParsedDocuments(parsed),  # parsed once each, too (bounded)
            RememberValidPersistedQueries,  # APQ: a query sent with its hash is stored once it validated
        ],
    )
