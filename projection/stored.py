"""A view's stored form, derived from its aggregate's snapshot field by field.

Each field of the snapshot is stored under its own name and in its own form, with one exception: money (Decimal)
is integer cents, under `<name>_cents` unless the view names it otherwise (FerretDB v1 has no Decimal128; cents
also sort and range-filter exactly). Nested models (an order's items, its history) are stored the same way, as
documents. Reading turns a stored document back into the snapshot's values, so a field added to a snapshot is
stored and read back with no line written here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from shared.construct import MISSING, bare, field_of
from shared.money import from_cents, to_cents

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class StoredField:
    """One field of a snapshot model in the stored document: its name there, and its form each way."""

    name: str
    stored_name: str
    to_stored: Convert
    from_stored: Convert


class StoredForm:
    """How the fields of a snapshot model (but those in `skip`) are stored; `names` renames money fields."""

    def __init__(self, model: type[BaseModel], names: Mapping[str, str], skip: Collection[str] = ()) -> None:
        self.names = dict(names)
        self.fields = tuple(
            self._field(name, bare(info.annotation)) for name, info in model.model_fields.items() if name not in skip
        )

    def store(self, value: Any) -> dict[str, Any]:
        """The stored form of a model's fields."""
        return {f.stored_name: f.to_stored(getattr(value, f.name)) for f in self.fields}

    def read(self, stored: Any) -> dict[str, Any]:
        """The model's values of a stored document (a mapping, or an object with the stored names as attributes)."""
        values: dict[str, Any] = {}
        for f in self.fields:
            value = field_of(stored, f.stored_name)
            if value is not MISSING:
                values[f.name] = f.from_stored(value)
        return values

    def _field(self, name: str, annotation: Any) -> StoredField:
        if annotation is Decimal:
            return StoredField(name, self.names.get(name, f"{name}_cents"), _optional(to_cents), _optional(from_cents))
        to_stored, from_stored = self._forms(annotation)
        return StoredField(name, name, to_stored, from_stored)

    def _forms(self, annotation: Any) -> tuple[Convert, Convert]:
        if get_origin(annotation) in (tuple, list):
            to_item, from_item = self._forms(bare(get_args(annotation)[0]))
            return (lambda values: [to_item(v) for v in values]), (lambda values: [from_item(v) for v in values])
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested = StoredForm(annotation, self.names)
            return _optional(nested.store), _optional(nested.read)
        return _same, _same


def _optional(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def _same(value: Any) -> Any:
    return value
