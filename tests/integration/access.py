"""The vocabulary of the security stories: tokens (good and forged), a gateway served on a real port
(HTTP and WebSocket, in this process), and a live subscription that authenticates in connection_init.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

import httpx
import jwt
import uvicorn
import websockets
from starlette.applications import Starlette

from tests.conftest import TEST_JWT_SECRET, GraphQLClient
from tests.labs import free_port

ANONYMOUS, OWNER, OTHER, ADMIN, STOREFRONT = "anonymous", "owner", "other", "admin", "storefront"
ROLES = (ANONYMOUS, OWNER, OTHER, ADMIN, STOREFRONT)
STOREFRONT_SCOPE = "orders:read orders:write users:read users:write"  # what `eventshop token --role service` grants
OK, UNAUTHENTICATED, FORBIDDEN = "ok", "UNAUTHENTICATED", "FORBIDDEN"


def claims(role: str = "admin", sub: str = "test-admin", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": "eventshop",
        "aud": "eventshop",
        "sub": sub,
        "role": role,
        "iat": now,
        "exp": now + 600,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def signed(payload: dict[str, Any], key: Any = TEST_JWT_SECRET, algorithm: str = "HS256", **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers or None)


def hand_made(payload: dict[str, Any], header: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT assembled by hand, as an attacker would: any header, HMAC-signed with any bytes (or unsigned)."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = f"{part(header)}.{part(payload)}"
    if hmac_key is None:
        return head + "."
    signature = hmac.new(hmac_key, head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def customer_token(user_id: int | str) -> str:
    return signed(claims("customer", str(user_id)))


def admin_token() -> str:
    return signed(claims("admin", "test-admin"))


def service_token(name: str = "storefront", scope: str = STOREFRONT_SCOPE) -> str:
    return signed(claims("service", name, scope=scope))


def client(base_url: str, token: str | None, transport: httpx.AsyncBaseTransport | None = None) -> GraphQLClient:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return GraphQLClient(httpx.AsyncClient(base_url=base_url, headers=headers, transport=transport, timeout=30))


def sha256(document: str) -> str:
    """A document's hash as persisted queries and trusted documents name it (hex)."""
    return hashlib.sha256(document.encode()).hexdigest()


def codes(body: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors") or []]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # pytest owns the signals


@contextlib.asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[str]:
    """The app on a free local port (uvicorn, real HTTP and WebSocket) for the duration; yields its URL."""
    port = free_port()
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="websockets")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


class Live:
    """A subscription over a real WebSocket, graphql-transport-ws or the legacy graphql-ws. The token (if any) goes
    in the connection_init payload; `headers` go with the handshake."""

    def __init__(
        self,
        base_url: str,
        query: str,
        variables: dict[str, Any],
        token: str | None,
        protocol: str = "graphql-transport-ws",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = base_url.replace("http://", "ws://") + "/graphql"
        self.query, self.variables, self.token = query, variables, token
        self.protocol, self.headers = protocol, headers

    async def __aenter__(self) -> Live:
        self.ws = await websockets.connect(
            self.url,
            subprotocols=[self.protocol],  # type: ignore[list-item]
            additional_headers=self.headers,
        )
        payload = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        await self.ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        start = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        subscribe = {"query": self.query, "variables": self.variables}
        await self.ws.send(json.dumps({"id": "1", "type": start, "payload": subscribe}))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def next(self, timeout: float = 20.0) -> dict[str, Any]:
        """The next result as {"data": ..., "errors": [...]}, whichever protocol's message carried it; pings are
        answered and skipped."""
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if message["type"] == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif message["type"] in ("next", "data"):
                    return message["payload"]  # type: ignore[no-any-return]
                elif message["type"] == "error":
                    return {"data": None, "errors": message["payload"]}
                elif message["type"] == "complete":
                    return {"data": None, "complete": True}
