"""GraphQL objects from aggregate snapshots: a field is copied from the snapshot's field of the same name
(`by_name`), so a type declares its fields and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import strawberry
from strawberry.types.base import StrawberryList, StrawberryOptional, get_object_definition, has_object_definition
from strawberry.types.private import is_private

T = TypeVar("T")
Convert = Callable[[Any], Any]


def by_name(cls: type[T], source: Any, **given: Any) -> T:
    """An object of a GraphQL type whose fields are the same-named fields of `source` (a snapshot): ids as
    strings, nested objects alike; `given` are the fields it does not hold (private ones)."""
    graphql_type: Any = cls
    values = {name: convert(getattr(source, name)) for name, convert in _copied(graphql_type) if name not in given}
    return cls(**values, **given)


@cache
def _copied(cls: Any) -> tuple[tuple[str, Convert], ...]:
    """The fields of a GraphQL type that are data (not resolvers, not private), and how each is copied."""
    return tuple(
        (field.python_name, _copy(field.type))
        for field in get_object_definition(cls, strict=True).fields
        if field.base_resolver is None and not is_private(field.type)
    )


def _copy(graphql_type: Any) -> Convert:
    if graphql_type is strawberry.ID:
        return lambda value: strawberry.ID(str(value))
    if isinstance(graphql_type, StrawberryOptional):
        inner = _copy(graphql_type.of_type)
        return lambda value: None if value is None else inner(value)
    if isinstance(graphql_type, StrawberryList):
        item = _copy(graphql_type.of_type)
        return lambda values: [item(value) for value in values]
    if has_object_definition(graphql_type):
        return lambda value: by_name(graphql_type, value)
    return _same


def _same(value: Any) -> Any:
    return value
