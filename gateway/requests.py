"""A GraphQL-over-HTTP request's parameters, checked: anything else is a 4xx refusal, never an exception.

A POST body is a JSON object (`application/json`); a GET carries the same parameters in its query string.
`query` is a string, `operationName` a string, `variables` and `extensions` objects, each of them optional or
null; `documentId` (a string) names a persisted document instead of a `query` (gateway/trusted.py). A JSON
array (a batch) is refused: batching is off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cross_web import HTTPException
from strawberry.http import GraphQLRequestData, GraphQLRequestProtocol

PARAMETERS = {"query": str, "operationName": str, "variables": dict, "extensions": dict, "documentId": str}


@dataclass
class GraphQLRequest(GraphQLRequestData):
    """A request's parameters, with the id of a persisted (trusted) document it may name instead of a query."""

    document_id: str | None = None


def decode_json(data: str | bytes, what: str = "request body") -> Any:
    """JSON, or a 400: malformed text, bytes that are no Unicode, or nesting deeper than Python recurses."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HTTPException(400, f"the {what} is not valid JSON") from exc


def media_type_of(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def from_query_string(params: Mapping[str, Any]) -> dict[str, Any]:
    """A GET's parameters: `variables` and `extensions` are JSON in the query string."""
    data: dict[str, Any] = {key: params[key] for key in PARAMETERS if params.get(key) not in (None, "")}
    for key in ("variables", "extensions"):
        if key in data:
            data[key] = decode_json(data[key], f"{key} parameter")
    return data


def graphql_request(data: Any, protocol: GraphQLRequestProtocol) -> GraphQLRequest:
    if isinstance(data, list):
        raise HTTPException(400, "batched requests (a JSON array) are not supported: send one operation per request")
    if not isinstance(data, dict):
        raise HTTPException(400, "a GraphQL request is a JSON object with a `query`")
    for key, kind in PARAMETERS.items():
        value = data.get(key)
        if value is not None and not isinstance(value, kind):
            expected = "a string" if kind is str else "an object"
            raise HTTPException(400, f"`{key}` must be {expected} or null")
    if (
        data.get("query") is None
        and data.get("documentId") is None
        and "persistedQuery" not in (data.get("extensions") or {})
    ):
        raise HTTPException(400, "the request has no `query` (nor a `documentId`)")
    return GraphQLRequest(
        query=data.get("query"),
        variables=data.get("variables"),
        operation_name=data.get("operationName"),
        extensions=data.get("extensions"),
        protocol=protocol,
        document_id=data.get("documentId"),
    )
