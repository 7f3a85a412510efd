"""Roles without services: what a service token must carry, which budget each kind of caller takes from,
and that the access table of docs/security.md names the scope each rule in gateway/policy.py asks for."""

from __future__ import annotations

import re
import time
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from eventshop.cli import app
from gateway.auth import STOREFRONT_SCOPES, AuthConfigError, Principal, Role, Scope, issue_token
from gateway.limits import Budget, Caller, MutationLimits, budgets
from gateway.policy import RULES
from gateway.verifier import TokenVerifier
from shared.errors import Unauthenticated
from shared.settings import Settings
from tests.conftest import caller_budgets_unset
from tests.doubles import Clock

ROOT = Path(__file__).resolve().parents[2]
SECRET = "unit-test-secret-0123456789abcdef0123456789"


def settings(**values: object) -> Settings:
    """Validated settings from these values and no `.env` (not make_test_settings: nothing here needs a service),
    with budgets of their own so that a caller falling back to them shows."""
    base: dict[str, object] = {
        "jwt_secret": SecretStr(SECRET),
        "jwt_public_key_file": None,
        "jwt_jwks_file": None,
        "mutation_rate": 5.0,
        "mutation_burst": 20,
        **caller_budgets_unset(),
    }
    return Settings(_env_file=None, **{**base, **values})  # type: ignore[arg-type]


def service_claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    values: dict[str, object] = {"iss": "eventshop", "aud": "eventshop", "sub": "storefront", "role": "service"}
    return {**values, "iat": now, "exp": now + 600, **overrides}


# --- Service tokens ---------------------------------------------------------------------------------------


def test_eventshop_token_makes_a_storefront_token_the_gateway_reads_back_with_its_scopes() -> None:
    config = settings()
    token = issue_token(config, Role.SERVICE, "storefront", 60, STOREFRONT_SCOPES)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="eventshop", issuer="eventshop")
    assert claims["role"] == "service" and claims["sub"] == "storefront"
    assert claims["scope"] == "orders:read orders:write users:read users:write"
    principal = TokenVerifier.from_settings(config).verify(token)
    assert (principal.role, principal.subject, principal.scopes) == (Role.SERVICE, "storefront", STOREFRONT_SCOPES)
    assert principal.is_service and not principal.is_admin and principal.user_id is None


def test_the_token_command_names_the_service_and_grants_the_storefront_scopes_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    runner = CliRunner()

    def claims_of(*args: str) -> dict[str, object]:
        result = runner.invoke(app, ["token", *args])
        assert result.exit_code == 0, result.output
        token = result.stdout.strip().splitlines()[-1]
        return jwt.decode(token, SECRET, algorithms=["HS256"], audience="eventshop", issuer="eventshop")

    storefront = claims_of("--role", "service", "--name", "storefront")
    assert (storefront["sub"], storefront["role"]) == ("storefront", "service")
    assert storefront["scope"] == "orders:read orders:write users:read users:write"
    warehouse = claims_of("--role", "service", "--name", "warehouse", "--scope", "orders:read orders:fulfil")
    assert warehouse["scope"] == "orders:fulfil orders:read"
    assert "scope" not in claims_of("--role", "admin")

    for refused in (
        ["--role", "service"],  # no name
        ["--role", "service", "--name", "storefront", "--scope", "orders:delete"],
        ["--role", "admin", "--scope", "orders:read"],
        ["--role", "customer", "--user-id", "3", "--name", "storefront"],
    ):
        result = runner.invoke(app, ["token", *refused])
        assert result.exit_code == 2, (refused, result.output)


def test_issuing_refuses_a_service_token_without_scopes_and_scopes_on_other_roles() -> None:
    with pytest.raises(AuthConfigError, match="at least one scope"):
        issue_token(settings(), Role.SERVICE, "storefront", 60)
    with pytest.raises(AuthConfigError, match="only service tokens"):
        issue_token(settings(), Role.ADMIN, "admin", 60, [Scope.ORDERS_READ])


@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        (None, "needs a scope claim"),
        ("", "needs a scope claim"),
        ("   ", "needs a scope claim"),
        (["orders:write"], "needs a scope claim"),  # the claim is a string, as in OAuth
        ("orders:write admin", "unknown scope"),
        ("orders:write,orders:read", "unknown scope"),  # space-separated, not comma
    ],
)
def test_a_service_token_must_name_known_scopes(scope: object, reason: str) -> None:
    claims = service_claims(scope=scope) if scope is not None else service_claims()
    with pytest.raises(Unauthenticated, match=reason):
        TokenVerifier.from_settings(settings()).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_scopes_in_admin_and_customer_tokens_are_ignored() -> None:
    verifier = TokenVerifier.from_settings(settings())
    for role, sub in (("admin", "ops"), ("customer", "7")):
        token = jwt.encode(service_claims(role=role, sub=sub, scope="products:write"), SECRET, algorithm="HS256")
        assert verifier.verify(token).scopes == frozenset()


# --- Budgets ----------------------------------------------------------------------------------------------


def test_default_budgets_limit_customers_and_anonymous_callers_and_leave_admins_and_services_unlimited() -> None:
    assert budgets(settings()) == {
        Caller.ANONYMOUS: Budget(5.0, 20),
        Caller.CUSTOMER: Budget(5.0, 20),
        Caller.SERVICE: None,
    }


def test_each_kind_of_caller_is_configured_on_its_own_and_zero_is_unlimited() -> None:
    configured = settings(
        customer_mutation_rate=2.0,
        anonymous_mutation_rate=0.5,
        anonymous_mutation_burst=3,
        service_mutation_rate=100.0,
        service_mutation_burst=200,
    )
    assert budgets(configured) == {
        Caller.ANONYMOUS: Budget(0.5, 3),
        Caller.CUSTOMER: Budget(2.0, 20),  # the burst falls back to MUTATION_BURST
        Caller.SERVICE: Budget(100.0, 200),
    }
    unlimited = settings(customer_mutation_rate=0, service_mutation_rate=0)
    assert budgets(unlimited)[Caller.CUSTOMER] is None and budgets(unlimited)[Caller.SERVICE] is None


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_MUTATION_RATE", "")
    monkeypatch.setenv("CUSTOMER_MUTATION_BURST", "")
    monkeypatch.setenv("ANONYMOUS_MUTATION_RATE", "1.5")
    loaded = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (loaded.service_mutation_rate, loaded.customer_mutation_burst) == (None, None)
    assert budgets(loaded)[Caller.ANONYMOUS] == Budget(1.5, loaded.mutation_burst)


def test_a_mutation_takes_from_the_budget_of_its_callers_kind_and_its_own_bucket() -> None:
    clock = Clock()
    limits = MutationLimits(
        {Caller.ANONYMOUS: Budget(1.0, 1), Caller.CUSTOMER: Budget(1.0, 2), Caller.SERVICE: None}, clock
    )
    alice = Principal("1", Role.CUSTOMER)
    storefront = Principal("storefront", Role.SERVICE, scopes=STOREFRONT_SCOPES)
    admin = Principal("ops", Role.ADMIN)
    assert [limits.take(alice, "customer:1") for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert limits.take(Principal("2", Role.CUSTOMER), "customer:2") == 0.0  # another customer, another bucket
    assert [limits.take(None, "ip:10.0.0.1") for _ in range(2)] == [0.0, pytest.approx(1.0)]
    assert all(limits.take(storefront, "service:storefront") == 0.0 for _ in range(1000))
    assert all(limits.take(admin, "admin:ops") == 0.0 for _ in range(1000))


def test_a_configured_service_budget_applies_to_admins_and_services_alike() -> None:
    clock = Clock()
    limits = MutationLimits(budgets(settings(service_mutation_rate=10.0, service_mutation_burst=2)), clock)
    storefront = Principal("storefront", Role.SERVICE, scopes=STOREFRONT_SCOPES)
    assert [limits.take(storefront, "service:storefront") for _ in range(3)][-1] == pytest.approx(0.1)
    assert limits.take(Principal("ops", Role.ADMIN), "admin:ops") == 0.0  # a bucket of its own
    clock.now += 0.1
    assert limits.take(storefront, "service:storefront") == 0.0


# --- One place for each rule ------------------------------------------------------------------------------


def _security_table() -> list[tuple[list[str], str]]:
    """(operations, the `service needs` cell) of each row of the access table in docs/security.md."""
    security = (ROOT / "docs" / "security.md").read_text()
    table = security.split("\n| operations |", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("| `")]
    rows = []
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((re.findall(r"`([A-Za-z.]+)", cells[0]), cells[3]))
    return rows


def test_the_documented_access_table_names_the_scope_of_every_rule() -> None:
    by_field: dict[str, str] = {}
    for operation in RULES:
        parent, _, name = operation.partition(".")
        by_field[name if parent in ("Query", "Mutation", "Subscription") else operation] = operation
    documented = set()
    for operations, service in _security_table():
        for name in operations:
            rule = RULES[by_field[name]]
            named = re.findall(r"`([a-z]+:[a-z]+)`", service)
            assert named == ([rule.scope.value] if rule.scope else []), f"{name}: docs/security.md says {service!r}"
            documented.add(by_field[name])
    assert documented == set(RULES), f"not in docs/security.md's table: {sorted(set(RULES) - documented)}"
