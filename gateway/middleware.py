"""Guards in front of GraphQL: body size limit, per-request timeout, subscription connection cap (plain ASGI
middleware)."""

from __future__ import annotations

import asyncio
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.media import negotiate, refusal_body
from shared import tracing
from shared.errors import ErrorCode

EVENT_STREAM = b"text/event-stream"


async def _error(scope: Scope, send: Send, status: int, code: ErrorCode, message: str) -> None:
    """A refusal before GraphQL runs, in the media type the request accepts (gateway/media.py)."""
    media = negotiate(dict(scope["headers"]).get(b"accept", b"").decode("latin-1"))
    body = refusal_body(message, code)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", media.value.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Refuse request bodies above `max_bytes` (413) before GraphQL parses anything.

    The body is read here, at most `max_bytes` of it, and handed on whole: GraphQL needs all of it anyway, and
    a refusal is then an answer of this middleware rather than an exception raised in the middle of the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = f"request body larger than {self.max_bytes} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _error(scope, send, 413, ErrorCode.QUERY_REJECTED, too_large)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before the body ended
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                await _error(scope, send, 413, ErrorCode.QUERY_REJECTED, too_large)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # http.disconnect, when it comes
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class RequestTimeout:
    """Cut off HTTP requests that take longer than `seconds` (504); subscriptions are not affected: neither
    WebSockets nor a Server-Sent Events stream, whose clock stops once its response starts."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        deadline = asyncio.timeout(self.seconds)

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if dict(message.get("headers", [])).get(b"content-type", b"").startswith(EVENT_STREAM):
                    deadline.reschedule(None)
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if not started:
                await _error(scope, send, 504, ErrorCode.INTERNAL, f"request took longer than {self.seconds:g}s")


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


def is_event_stream(scope: Scope) -> bool:
    """An HTTP request asking for Server-Sent Events: a subscription (graphql-sse) that stays open."""
    return scope["type"] == "http" and EVENT_STREAM in dict(scope["headers"]).get(b"accept", b"").lower()


class SubscriptionCap:
    """At most `max_per_client` open WebSockets and Server-Sent Events streams per client address; an extra
    one is refused.

    Counted at the handshake (the request), before any message, so sockets that never send connection_init
    count too. The refusal is HTTP 429 with a RATE_LIMITED body (a WebSocket where the server supports it,
    otherwise a close with 1008).
    """

    def __init__(self, app: ASGIApp, max_per_client: int) -> None:
        self.app = app
        self.max_per_client = max_per_client
        self.open: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" and not is_event_stream(scope):
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
        message = f"more than {self.max_per_client} subscription connections from this client"
        if scope["type"] == "http":
            await _error(scope, send, 429, ErrorCode.RATE_LIMITED, message)
            return
        await receive()  # websocket.connect
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = refusal_body(message, ErrorCode.RATE_LIMITED)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
