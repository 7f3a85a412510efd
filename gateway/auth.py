"""Who is calling: the principal a verified token names (gateway/verifier.py checks the token), where a request
carries its token, and the tokens `eventshop token` issues.

Roles (claim `role`): `admin`, `customer` (`sub` = their user id) and `service`, a backend such as a
storefront calling on behalf of customers (`sub` = the service's name). A service token must carry an
OAuth-style `scope` claim, a space-separated string of the scopes below (RFC 9068 section 2.2.3); it may
do exactly what its scopes allow (gateway/policy.py says which operation needs which). Unknown scope
names are refused rather than ignored, so a typo fails at the first call, not as a puzzling FORBIDDEN.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from shared.errors import Unauthenticated
from shared.settings import Settings

REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
"""What every token carries: `issue_token` writes them, the verifier requires them."""


class Role(StrEnum):
    ADMIN = "admin"
    CUSTOMER = "customer"
    SERVICE = "service"


class Scope(StrEnum):
    """What a service token may do; an admin may do all of it, a customer only on their own account."""

    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    ORDERS_READ = "orders:read"
    ORDERS_WRITE = "orders:write"
    ORDERS_FULFIL = "orders:fulfil"
    PRODUCTS_WRITE = "products:write"


# A storefront backend signs customers up, keeps their profiles, and places, pays, cancels, deletes, reads and
# watches their orders. The catalogue and fulfilment stay with administrators unless a token is granted more.
STOREFRONT_SCOPES = frozenset({Scope.USERS_READ, Scope.USERS_WRITE, Scope.ORDERS_READ, Scope.ORDERS_WRITE})


@dataclass(frozen=True)
class Principal:
    """The caller named by a verified token. A customer's `subject` is their user id, a service's its name."""

    subject: str
    role: Role
    expires_at: float | None = None  # exp plus the allowed clock skew
    from_token: bool = True
    scopes: frozenset[Scope] = frozenset()  # a service's grants; empty for admins and customers

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_service(self) -> bool:
        return self.role is Role.SERVICE

    @property
    def user_id(self) -> int | None:
        """The customer's own user id; None for an admin or a service."""
        return int(self.subject) if self.role is Role.CUSTOMER else None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) > self.expires_at


# With AUTH_ENABLED=false every caller acts as this (local experiments only; a warning is logged at start-up).
UNCHECKED = Principal(subject="auth-disabled", role=Role.ADMIN, from_token=False)


class AuthConfigError(Exception):
    """The gateway must not start with this configuration; the message says why (never the secret)."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None when absent; Unauthenticated otherwise."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be `Bearer <token>`")
    return token.strip()


def connection_token(params: Mapping[str, Any] | None) -> str | None:
    """The token in a WebSocket connection_init payload: {"Authorization": "Bearer ..."} or {"token": "..."}."""
    if not params:
        return None
    for name, value in params.items():
        if isinstance(name, str) and name.lower() == "authorization":
            if not isinstance(value, str):
                raise Unauthenticated("Authorization must be `Bearer <token>`")
            return bearer_token(value)
    token = params.get("token")
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip():
        raise Unauthenticated("token must be a non-empty string")
    return token.strip()


def issue_token(settings: Settings, role: Role, subject: str, ttl_seconds: float, scopes: Iterable[Scope] = ()) -> str:
    """An HS256 token signed with JWT_SECRET (for `eventshop token`: local use and tests).

    `scopes` go into a service token's `scope` claim (sorted, space-separated); other roles carry none.
    """
    if settings.jwt_secret is None:
        raise AuthConfigError("JWT_SECRET is not set (development: copy .env.example to .env)")
    granted = sorted({Scope(s) for s in scopes})
    if role is Role.SERVICE and not granted:
        raise AuthConfigError("a service token needs at least one scope")
    if role is not Role.SERVICE and granted:
        raise AuthConfigError("only service tokens carry scopes")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "role": role.value,
        "iat": now,
        "exp": now + int(ttl_seconds),
    }
    if granted:
        claims["scope"] = " ".join(granted)
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
