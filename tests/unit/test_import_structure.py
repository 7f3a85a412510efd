"""The import structure the design draws (docs/architecture.md, "Import structure"), read from the source: every
import of every production module, as written (`ast`), nothing imported or run.

Dependencies flow one way, `gateway -> command, projection -> shared`; `command` and `projection` meet only in
`shared`; the domain core (`command/domain/`) reaches no I/O, however indirectly; the gateway calls the write side
through its handlers (never its tables, rows or store) and reads views through `projection`'s queries and view
documents (never the stored field names). `eventshop` composes the processes and may import every package.

A rule lists the breaches it knows of (`known`): each is one that cannot be mended in the importing package alone.
The test fails on a new breach and on a known one that is gone (then strike it from the list).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("shared", "command", "projection", "gateway", "eventshop", "devstack", "migrations")
NOT_PRODUCTION = ("bench", "tests")
IO = ("sqlalchemy", "sqlmodel", "asyncmy", "pymysql", "alembic", "aiokafka", "pymongo", "httpx", "starlette")
IO += ("strawberry", "uvicorn", "asyncio", "socket", "subprocess")
WRITE_SIDE_IO = ("command.db", "command.driver", "command.models", "command.outbox", "command.store")


@dataclass(frozen=True)
class Rule:
    """Modules under `importer` import none under `forbidden`, but for the `known` (module, imported) pairs."""

    importer: str
    forbidden: tuple[str, ...]
    known: frozenset[tuple[str, str]] = field(default_factory=frozenset)


def production(package: str, *forbidden: str, known: frozenset[tuple[str, str]] = frozenset()) -> Rule:
    """A production package's rule: no production code imports the benchmarks or the tests either."""
    return Rule(package, (*forbidden, *NOT_PRODUCTION), known)


RULES = [
    production("shared", "command", "projection", "gateway", "eventshop", "devstack", "migrations"),
    production("command", "projection", "gateway", "eventshop", "devstack", "migrations"),
    production("projection", "command", "gateway", "eventshop", "devstack", "migrations"),
    production(
        "gateway",
        *("eventshop", "devstack", "migrations", "command.models", "command.store", "command.snapshots"),
        *("command.outbox", "command.relay", "command.stock_worker", "command.expiry", "command.driver"),
        *("projection.stored", "projection.projectors", "projection.runner"),
    ),
    production("devstack", "command", "projection", "gateway", "eventshop", "migrations"),
    production("migrations", "projection", "gateway", "eventshop", "devstack"),
    production("eventshop"),
]

DOMAIN_CORE = Rule("command.domain", IO + WRITE_SIDE_IO)

# What the gateway may take from two modules whose other names are another side's internals: the handle its
# command handlers take, and the type of a view document as `views.changed` carries it.
ONLY = {"command.db": {"WriteDatabase"}, "projection.store": {"Doc"}}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@cache
def sources() -> dict[str, ast.Module]:
    """Every production module by its dotted name (a package by its own name, not `__init__`)."""
    found = {}
    for path in sorted(p for package in PRODUCTION for p in (ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


@cache
def imports() -> dict[str, frozenset[str]]:
    """What each production module imports: modules, `from a import b` as `a.b` when that is a module."""
    modules = sources()

    def named(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Import):
            return {alias.name for alias in node.names}
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            inner = {f"{node.module}.{alias.name}" for alias in node.names}
            return {node.module} | (inner & modules.keys())
        assert not isinstance(node, ast.ImportFrom), "production code imports by absolute names"
        return set()

    return {name: frozenset().union(*map(named, ast.walk(tree))) for name, tree in modules.items()}


def reached(start: str) -> set[str]:
    """Every module `start` imports, directly or through production modules (with their parent packages)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for name in imports().get(todo.pop(), frozenset()):
            parts = name.split(".")
            for parent in (".".join(parts[:end]) for end in range(1, len(parts) + 1)):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
    return seen


def breaches(rule: Rule, imported: dict[str, set[str] | frozenset[str]]) -> set[tuple[str, str]]:
    return {
        (module, name)
        for module, names in imported.items()
        if within(module, rule.importer)
        for name in names
        if any(within(name, forbidden) for forbidden in rule.forbidden)
    }


@pytest.mark.parametrize("rule", RULES, ids=[rule.importer for rule in RULES])
def test_each_package_imports_only_what_the_design_allows(rule: Rule) -> None:
    found = breaches(rule, dict(imports()))
    assert found - rule.known == set(), "imports against the design"
    assert rule.known - found == set(), "mended: strike these from the rule's known breaches"


def test_the_domain_core_reaches_no_io_however_indirectly() -> None:
    closures = {module: reached(module) for module in sources() if within(module, DOMAIN_CORE.importer)}
    assert closures, "command/domain/ holds the domain core"
    assert breaches(DOMAIN_CORE, dict(closures)) == set()


def test_the_gateway_takes_from_the_stores_only_their_public_handles() -> None:
    taken = set()
    for module, tree in sources().items():
        for node in ast.walk(tree) if within(module, "gateway") else ():
            if isinstance(node, ast.ImportFrom) and node.module in ONLY:
                taken |= {(module, node.module, alias.name) for alias in node.names}
            elif isinstance(node, ast.Import):
                taken |= {(module, alias.name, "*") for alias in node.names if alias.name in ONLY}
    assert taken, "the gateway takes the write database's handle and the view document type"
    assert {(module, store, name) for module, store, name in taken if name not in ONLY[store]} == set()
