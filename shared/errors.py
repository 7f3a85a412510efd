"""Domain errors with the API contract's error codes; the gateway turns them into GraphQL errors."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INVALID_STATE = "INVALID_STATE"
    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"
    PRICE_CHANGED = "PRICE_CHANGED"
    STALE_READ = "STALE_READ"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    QUERY_REJECTED = "QUERY_REJECTED"
    INTERNAL = "INTERNAL"


class DomainError(Exception):
    """An expected failure the client can act on. `extensions` is picked up by graphql-core."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code.value}
        if field:
            self.extensions["field"] = field
        self.extensions.update(details)


class BadUserInput(DomainError):
    code = ErrorCode.BAD_USER_INPUT


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND


class Conflict(DomainError):
    code = ErrorCode.CONFLICT


class InvalidState(DomainError):
    code = ErrorCode.INVALID_STATE


class InsufficientStock(DomainError):
    code = ErrorCode.INSUFFICIENT_STOCK


class PriceChanged(DomainError):
    code = ErrorCode.PRICE_CHANGED


class StaleRead(DomainError):
    code = ErrorCode.STALE_READ


class Unauthenticated(DomainError):
    """No valid credentials: the bearer token is missing, malformed, expired or not ours."""

    code = ErrorCode.UNAUTHENTICATED


class Forbidden(DomainError):
    """Valid credentials that do not allow this operation on this resource."""

    code = ErrorCode.FORBIDDEN


class RateLimited(DomainError):
    """Too many mutations from one client; `retryAfter` says how many seconds until the next one is accepted."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retryAfter=retry_after)
