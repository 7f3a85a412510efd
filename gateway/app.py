"""The gateway's Starlette app: /graphql (GraphiQL on GET), /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL

from command.db import WriteDatabase
from gateway.context import GatewayContext
from gateway.feed import ViewFeed
from gateway.middleware import BodySizeLimit, Correlation, RequestTimeout
from gateway.schema import create_schema
from projection.queries import ReadModel
from shared.settings import Settings

ReadinessCheck = Callable[[], Awaitable[None]]
SUBSCRIPTIONS = Gauge("eventshop_subscriptions_active", "Open GraphQL subscriptions on this gateway")


class EventshopGraphQL(GraphQL[GatewayContext, None]):
    def __init__(self, write_db: WriteDatabase, read_model: ReadModel, feed: ViewFeed, settings: Settings) -> None:
        super().__init__(
            create_schema(settings),
            graphql_ide="graphiql",
            allow_queries_via_get=False,
            keep_alive=True,
            keep_alive_interval=settings.ws_keep_alive_seconds,
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        )
        self.write_db = write_db
        self.read_model = read_model
        self.feed = feed
        self.settings = settings

    async def get_context(self, request: Any, response: Any = None) -> GatewayContext:
        return GatewayContext(self.write_db, self.read_model, self.settings, self.feed, request, response)


def create_app(
    *,
    write_db: WriteDatabase,
    read_model: ReadModel,
    feed: ViewFeed,
    settings: Settings,
    readiness: dict[str, ReadinessCheck],
) -> Starlette:
    graphql = EventshopGraphQL(write_db, read_model, feed, settings)
    SUBSCRIPTIONS.set_function(lambda: feed.listener_count)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        results: dict[str, str] = {}

        async def check(name: str, probe: ReadinessCheck) -> None:
            try:
                await asyncio.wait_for(probe(), 2.0)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}"

        await asyncio.gather(*(check(name, probe) for name, probe in readiness.items()))
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results}, status_code=200 if ready else 503
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
        ],
        middleware=[
            Middleware(Correlation),
            Middleware(RequestTimeout, seconds=settings.request_timeout),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
            Middleware(
                CORSMiddleware,
                allow_origins=[o.strip() for o in settings.allowed_origins.split(",") if o.strip()],
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            ),
        ],
    )
    return app
