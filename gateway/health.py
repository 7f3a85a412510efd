"""The operational routes: /healthz (the process answers), /readyz (its dependencies answer), /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.logging import get_logger
from shared.metrics import GatewayMetrics
from shared.settings import mask_dsn

ReadinessCheck = Callable[[], Awaitable[None]]
Endpoint = Callable[[Request], Awaitable[Response]]
READINESS_TIMEOUT = 2.0
log = get_logger(__name__)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz(readiness: Mapping[str, ReadinessCheck]) -> Endpoint:
    """Every named check at once, each within READINESS_TIMEOUT seconds: 200 when all pass, else 503 naming
    the failing ones by their error's class (messages may carry hosts or credentials)."""

    async def endpoint(request: Request) -> Response:
        results = dict(zip(readiness, await asyncio.gather(*map(check, readiness, readiness.values())), strict=True))
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results}, status_code=200 if ready else 503
        )

    return endpoint


async def check(name: str, probe: ReadinessCheck) -> str:
    """`ok`, or `unavailable: <error class>` (the masked error is logged)."""
    try:
        await asyncio.wait_for(probe(), READINESS_TIMEOUT)
    except Exception as exc:  # the class only: messages may carry hosts or credentials
        log.warning("readyz.unavailable", check=name, error=mask_dsn(repr(exc)))
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def metrics(own_metrics: GatewayMetrics) -> Endpoint:
    """The Prometheus exposition of this gateway (or of every worker of it)."""

    async def endpoint(request: Request) -> Response:
        return Response(own_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return endpoint
