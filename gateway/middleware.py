"""Guards in front of GraphQL: body size limit, per-request timeout, WebSocket cap (plain ASGI middleware)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import tracing
from shared.errors import ErrorCode


async def _error(send: Send, status: int, code: ErrorCode, message: str) -> None:
    body = json.dumps({"data": None, "errors": [{"message": message, "extensions": {"code": code.value}}]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuse request bodies above `max_bytes` (413) before GraphQL parses anything."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _error(send, 413, ErrorCode.QUERY_REJECTED, f"request body larger than {self.max_bytes} bytes")
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await _error(send, 413, ErrorCode.QUERY_REJECTED, f"request body larger than {self.max_bytes} bytes")


class RequestTimeout:
    """Cut off HTTP requests that take longer than `seconds` (504); subscriptions are not affected."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if not started:
                await _error(send, 504, ErrorCode.INTERNAL, f"request took longer than {self.seconds:g}s")


class Correlation:
    """Bind the request's correlation id and trace context (or new ones) for logs and the events it writes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-correlation-id", b"").decode(errors="replace")[:100] or None
        tracing.bind(incoming, headers.get(b"traceparent", b"").decode(errors="replace") or None)
        cid = (tracing.correlation_id.get() or "").encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-correlation-id", cid)]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class WebSocketCap:
    """At most `max_per_client` open WebSockets per client address; an extra handshake is refused.

    Counted at the handshake, before any message, so sockets that never send connection_init count too.
    The refusal is HTTP 429 with a RATE_LIMITED body where the server supports it, otherwise 403.
    """

    def __init__(self, app: ASGIApp, max_per_client: int) -> None:
        self.app = app
        self.max_per_client = max_per_client
        self.open: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        if self.open[client] >= self.max_per_client:
            await self._refuse(scope, receive, send)
            return
        self.open[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        message = f"more than {self.max_per_client} WebSocket connections from this client"
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps({"errors": [{"message": message, "extensions": {"code": ErrorCode.RATE_LIMITED.value}}]})
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body.encode()})
