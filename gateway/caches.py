"""Bounded caches of the gateway: an LRU, and the schema extension that parses each document once."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, TypeVar

from graphql import DocumentNode
from strawberry.extensions import SchemaExtension

QUERY_CACHE_SIZE = 1000
"""Documents remembered, parsed and validated, per schema: clients send the same few over and over."""
K = TypeVar("K")
V = TypeVar("V")


class LRUCache(OrderedDict[K, V]):
    """At most `size` entries; the least recently used (read by `get_recent` or `put`) goes first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_recent(self, key: K) -> V | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class ParsedDocuments(SchemaExtension):
    """A document this schema parsed before is not parsed again. Keyed by the text and the parse options, the
    token limit among them (MaxTokensLimiter sets it when the operation starts, before any parse); only parsed
    documents are kept, so a document over the limit is refused, with its code, every time. Strawberry parses
    when no document is set, and its errors take the usual way."""

    def __init__(self, cache: LRUCache[tuple[str, tuple[tuple[str, Any], ...]], DocumentNode]) -> None:
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        key = (context.query or "", tuple(sorted(context.parse_options.items())))
        known = self.cache.get_recent(key)
        if known is not None:
            context.graphql_document = known
        yield
        if known is None and context.graphql_document is not None:
            self.cache.put(key, context.graphql_document)
