"""schema.graphql is exported from the code, and contains the public API contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
)

from gateway.schema import create_schema
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT.parent / "shared" / "api-contract.graphql"


def test_schema_file_is_in_sync_with_the_code() -> None:
    exported = (ROOT / "schema.graphql").read_text()
    assert exported == create_schema(Settings()).as_str() + "\n", "run `make schema` and commit schema.graphql"


def contract_differences(contract: GraphQLSchema, ours: GraphQLSchema) -> list[str]:
    """What the contract declares that our schema lacks or declares differently."""
    problems: list[str] = []
    for name, expected in contract.type_map.items():
        if name.startswith("__"):
            continue
        actual = ours.type_map.get(name)
        if actual is None or type(actual) is not type(expected):
            problems.append(f"type {name} missing or of another kind")
            continue
        if isinstance(expected, GraphQLEnumType):
            assert isinstance(actual, GraphQLEnumType)
            if set(expected.values) - set(actual.values):
                problems.append(f"enum {name} lacks {set(expected.values) - set(actual.values)}")
        elif isinstance(expected, GraphQLObjectType | GraphQLInputObjectType):
            assert isinstance(actual, GraphQLObjectType | GraphQLInputObjectType)
            for field_name, field in expected.fields.items():
                theirs = actual.fields.get(field_name)
                if theirs is None:
                    problems.append(f"{name}.{field_name} missing")
                    continue
                if str(theirs.type) != str(field.type):
                    problems.append(f"{name}.{field_name}: {theirs.type} instead of {field.type}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    our_arg = theirs.args.get(arg_name)  # type: ignore[union-attr]
                    if our_arg is None:
                        problems.append(f"{name}.{field_name}({arg_name}) missing")
                    elif str(our_arg.type) != str(arg.type):
                        problems.append(f"{name}.{field_name}({arg_name}): {our_arg.type} instead of {arg.type}")
                    elif arg.default_value is not None and our_arg.default_value != arg.default_value:
                        problems.append(f"{name}.{field_name}({arg_name}) default differs")
                extra_required = [
                    a
                    for a, v in getattr(theirs, "args", {}).items()
                    if a not in getattr(field, "args", {}) and str(v.type).endswith("!") and v.default_value is None
                ]
                if extra_required:
                    problems.append(f"{name}.{field_name} adds required arguments {extra_required}")
        elif isinstance(expected, GraphQLScalarType):
            continue
    return problems


@pytest.mark.skipif(not CONTRACT.exists(), reason="the team's contract file is beside the checkout")
def test_schema_contains_the_api_contract() -> None:
    contract = build_schema(CONTRACT.read_text())
    ours = build_schema((ROOT / "schema.graphql").read_text())
    assert contract_differences(contract, ours) == []


def test_the_contract_check_catches_a_drift() -> None:
    contract = build_schema("type Query { user(id: ID!): User } type User { id: ID! name: String! }")
    drifted = build_schema("type Query { user(id: String): User } type User { id: ID! }")
    assert contract_differences(contract, drifted) == [
        "Query.user(id): String instead of ID!",
        "User.name missing",
    ]
