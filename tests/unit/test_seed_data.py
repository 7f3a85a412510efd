"""The seeded shop's shape: the same seed always plans the same shop, and it looks like a real one."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from command.models import OrderStatus
from eventshop.ops.seed_data import CATALOGUE, Fate, ShopShape, customer, demand, next_steps, product

S = OrderStatus


def test_each_customer_product_and_order_depends_only_on_the_seed_and_its_index() -> None:
    small, large = ShopShape.of(1, 50, 20), ShopShape.of(1, 50, 20)
    assert [small.order(i) for i in range(100)] == [large.order(i) for i in range(100)]
    assert customer(1, 7) == customer(1, 7) != customer(2, 7)
    assert product(1, 3, demand=10).name == product(1, 3, demand=500).name
    assert ShopShape.of(2, 50, 20).order(0) != small.order(0)


def test_customers_have_unique_emails_at_the_seeds_own_domain() -> None:
    emails = [customer(1, i).email for i in range(5000)]
    assert len(set(emails)) == len(emails)
    assert all(e.isascii() and e.endswith("@s1.seed.eventshop.test") for e in emails)


def test_prices_lie_in_their_kinds_range_and_stock_covers_the_demand() -> None:
    lowest, highest = min(low for _, low, _ in CATALOGUE), max(high for _, _, high in CATALOGUE)
    for i in range(2000):
        item = product(1, i, demand=i)
        assert Decimal(lowest) <= item.price <= Decimal(highest) + 1
        assert item.price == item.price.quantize(Decimal("0.01"))
        assert item.stock >= i * 1.2
        assert item.description.endswith(f"[eventshop seed 1 #{i}]")


def test_orders_are_small_baskets_over_a_skewed_choice_of_customers_and_products() -> None:
    shape = ShopShape.of(1, 1000, 1000)
    orders = [shape.order(i) for i in range(10_000)]
    assert all(1 <= len(o.lines) <= 5 and len({p for p, _ in o.lines}) == len(o.lines) for o in orders)
    units = demand(orders)
    lines = Counter(p for o in orders for p, _ in o.lines)
    top_products = sum(n for _, n in lines.most_common(10)) / sum(lines.values())
    customers = Counter(o.customer for o in orders)
    top_customers = sum(n for _, n in customers.most_common(10)) / len(orders)
    assert top_products > 0.15 and top_customers > 0.05  # uniform would give 0.01 for both
    assert sum(units.values()) >= sum(lines.values())
    fates = Counter(o.fate for o in orders)
    paid = sum(fates[f] for f in (Fate.PAID, Fate.PROCESSING, Fate.SHIPPED, Fate.DELIVERED))
    assert 0.6 < paid / len(orders) < 0.8 and 0.08 < fates[Fate.CANCELED] / len(orders) < 0.16


def test_follow_ups_go_from_where_the_order_is_to_its_fate() -> None:
    assert next_steps(S.RESERVED, Fate.DELIVERED) == [S.PAID, S.PROCESSING, S.SHIPPED, S.DELIVERED]
    assert next_steps(S.SHIPPED, Fate.DELIVERED) == [S.DELIVERED]
    assert next_steps(S.DELIVERED, Fate.DELIVERED) == []
    assert next_steps(S.RESERVED, Fate.PAID) == [S.PAID]
    assert next_steps(S.RESERVED, Fate.CANCELED) == [S.CANCELED]
    assert next_steps(S.PAID, Fate.CANCELED) == []  # paid meanwhile: no longer cancelable
    assert next_steps(S.REJECTED, Fate.SHIPPED) == []
    assert next_steps(S.CANCELED, Fate.PAID) == []
