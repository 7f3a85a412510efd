"""Input rules of the domain (names, emails, prices, counts); each failure is BAD_USER_INPUT naming the field.

The limits are stated here once; the write model's columns and CHECK constraints are sized from them."""

from __future__ import annotations

import re
from decimal import Decimal

from shared.errors import BadUserInput
from shared.money import MAX_AMOUNT, parse_money

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_ID = 2**63 - 1
MAX_STOCK = 2**31 - 1
MAX_QUANTITY = 10_000
MAX_ORDER_LINES = 100
MAX_NAME = 255
MAX_EMAIL = 320
MAX_DESCRIPTION = 10_000
MAX_REASON = 500
MAX_IDEMPOTENCY_KEY = 255


def parse_id(value: object, field: str = "id") -> int:
    """IDs are the write model's positive integer keys, sent as strings."""
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise BadUserInput(f"{field} must be a positive integer id", field=field)
    return int(text)


def require_text(value: str | None, field: str, *, max_length: int = MAX_NAME) -> str:
    text = limit_text(value, field, max_length=max_length)
    if not text:
        raise BadUserInput(f"{field} must not be empty", field=field)
    return text


def limit_text(value: str | None, field: str, *, max_length: int) -> str:
    """Text that may be empty; beyond the limit it is refused, never cut (the client would not know)."""
    text = (value or "").strip()
    if len(text) > max_length:
        raise BadUserInput(f"{field} must be at most {max_length} characters", field=field)
    return text


def normalize_email(value: str | None, field: str = "email") -> str:
    email = (value or "").strip().lower()
    if not EMAIL.match(email) or len(email) > MAX_EMAIL:
        raise BadUserInput(f"{field} is not a valid email address", field=field)
    return email


def require_price(value: object, field: str = "price") -> Decimal:
    try:
        price = parse_money(value)
    except ValueError as exc:
        raise BadUserInput(f"{field}: {exc}", field=field) from exc
    if price <= 0:
        raise BadUserInput(f"{field} must be greater than 0", field=field)
    if price > MAX_AMOUNT:
        raise BadUserInput(f"{field} must be at most {MAX_AMOUNT}", field=field)
    return price


def require_int(value: int, field: str, *, low: int, high: int) -> int:
    if not low <= value <= high:
        raise BadUserInput(f"{field} must be between {low} and {high}", field=field)
    return value
