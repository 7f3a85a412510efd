"""Bearer JWTs checked against locally configured keys, and the principal a valid one names.

Keys are kept apart by family, so a token can never choose how its own signature is read: HS* tokens
are checked only with `JWT_SECRET`, RS*/PS*/ES* tokens only with the public key file or the JWKS file
(RFC 8725 section 2.1, the "algorithm confusion" attack). `none` is refused by the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.auth import REQUIRED_CLAIMS, AuthConfigError, Principal, Role, Scope
from gateway.caches import LRUCache
from shared.errors import Unauthenticated
from shared.settings import DEV_JWT_SECRET, Settings

MAX_TOKEN_BYTES = 8192
VERIFIED_TOKENS = 1000
"""How many verified tokens a gateway remembers (the most recently used)."""
MIN_PRODUCTION_SECRET = 32


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.algorithms = set(settings.jwt_algorithm_list)
        self.secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self.public_key: Any = None
        self.jwks: jwt.PyJWKSet | None = None
        self._verified: LRUCache[str, Principal] = LRUCache(VERIFIED_TOKENS)  # token -> principal
        if settings.jwt_public_key_file is not None:
            try:
                self.public_key = load_pem_public_key(settings.jwt_public_key_file.read_bytes())
            except (OSError, ValueError, TypeError) as exc:
                raise AuthConfigError(
                    f"JWT_PUBLIC_KEY_FILE {settings.jwt_public_key_file} is not a readable PEM public key "
                    f"({type(exc).__name__})"
                ) from None
        if settings.jwt_jwks_file is not None:
            try:
                self.jwks = jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text())
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise AuthConfigError(
                    f"JWT_JWKS_FILE {settings.jwt_jwks_file} is not a readable JWKS ({type(exc).__name__})"
                ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """A verifier, or AuthConfigError when the gateway could not authenticate anyone safely."""
        verifier = cls(settings)
        if not settings.auth_enabled:
            return verifier
        if verifier.secret is None and verifier.public_key is None and verifier.jwks is None:
            raise AuthConfigError(
                "authentication is on but no key is configured: set JWT_SECRET (development: copy .env.example "
                "to .env), JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE; or AUTH_ENABLED=false for local experiments"
            )
        if settings.is_production and verifier.secret is not None:
            if verifier.secret == DEV_JWT_SECRET:
                raise AuthConfigError("ENV=production with the development JWT_SECRET from .env.example")
            if len(verifier.secret.encode()) < MIN_PRODUCTION_SECRET:
                raise AuthConfigError(f"ENV=production needs a JWT_SECRET of at least {MIN_PRODUCTION_SECRET} bytes")
        return verifier

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; Unauthenticated (with a reason, never the token) otherwise.

        A client sends the same token with every request until it expires: its principal is remembered (only
        a verified one, only until it expires, by the exact token text), so the signature is checked once."""
        known = self._verified.get_recent(token)
        if known is not None:
            if not known.expired():
                return known
            del self._verified[token]  # verified again below, which says why it is refused
        principal = self._verify(token)
        self._verified.put(token, principal)
        return principal

    def _verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("bearer token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed bearer token") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise Unauthenticated("token algorithm not allowed")
        key = self._key_for(algorithm, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=self.settings.jwt_leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_reason(exc)) from None
        return _principal(claims, self.settings.jwt_leeway)

    def _key_for(self, algorithm: str, kid: object) -> Any:
        if algorithm.startswith("HS"):
            if self.secret is None:
                raise Unauthenticated("token algorithm not allowed")
            return self.secret
        if self.jwks is not None and (kid is not None or self.public_key is None):
            keys = [k for k in self.jwks.keys if kid is None or k.key_id == kid]
            if len(keys) != 1 or keys[0].algorithm_name != algorithm:
                raise Unauthenticated("no key for this token")
            return keys[0]
        if self.public_key is not None and _fits(self.public_key, algorithm):
            return self.public_key
        raise Unauthenticated("no key for this token")


def _fits(key: Any, algorithm: str) -> bool:
    if algorithm.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm.startswith("ES"):
        return isinstance(key, ec.EllipticCurvePublicKey)
    return isinstance(key, ed25519.Ed25519PublicKey) and algorithm == "EdDSA"


def _reason(exc: jwt.PyJWTError) -> str:
    """A short, fixed explanation: PyJWT's own messages may quote attacker-supplied input."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token not yet valid"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience not accepted"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer not accepted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim} claim" if exc.claim in REQUIRED_CLAIMS else "token lacks a claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature invalid"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token algorithm not allowed"
    return "malformed bearer token"


def _principal(claims: Mapping[str, Any], leeway: float) -> Principal:
    try:
        role = Role(str(claims.get("role")))
    except ValueError:
        raise Unauthenticated("token has no known role") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.strip():
        raise Unauthenticated("token subject invalid")
    if role is Role.CUSTOMER and not (subject.isdigit() and int(subject) > 0):
        raise Unauthenticated("a customer token's subject must be the user id")
    scopes = _scopes(claims.get("scope")) if role is Role.SERVICE else frozenset()
    # A WebSocket outlives its token: operations started after this moment are refused.
    return Principal(subject=subject, role=role, expires_at=float(claims["exp"]) + leeway, scopes=scopes)


def _scopes(claim: object) -> frozenset[Scope]:
    """A service token's `scope`: a space-separated string of known scopes, at least one."""
    if not isinstance(claim, str) or not claim.split():
        raise Unauthenticated("a service token needs a scope claim (space-separated scopes)")
    try:
        return frozenset(Scope(name) for name in claim.split())
    except ValueError:
        raise Unauthenticated(f"token has an unknown scope; known: {' '.join(Scope)}") from None
