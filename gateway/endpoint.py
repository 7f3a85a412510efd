"""The /graphql endpoint: Strawberry's ASGI view with GraphQL over HTTP answers, persisted documents, GraphiQL,
the request context and its principal, over HTTP, WebSocket and Server-Sent Events."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, GraphQLRequestProtocol, process_result
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from command.db import WriteDatabase
from gateway.auth import UNCHECKED, bearer_token, connection_token
from gateway.context import GatewayContext
from gateway.feed import ViewFeed
from gateway.ide import GraphiQLPage
from gateway.limits import MutationLimits
from gateway.media import MediaType, code_for_status, is_request_error, negotiate, refusal
from gateway.persisted import (
    PersistedQueries,
    PersistedQueryError,
    persisted_graphql_ws,
    persisted_transport_ws,
    registering,
)
from gateway.requests import decode_json, from_query_string, graphql_request, media_type_of
from gateway.schema import create_schema
from gateway.trusted import TrustedDocuments
from gateway.verifier import TokenVerifier
from projection.queries import ReadModel
from shared import tracing
from shared.errors import ErrorCode, Unauthenticated
from shared.logging import get_logger
from shared.metrics import GATEWAY_WORKER_REQUESTS
from shared.settings import Settings, mask_dsn
from shared.telemetry import OFF, Telemetry

log = get_logger(__name__)


class EventshopGraphQL(GraphQL[GatewayContext, None]):
    def __init__(
        self,
        write_db: WriteDatabase,
        read_model: ReadModel,
        feed: ViewFeed,
        settings: Settings,
        *,
        telemetry: Telemetry = OFF,
    ) -> None:
        super().__init__(
            create_schema(settings, telemetry),
            graphql_ide="graphiql",
            allow_queries_via_get=True,  # persisted queries only (execute_operation); POST for the rest
            keep_alive=True,
            keep_alive_interval=settings.ws_keep_alive_seconds,
            # graphql-sse's distinct connections mode: POST with `Accept: text/event-stream`, one operation each.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        )
        self.write_db = write_db
        self.read_model = read_model
        self.feed = feed
        self.settings = settings
        self.verifier = TokenVerifier.from_settings(settings)
        self.ide = GraphiQLPage()
        self.limiter = MutationLimits.from_settings(settings)
        trusted = None if settings.trusted_documents is None else TrustedDocuments.load(settings.trusted_documents)
        self.persisted = PersistedQueries(settings.persisted_queries_max, trusted)
        self.graphql_transport_ws_handler_class = persisted_transport_ws(
            self.persisted, self.graphql_transport_ws_handler_class
        )
        self.graphql_ws_handler_class = persisted_graphql_ws(self.persisted, self.graphql_ws_handler_class)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every HTTP answer is a GraphQL response in the media type the request accepts (gateway/media.py):
        a refusal too, and even a fault of our own (500, INTERNAL, logged), never a plain-text page."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        media = negotiate(request.headers.get("accept"))
        request.state.media = media
        try:
            response = await self.run(request)
        except HTTPException as refused:
            allow = {"Allow": "GET, POST"} if refused.status_code == 405 else None
            response = refusal(refused.status_code, refused.reason, code_for_status(refused.status_code), media, allow)
        except Exception as exc:  # as ErrorCodes masks a resolver's: the log has it under the correlation id
            correlation_id = tracing.correlation_id.get() or uuid.uuid4().hex
            log.error("graphql.http_fault", correlation_id=correlation_id, error=mask_dsn(repr(exc)), exc_info=exc)
            response = refusal(500, "Internal error", ErrorCode.INTERNAL, media, correlation_id=correlation_id)
        await response(scope, receive, send)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        transport = self._get_stream_transport_from_headers(request.headers)
        protocol: GraphQLRequestProtocol = transport.protocol if transport else "http"
        if request.method == "GET":
            return graphql_request(from_query_string(request.query_params), protocol)
        if media_type_of(request.content_type) != "application/json":
            raise HTTPException(415, "a POST body must be application/json")
        return graphql_request(decode_json(await request.get_body()), protocol)

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """A request error (nothing executed) has no `data` entry, and answers 400 where the client accepts
        application/graphql-response+json; with application/json it stays 200, as older clients expect."""
        body = process_result(result)
        media: MediaType = request.state.media
        request.state.sub_response.media_type = media.value
        if is_request_error(body):
            del body["data"]
            if media is MediaType.GRAPHQL_RESPONSE:
                request.state.sub_response.status_code = 400
        return body

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        request.state.sub_response = sub_response
        return sub_response

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = sub_response.media_type or MediaType.JSON.value
        return response

    def should_render_graphql_ide(self, request: Any) -> bool:
        """A GET carrying a persisted query's hash or a document id (and no `query`) is a query, not a visit to
        GraphiQL."""
        params = request.query_params
        return super().should_render_graphql_ide(request) and "extensions" not in params and "documentId" not in params

    async def execute_operation(  # noqa: PLR0917 - Strawberry's signature
        self,
        request: Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: GatewayContext,
        root_value: None,
        sub_response: Any,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        """Persisted documents (an APQ hash, a `documentId`; only trusted ones when a manifest is set): a hash
        becomes its query text here, before anything parses it, so the limits, the rate limits and the access
        policy meet a full query (gateway/persisted.py, gateway/trusted.py)."""
        GATEWAY_WORKER_REQUESTS.inc()  # refused ones too: the load this process took
        resolved = None
        if isinstance(request_data, GraphQLRequestData):  # a batch (a list) is refused earlier: batching is off
            try:
                document_id = getattr(request_data, "document_id", None)
                resolved = self.persisted.resolve(request_data.query, request_data.extensions, document_id)
            except PersistedQueryError as error:  # over SSE, inside the stream (graphql-sse's distinct connections)
                return error.result() if request_data.protocol != "sse" else one_result(error.result())
            if resolved is not None:
                request_data = dataclasses.replace(request_data, query=resolved.query)
        if resolved is None and request_adapter.method == "GET":
            raise HTTPException(400, "queries over GET must be persisted (extensions.persistedQuery or documentId)")
        with registering(resolved):
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )

    async def render_graphql_ide(self, request: Request) -> Response:
        """Strawberry decides when (GET with Accept text/html); the page is ours: no CDN, pinned files."""
        return self.ide.response(request)

    async def get_context(self, request: Any, response: Any = None) -> GatewayContext:
        client = getattr(request, "client", None)
        context = GatewayContext(
            self.write_db,
            self.read_model,
            self.settings,
            self.feed,
            request,
            response,
            limiter=self.limiter,
            client_ip=client.host if client else "unknown",
        )
        self.authenticate(context, lambda: bearer_token(request.headers.get("authorization")))
        return context

    async def on_ws_connect(self, context: GatewayContext) -> UnsetType | dict[str, object] | None:
        """The connection_init payload's token (else the handshake's Authorization header) names the principal.

        A bad token refuses the connection; no token at all gives an anonymous connection, which may
        subscribe to nothing (each operation then answers UNAUTHENTICATED).
        """
        self.authenticate(context, lambda: connection_token(context.connection_params))
        if context.auth_error is not None:
            error = context.auth_error
            raise ConnectionRejectionError({"message": error.message, "extensions": error.extensions})
        return UNSET

    def authenticate(self, context: GatewayContext, read_token: Callable[[], str | None]) -> None:
        """Verify the token `read_token` finds; when it finds none, the context stays as it was."""
        if not self.settings.auth_enabled:
            context.principal, context.auth_error = UNCHECKED, None
            return
        try:
            token = read_token()
            if token is not None:
                context.principal, context.auth_error = self.verifier.verify(token), None
        except Unauthenticated as exc:
            context.principal, context.auth_error = None, exc


def one_result(result: ExecutionResult) -> SubscriptionExecutionResult:
    """A stream of one result: a refusal as graphql-sse delivers it, in a `next` event."""

    async def stream() -> AsyncGenerator[ExecutionResult, None]:
        yield result

    return cast(SubscriptionExecutionResult, stream())
