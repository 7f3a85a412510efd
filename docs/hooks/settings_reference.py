"""The configuration reference, generated from `shared/settings.py`: a mkdocs hook.

`docs/configuration.md` holds the marker below; every build replaces it with a table of every field of
`Settings` (environment variable, type, default, description), so the page cannot fall behind the code.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from shared.settings import Settings

MARKER = "<!-- settings-reference -->"


def env_name(name: str, field: FieldInfo) -> str:
    return (field.alias or name).upper()


def type_name(annotation: Any) -> str:
    """`str`, `float`, `Path or None`, `"mark" or "delete"` ... (no `|`: a table cell would end there)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " or ".join(f'"{value}"' for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in typing.get_args(annotation))
    return "None" if annotation is type(None) else annotation.__name__


def default_text(field: FieldInfo) -> str:
    value = field.default
    if value is PydanticUndefined or value is None:
        return "(unset)"
    if isinstance(value, Path) and value.is_relative_to(Path.home()):
        value = Path("~") / value.relative_to(Path.home())
    if isinstance(value, bool):
        value = str(value).lower()
    return f"`{value}`" if str(value) else "(empty)"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        parts = (env_name(name, field), type_name(field.annotation), default_text(field), field.description or "")
        rows.append("| `{}` | `{}` | {} | {} |".format(*(cell(part) for part in parts)))
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(MARKER, settings_table()) if MARKER in markdown else markdown
