"""Money is Decimal with two places on the write side and integer cents in MongoDB."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("9999999999.99")  # DECIMAL(12,2)


def parse_money(value: object) -> Decimal:
    """Exact parse: raises ValueError for non-finite values or more than two decimals."""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a decimal amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        raise ValueError(f"at most two decimals: {value!r}")
    return amount.quantize(CENT)


def to_cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def from_cents(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENT)


def format_money(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))
