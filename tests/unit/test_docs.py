"""The documentation stays true: the GraphQL examples of the README and of docs/ validate against the schema,
every setting is described and in the generated configuration reference, the site builds strictly and offline,
and CI runs the README's test command."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from graphql import build_schema, parse, validate

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PAGES = {
    path.relative_to(ROOT).as_posix(): path.read_text()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
}
EXAMPLES = [
    (f"{page}:{number}", example)
    for page, text in PAGES.items()
    for number, example in enumerate(re.findall(r"```graphql\n(.*?)```", text, re.DOTALL))
]


def settings_reference() -> ModuleType:
    path = ROOT / "docs" / "hooks" / "settings_reference.py"
    spec = importlib.util.spec_from_file_location("settings_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def examples_of(page: str) -> list[str]:
    return [example for name, example in EXAMPLES if name.rpartition(":")[0] == page]


def test_the_readme_walks_through_graphql_and_the_guide_has_every_example() -> None:
    assert len(examples_of("README.md")) >= 5
    assert len(examples_of("docs/graphql.md")) >= 10


@pytest.mark.parametrize("example", [e for _, e in EXAMPLES], ids=[name for name, _ in EXAMPLES])
def test_each_graphql_example_is_valid_against_the_schema(example: str) -> None:
    schema = build_schema((ROOT / "schema.graphql").read_text())
    assert validate(schema, parse(example)) == []


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_has_a_description(name: str) -> None:
    description = Settings.model_fields[name].description
    assert description and description.strip(), f"{name.upper()}: describe it in shared/settings.py"


def test_the_configuration_reference_lists_every_setting_with_type_and_default() -> None:
    assert "<!-- settings-reference -->" in PAGES["docs/configuration.md"]
    rows = settings_reference().settings_table().splitlines()[2:]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    assert [row[0] for row in cells] == [f"`{name.upper()}`" for name in Settings.model_fields]
    assert all(len(row) == 4 and all(row) for row in cells), "each row: variable, type, default, description"
    by_name = {row[0]: row for row in cells}
    assert by_name["`OUTBOX_COMPLETION`"][1:3] == ['`"mark" or "delete"`', "`mark`"]
    assert by_name["`JWT_SECRET`"][1:3] == ["`SecretStr or None`", "(unset)"]
    assert by_name["`CACHE_DIR`"][2] == "`~/.cache/eventshop`"
    assert by_name["`KAFKA_TOPIC_PREFIX`"][2] == "(empty)"


def test_the_site_builds_strictly_without_fetching_anything(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["theme"]["font"] is False, "Material's default font comes from Google Fonts"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    html = "".join(page.read_text() for page in tmp_path.rglob("*.html"))
    assert not re.findall(r"<(?:script|link)[^>]+(?:src|href)=\"(?:https?:)?//", html), "the site loads nothing remote"
    configuration = (tmp_path / "configuration" / "index.html").read_text()
    assert all(f"<code>{name.upper()}</code>" in configuration for name in Settings.model_fields)


def test_the_readme_links_to_pages_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert links and all((ROOT / link).is_file() for link in links), links


def test_the_readme_stays_short() -> None:
    assert len(README.encode()) <= 20_000


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in README and "make run" in README
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
