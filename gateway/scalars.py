"""The contract's scalars: Decimal travels as a string with two decimals, never a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import strawberry

from shared.money import format_money, parse_money


def _parse_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError('Decimal must be a string such as "19.99"')
    return parse_money(value)


DecimalScalar = strawberry.scalar(
    name="Decimal",
    description='Money: a decimal string with two places, e.g. "5999.99".',
    serialize=format_money,
    parse_value=_parse_decimal,
)
