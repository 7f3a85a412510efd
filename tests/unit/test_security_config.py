"""Security configuration without services: secrets stay out of sight, unsafe set-ups refuse to start,
the rate limiter's arithmetic, and an operation without an access rule is refused (fail closed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import strawberry
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from eventshop.cli import _masked
from eventshop.runtime import gateway_may_start
from gateway.auth import AuthConfigError, Role, issue_token
from gateway.limits import RateLimiter
from gateway.policy import enforce
from gateway.verifier import TokenVerifier
from shared.errors import Unauthenticated
from shared.settings import DEV_JWT_SECRET, Settings, mask_dsn
from tests.conftest import eventually
from tests.doubles import Clock

ROOT = Path(__file__).resolve().parents[2]


def test_passwords_in_connection_strings_are_masked() -> None:
    assert (
        mask_dsn("mysql+asyncmy://eventshop:s3cr%40t@db:3306/eventshop")
        == "mysql+asyncmy://eventshop:***@db:3306/eventshop"
    )
    assert mask_dsn("mongodb://app:pw@h1:27017,h2:27017/shop?authSource=admin") == (
        "mongodb://app:***@h1:27017,h2:27017/shop?authSource=admin"
    )
    assert mask_dsn("error talking to postgresql://u:p@x/db?password=again&sslmode=require") == (
        "error talking to postgresql://u:***@x/db?password=***&sslmode=require"
    )
    unchanged = "mongodb://127.0.0.1:27017/eventshop and mysql+asyncmy://root@db/eventshop"
    assert mask_dsn(unchanged) == unchanged


def test_log_lines_are_masked_before_they_are_rendered() -> None:
    event = {"event": "db.failed", "error": "OperationalError('mysql+asyncmy://app:hunter2@db/shop')", "n": 3}
    assert _masked(None, "error", event) == {
        "event": "db.failed",
        "error": "OperationalError('mysql+asyncmy://app:***@db/shop')",
        "n": 3,
    }


def test_settings_never_show_the_jwt_secret_or_a_dsn_password() -> None:
    settings = Settings(
        jwt_secret="top-secret-value-0123456789abcdef",
        mysql_dsn="mysql+asyncmy://eventshop:hunter2@db:3306/eventshop",
        mongo_uri="mongodb://reader:hunter3@mongo:27017/eventshop",
    )
    for text in (repr(settings), str(settings)):
        assert "top-secret-value" not in text and "hunter2" not in text and "hunter3" not in text
        assert "eventshop:***@db" in text
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value().startswith("top-secret")


@pytest.mark.parametrize("algorithms", ["none", "HS256,none", "HS256, NONE", "HS256,XX999", ""])
def test_the_none_algorithm_and_unknown_ones_are_refused_by_the_settings(algorithms: str) -> None:
    with pytest.raises(ValidationError):
        Settings(jwt_algorithms=algorithms)


def test_env_example_documents_every_setting_and_ships_the_development_secret() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} - documented == set()
    active = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    assert active == {"JWT_SECRET": DEV_JWT_SECRET}


def _settings(**values: object) -> Settings:
    base: dict[str, object] = {"jwt_public_key_file": None, "jwt_jwks_file": None, "env": "development"}
    return Settings.model_construct(**{**Settings().model_dump(), **base, **values})


def test_the_gateway_refuses_to_start_without_a_key_or_with_the_development_secret_in_production() -> None:
    with capture_logs() as logs:
        assert not gateway_may_start(_settings(jwt_secret=None))
        assert not gateway_may_start(_settings(env="production", jwt_secret=SecretStr(DEV_JWT_SECRET)))
        assert not gateway_may_start(_settings(env="production", jwt_secret=SecretStr("short")))
        assert gateway_may_start(_settings(env="development", jwt_secret=SecretStr(DEV_JWT_SECRET)))
    refusals = [entry for entry in logs if entry["event"] == "gateway.refused_to_start"]
    assert len(refusals) == 3
    assert all(DEV_JWT_SECRET not in str(entry) and "short" not in entry["reason"] for entry in refusals)


def test_disabling_authentication_is_explicit_and_warned_about() -> None:
    with capture_logs() as logs:
        assert gateway_may_start(_settings(auth_enabled=False, jwt_secret=None))
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == ["gateway.auth_disabled"]


def test_a_forged_trusted_documents_manifest_stops_the_start_and_production_without_one_is_warned_about(
    tmp_path: Path,
) -> None:
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({"sha256:" + "0" * 64: "{ users { nodes { email } } }"}))
    secret = SecretStr("s" * 40)
    with capture_logs() as logs:
        assert not gateway_may_start(_settings(env="production", jwt_secret=secret, trusted_documents=forged))
        assert gateway_may_start(_settings(env="production", jwt_secret=secret, graphql_introspection=False))
    assert [entry["event"] for entry in logs if entry["log_level"] != "info"] == [
        "gateway.refused_to_start",
        "gateway.any_document_runs",
    ]
    assert "forged.json" in logs[0]["reason"]


def test_a_key_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    with pytest.raises(AuthConfigError, match="JWT_PUBLIC_KEY_FILE"):
        TokenVerifier.from_settings(_settings(jwt_public_key_file=tmp_path / "bad.pem"))
    with pytest.raises(AuthConfigError, match="JWT_JWKS_FILE"):
        TokenVerifier.from_settings(_settings(jwt_jwks_file=tmp_path / "missing.json"))


def test_the_token_bucket_allows_a_burst_then_the_rate_and_says_how_long_to_wait() -> None:
    clock = Clock(100.0)
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token every 0.5 s
    assert limiter.take("b") == 0.0  # another client, another bucket
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.take("a") == 0.0
    clock.now += 60
    assert [limiter.take("a") for _ in range(4)][-1] > 0  # refilled to the burst, never beyond


def test_idle_buckets_are_forgotten_so_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    limiter.MAX_CLIENTS = 10
    for n in range(10):
        limiter.take(f"client-{n}")
    clock.now += 5  # every bucket is full again
    limiter.take("newcomer")
    assert len(limiter._buckets) <= 2


async def test_an_operation_without_an_access_rule_is_refused() -> None:
    @strawberry.type(name="Query")
    class Query:
        @strawberry.field
        async def brand_new_field(self) -> int:
            return 42

    enforce(Query)
    admin = SimpleNamespace(is_admin=True, expired=lambda: False, user_id=None)
    context = SimpleNamespace(auth_error=None, principal=admin, limiter=None)
    outcome = await strawberry.Schema(query=Query).execute("{ brandNewField }", context_value=context)
    assert outcome.errors and outcome.errors[0].extensions == {"code": "FORBIDDEN"}
    assert "Query.brandNewField has no access rule" in outcome.errors[0].message


async def test_a_remembered_token_is_refused_once_it_expires_and_a_changed_one_is_checked_again() -> None:
    """The gateway checks a token's signature once and remembers its principal, but only until it expires and
    only for the exact token: a copy with another signature is verified (and refused) on its own."""
    settings = _settings(jwt_secret=SecretStr("s" * 40), jwt_leeway=0)
    verifier = TokenVerifier.from_settings(settings)
    token = issue_token(settings, Role.CUSTOMER, "7", ttl_seconds=1)
    assert verifier.verify(token).user_id == 7
    assert verifier.verify(token).user_id == 7  # remembered
    with pytest.raises(Unauthenticated, match="token signature invalid"):
        verifier.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))

    async def refused() -> str | None:
        try:
            verifier.verify(token)
        except Unauthenticated as exc:
            return exc.message
        return None

    assert await eventually(refused, timeout=5) == "token expired"
