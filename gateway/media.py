"""GraphQL over HTTP's media types: which one a request accepts, and refusals as GraphQL responses.

`application/graphql-response+json` is the specification's own type: with it, a request error (a body that is
no GraphQL request, a document that does not parse or validate, variables that do not coerce) answers 4xx
without a `data` entry. `application/json` is kept for older clients: a well-formed request answers 200 with
its errors, and only a body that is no GraphQL request at all answers 4xx. A request that names neither (or
no Accept at all) gets `application/json`, as the specification says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from starlette.responses import Response

from shared.errors import ErrorCode


class MediaType(StrEnum):
    GRAPHQL_RESPONSE = "application/graphql-response+json"
    JSON = "application/json"


# Wildcards stand for application/json (the GraphQL-over-HTTP audit 47DE: `*/*` answers application/json).
_OFFERS = {
    "application/graphql-response+json": MediaType.GRAPHQL_RESPONSE,
    "application/json": MediaType.JSON,
    "application/*": MediaType.JSON,
    "*/*": MediaType.JSON,
}


def negotiate(accept: str | None) -> MediaType:
    """The media type of the answer: the offer with the highest `q` (the first listed among equals)."""
    best: tuple[float, int, MediaType] | None = None
    for index, part in enumerate((accept or "").split(",")):
        name, _, params = part.partition(";")
        offer = _OFFERS.get(name.strip().lower())
        if offer is None:
            continue
        q = _quality(params)
        if q > 0 and (best is None or (q, -index) > (best[0], best[1])):
            best = (q, -index, offer)
    return MediaType.JSON if best is None else best[2]


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def is_request_error(body: Mapping[str, Any]) -> bool:
    """True when the request never reached execution: errors and no data, none of them on a field's path
    (parse, validation, variable coercion, a refused persisted query). An execution whose root field failed
    has `data: null` and an error with a path, and answers 200 in both media types."""
    errors = body.get("errors")
    return body.get("data") is None and bool(errors) and all(not error.get("path") for error in errors or ())


def refusal_body(message: str, code: ErrorCode | str, **extensions: str) -> bytes:
    """A GraphQL response with one error and no `data` entry (a request error has none)."""
    error = {"message": message, "extensions": {"code": str(code), **extensions}}
    return json.dumps({"errors": [error]}).encode()


def refusal(
    status: int,
    message: str,
    code: ErrorCode | str,
    media: MediaType,
    headers: Mapping[str, str] | None = None,
    **extensions: str,
) -> Response:
    body = refusal_body(message, code, **extensions)
    return Response(body, status_code=status, media_type=media.value, headers=headers)


def code_for_status(status: int) -> ErrorCode:
    """The error code of an HTTP-level refusal: too large and too slow are the gateway's limits."""
    if status == 429:
        return ErrorCode.RATE_LIMITED
    if status in (413, 431):
        return ErrorCode.QUERY_REJECTED
    return ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_USER_INPUT
