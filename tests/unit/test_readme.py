"""The README stays true: its GraphQL examples validate against the schema, every setting is documented,
and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from graphql import build_schema, parse, validate

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
EXAMPLES = re.findall(r"```graphql\n(.*?)```", README, re.DOTALL)


def test_the_readme_has_graphql_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_each_graphql_example_is_valid_against_the_schema(example: str) -> None:
    schema = build_schema((ROOT / "schema.graphql").read_text())
    assert validate(schema, parse(example)) == []


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README.split("<!-- settings-table", 1)[1].split("-->", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", table, re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in README and "make run" in README
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
