"""Automatic persisted queries (APQ): the protocol of Apollo Client's persisted-queries link.

A client sends `extensions: {persistedQuery: {version: 1, sha256Hash}}` without the query text. A hash this
gateway knows stands for its query; an unknown one answers PersistedQueryNotFound (PERSISTED_QUERY_NOT_FOUND),
and the client sends the query again with the same extension: the hash is checked against the text, and the
query runs and is remembered, once it has parsed and validated (limits included), for the next hash-only
request. The store is an LRU of `PERSISTED_QUERIES_MAX` entries per gateway process (0: APQ off, answered with
PersistedQueryNotSupported, which makes the link send full queries).

The hash is turned into its query text before Strawberry parses anything, so a persisted query meets exactly
what a full one does: the token, depth and alias limits, the access policy, the rate limits, the masking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import StartMessage
from strawberry.types import ExecutionResult

from gateway.caches import LRUCache
from gateway.trusted import TrustedDocuments, document_key, sha256_hex
from shared.errors import ErrorCode

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
UNTRUSTED = ErrorCode.QUERY_REJECTED.value
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class PersistedQueryError(Exception):
    """A persisted-query request that cannot run; answered as a GraphQL error (HTTP 200), nothing executed."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def formatted(self) -> dict[str, Any]:
        return {"message": self.message, "extensions": {"code": self.code}}

    def result(self) -> ExecutionResult:
        return ExecutionResult(data=None, errors=[GraphQLError(self.message, extensions={"code": self.code})])


@dataclass(frozen=True)
class Resolved:
    """The query text a persisted-query request stands for; `register` when it came with the text."""

    store: PersistedQueries
    sha256: str
    query: str
    register: bool


class PersistedQueries:
    """Query texts by their SHA-256, least recently used forgotten first beyond `max_entries`; or, with
    `trusted` documents (gateway/trusted.py), those alone: nothing else runs and nothing is registered."""

    def __init__(self, max_entries: int, trusted: TrustedDocuments | None = None) -> None:
        self.max_entries = max_entries
        self.trusted = trusted
        self._queries: LRUCache[str, str] = LRUCache(max_entries)

    def __len__(self) -> int:
        return len(self._queries)

    def __contains__(self, sha256: str) -> bool:
        return sha256.lower() in self._queries

    def get(self, sha256: str) -> str | None:
        return self._queries.get_recent(sha256)

    def remember(self, sha256: str, query: str) -> None:
        self._queries.put(sha256, query)

    def resolve(
        self, query: str | None, extensions: Mapping[str, Any] | None, document_id: str | None = None
    ) -> Resolved | None:
        """What a request's `query`, `extensions` and `documentId` stand for: None when it is no persisted-query
        request (and, with trusted documents, its text is trusted).

        Raises PersistedQueryError: APQ off, an unknown hash without the text, a hash that does not match the
        text, or a malformed extension (BAD_USER_INPUT, as the rest of the API answers bad input); with trusted
        documents, any document not in the manifest (QUERY_REJECTED).
        """
        persisted = (extensions or {}).get("persistedQuery")
        if self.trusted is not None:
            return self._trusted(self.trusted, query, persisted, document_id)
        if document_id is not None:
            known = self.get(document_key(document_id))
            if known is None:
                raise PersistedQueryError("PersistedQueryNotFound", NOT_FOUND)
            return Resolved(self, document_key(document_id), known, register=False)
        if persisted is None:
            return None
        if self.max_entries <= 0:
            raise PersistedQueryError("PersistedQueryNotSupported", NOT_SUPPORTED)
        if not isinstance(persisted, Mapping):
            raise PersistedQueryError("extensions.persistedQuery must be an object", ErrorCode.BAD_USER_INPUT)
        if persisted.get("version") != 1:
            raise PersistedQueryError("Unsupported persisted query version", ErrorCode.BAD_USER_INPUT)
        sha256 = persisted.get("sha256Hash")
        if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
            raise PersistedQueryError("persistedQuery.sha256Hash must be 64 hex digits", ErrorCode.BAD_USER_INPUT)
        sha256 = sha256.lower()
        if query is None:
            known = self.get(sha256)
            if known is None:
                raise PersistedQueryError("PersistedQueryNotFound", NOT_FOUND)
            return Resolved(self, sha256, known, register=False)
        if sha256_hex(query) != sha256:
            raise PersistedQueryError("provided sha does not match query", ErrorCode.BAD_USER_INPUT)
        return Resolved(self, sha256, query, register=True)

    def _trusted(
        self, trusted: TrustedDocuments, query: str | None, persisted: Any, document_id: str | None
    ) -> Resolved | None:
        if document_id is None and persisted is not None:
            document_id = persisted.get("sha256Hash") if isinstance(persisted, Mapping) else None
            if not isinstance(document_id, str):
                raise PersistedQueryError("persistedQuery.sha256Hash must be a string", ErrorCode.BAD_USER_INPUT)
        if document_id is None:
            if query is not None and trusted.trusts(query):
                return None  # the text of a trusted document: it runs as sent
            raise PersistedQueryError(
                "only trusted documents run here: send the documentId of one in the manifest", UNTRUSTED
            )
        text = trusted.get(document_id)
        if text is None:
            raise PersistedQueryError("not a trusted document: its id is not in the manifest", UNTRUSTED)
        if query is not None and query != text:
            raise PersistedQueryError("provided sha does not match query", ErrorCode.BAD_USER_INPUT)
        return Resolved(self, document_key(document_id), text, register=False)


# The query waiting to be remembered by the operation running in this task (HTTP request, or the task of one
# WebSocket operation, which copies the context it was created in).
_pending: ContextVar[Resolved | None] = ContextVar("eventshop_pending_persisted_query", default=None)


@contextmanager
def registering(resolved: Resolved | None) -> Iterator[None]:
    """Within this block, the operation started remembers `resolved` once its document is valid."""
    token = _pending.set(resolved if resolved is not None and resolved.register else None)
    try:
        yield
    finally:
        _pending.reset(token)


class RememberValidPersistedQueries(SchemaExtension):
    """Remembers a query sent with its hash after it parsed and validated: a document the limits reject is
    never stored (it would be rejected again anyway; storing it would only evict good ones)."""

    def on_validate(self) -> Iterator[None]:
        yield
        pending = _pending.get()
        context = self.execution_context
        if pending is not None and context.query == pending.query and not context.pre_execution_errors:
            pending.store.remember(pending.sha256, pending.query)


def persisted_transport_ws(
    store: PersistedQueries, base: type[BaseGraphQLTransportWSHandler[Any, Any]]
) -> type[BaseGraphQLTransportWSHandler[Any, Any]]:
    """`base` (graphql-transport-ws) with `subscribe` messages that may carry a hash instead of the query."""

    class PersistedTransportWS(base):  # type: ignore[valid-type,misc]
        async def handle_subscribe(self, message: SubscribeMessage) -> None:
            if not self.connection_acknowledged or message["id"] in self.operations:
                await super().handle_subscribe(message)  # the protocol's own refusals
                return
            payload = message["payload"]
            try:
                resolved = store.resolve(payload.get("query"), payload.get("extensions"), _document_id(payload))
            except PersistedQueryError as error:
                await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
                return
            if resolved is not None:
                message = {**message, "payload": {**payload, "query": resolved.query}}
            with registering(resolved):
                await super().handle_subscribe(message)

    return PersistedTransportWS


def persisted_graphql_ws(
    store: PersistedQueries, base: type[BaseGraphQLWSHandler[Any, Any]]
) -> type[BaseGraphQLWSHandler[Any, Any]]:
    """`base` (the legacy graphql-ws) with `start` messages that may carry a hash instead of the query."""

    class PersistedGraphQLWS(base):  # type: ignore[valid-type,misc]
        async def handle_start(self, message: StartMessage) -> None:
            if not self.connection_acknowledged:
                await super().handle_start(message)
                return
            payload = message["payload"]
            try:
                resolved = store.resolve(
                    payload.get("query"),
                    payload.get("extensions"),  # type: ignore[arg-type]
                    _document_id(payload),  # type: ignore[arg-type]
                )
            except PersistedQueryError as error:
                await self.send_message({"type": "error", "id": message["id"], "payload": error.formatted})
                return
            if resolved is not None:
                message = {**message, "payload": {**payload, "query": resolved.query}}
            with registering(resolved):
                await super().handle_start(message)

    return PersistedGraphQLWS


def _document_id(payload: Mapping[str, Any]) -> str | None:
    document_id = payload.get("documentId")
    return document_id if isinstance(document_id, str) else None
