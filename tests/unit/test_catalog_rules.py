"""The rules of customers and products, with no service: what a valid name, email, price, stock and description
are, that setting what is already there is no change, and that the stock on a shelf never goes below zero."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from command.domain.product import NewProduct, Product, ProductChanges
from command.domain.user import NewUser, User, UserChanges
from shared.events import ProductCreated, ProductDeleted, ProductUpdated, UserCreated, UserDeleted, UserUpdated
from tests.doubles import refused

OPENING = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LATER = OPENING + timedelta(minutes=5)


def grace() -> User:
    user, _ = NewUser.register("  Grace Hopper ", "Grace@Example.COM", OPENING).created(3)
    return user


def lamp() -> Product:
    product, _ = NewProduct.of("Desk lamp", " LED ", "25", 4, OPENING).created(5)
    return product


def test_a_customer_registers_changes_their_name_and_leaves() -> None:
    user, created = NewUser.register("  Grace Hopper ", "Grace@Example.COM", OPENING).created(3)
    assert isinstance(created, UserCreated) and created.data == user.state
    assert (user.id, user.version, user.state.name, user.state.email) == (3, 1, "Grace Hopper", "grace@example.com")

    (updated,) = user.change(UserChanges.of("Grace B. Hopper", None), LATER, expected_version=1)
    assert isinstance(updated, UserUpdated)
    assert (user.version, user.state.name, user.state.updated_at) == (2, "Grace B. Hopper", LATER)
    # Setting what is already there (the email written another way, too) is not a change.
    assert user.change(UserChanges.of("Grace B. Hopper", "GRACE@example.com"), LATER) == []
    assert user.version == 2
    refused(lambda: user.change(UserChanges.of("New", None), LATER, 1), code="CONFLICT", actual_version=2)

    deleted = user.delete(LATER)
    assert isinstance(deleted, UserDeleted) and user.state.deleted_at == LATER and user.version == 3


def test_each_change_keeps_its_event_until_the_save_takes_them_once() -> None:
    user, created = NewUser.register("Grace Hopper", "grace@example.com", OPENING).created(3)
    (renamed,) = user.change(UserChanges.of("Grace B. Hopper", None), LATER)
    user.change(UserChanges.of("Grace B. Hopper", None), LATER)  # no change, no event

    assert user.collect_events() == [created, renamed]
    assert user.collect_events() == []
    deleted = user.delete(LATER)
    assert user.collect_events() == [deleted]


@pytest.mark.parametrize(
    ("name", "email", "field"),
    [
        ("", "a@example.com", "name"),
        ("   ", "a@example.com", "name"),
        ("x" * 256, "a@example.com", "name"),
        ("Ann", "not-an-email", "email"),
        ("Ann", "", "email"),
        ("Ann", "a@b", "email"),
        ("Ann", "two@@example.com", "email"),
    ],
)
def test_a_customer_needs_a_name_and_a_valid_email(name: str, email: str, field: str) -> None:
    refused(lambda: NewUser.register(name, email, OPENING), code="BAD_USER_INPUT", field=field)
    refused(lambda: UserChanges.of(name if field == "name" else None, email if field == "email" else None),
            code="BAD_USER_INPUT", field=field)  # fmt: skip


def test_an_update_names_something_to_change() -> None:
    refused(lambda: UserChanges.of(None, None), code="BAD_USER_INPUT", field="input")
    refused(lambda: ProductChanges.of(), code="BAD_USER_INPUT", field="input")


def test_a_product_is_stocked_repriced_and_taken_off_the_shelf() -> None:
    product, created = NewProduct.of("  Desk lamp ", " LED ", "25", 4, OPENING).created(5)
    assert isinstance(created, ProductCreated)
    assert (product.state.name, product.state.description, product.state.price) == (
        "Desk lamp",
        "LED",
        Decimal("25.00"),
    )

    (repriced,) = product.change(ProductChanges.of(price="19.9"), LATER, expected_version=1)
    assert isinstance(repriced, ProductUpdated) and repriced.data.price == Decimal("19.90") and product.version == 2
    assert product.change(ProductChanges.of(price=Decimal("19.90"), stock=4), LATER) == []  # nothing new
    # All or nothing: one bad field refuses the whole change.
    refused(lambda: ProductChanges.of(name="Stool", stock=-1), code="BAD_USER_INPUT", field="stock")

    deleted = product.delete(LATER)
    assert isinstance(deleted, ProductDeleted) and not product.available and product.state.stock == 4


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"price": "0"}, "price"),
        ({"price": "-1.00"}, "price"),
        ({"price": "10000000000.00"}, "price"),
        ({"price": "10.505"}, "price"),
        ({"stock": -1}, "stock"),
        ({"stock": 2**31}, "stock"),
        ({"description": "x" * 10_001}, "description"),
    ],
)
def test_an_invalid_product_is_bad_user_input_naming_the_field(fields: dict[str, Any], field: str) -> None:
    product = {"name": "Widget", "description": "", "price": "5.00", "stock": 1, **fields}
    refused(lambda: NewProduct.of(now=OPENING, **product), code="BAD_USER_INPUT", field=field)
    refused(lambda: ProductChanges.of(**fields), code="BAD_USER_INPUT", field=field)


def test_a_description_up_to_the_limit_is_kept_whole() -> None:
    longest = "d" * 10_000
    assert NewProduct.of("Widget", f"  {longest}  ", "5.00", 1, OPENING).description == longest
    assert NewProduct.of("Widget", "", "5.00", 1, OPENING).description == ""
    (updated,) = lamp().change(ProductChanges.of(description=longest), LATER)
    assert updated.data.description == longest


def test_the_shelf_never_goes_below_zero() -> None:
    product = lamp()
    assert product.take(4, order_id=1, now=LATER).data.stock == 0
    refused(lambda: product.take(1, order_id=2, now=LATER), code="INSUFFICIENT_STOCK", available=0)
    assert (product.stock, product.version) == (0, 2)
    assert product.give_back(4, order_id=1, now=LATER).data.stock == 4


def test_the_rules_keep_aware_utc_times() -> None:
    with pytest.raises(ValueError):
        grace().change(UserChanges.of("Naive", None), datetime(2026, 3, 1, 9, 0))
