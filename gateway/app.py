"""The gateway's Starlette app: /graphql (GraphiQL on GET, its files under /graphiql/), /healthz, /readyz, /metrics."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route, WebSocketRoute

from command.db import WriteDatabase
from gateway import health
from gateway.endpoint import EventshopGraphQL
from gateway.feed import ViewFeed
from gateway.health import ReadinessCheck
from gateway.ide import assets_mount
from gateway.middleware import BodySizeLimit, Correlation, RequestTimeout, SubscriptionCap
from projection.queries import ReadModel
from shared.metrics import GatewayMetrics
from shared.settings import Settings
from shared.telemetry import OFF, Telemetry


def create_app(
    *,
    write_db: WriteDatabase,
    read_model: ReadModel,
    feed: ViewFeed,
    settings: Settings,
    readiness: Mapping[str, ReadinessCheck],
    telemetry: Telemetry = OFF,
) -> Starlette:
    """The gateway of one process: the GraphQL endpoint and the operational routes, behind the middleware."""
    # Pages count their totals through the feed's known totals: once per announced change (gateway/totals.py).
    graphql = EventshopGraphQL(write_db, read_model.counting_with(feed.totals), feed, settings, telemetry=telemetry)
    own_metrics = GatewayMetrics.of(lambda: feed.listener_count)
    return Starlette(routes=routes(graphql, readiness, own_metrics), middleware=middleware(settings))


def routes(
    graphql: EventshopGraphQL, readiness: Mapping[str, ReadinessCheck], own_metrics: GatewayMetrics
) -> list[BaseRoute]:
    return [
        Route("/healthz", health.healthz),
        Route("/readyz", health.readyz(readiness)),
        Route("/metrics", health.metrics(own_metrics)),
        Route("/graphql", graphql),  # every method: the view answers the others 405 as GraphQL
        WebSocketRoute("/graphql", graphql),
        assets_mount(),
    ]


def middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: the correlation id covers everything below it."""
    return [
        Middleware(Correlation),
        Middleware(SubscriptionCap, max_per_client=settings.max_ws_connections_per_client),
        Middleware(RequestTimeout, seconds=settings.request_timeout),
        Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        Middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.allowed_origins.split(",") if o.strip()],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        ),
    ]
