"""What a seeded shop looks like: customers, a catalogue and baskets, derived from a seed and nothing else.

Every customer, product and order draws from a random stream of its own
(`Random("eventshop-seed:<seed>:<kind>:<index>")`), so order 17 is the same basket whether a run asks for 50
orders or 100 000, and a resumed run plans exactly what the interrupted one planned. Popularity is Zipf-like:
a few customers order often and a few products sell most, as in a real shop; which ones is shuffled by the
seed, so popularity does not follow the id order. Stock covers the planned demand with a margin, so the
orders of a fresh run all reserve (and none is refused at checkout, which a rerun could not tell apart from
one never placed).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from itertools import accumulate
from random import Random

from command.models import OrderStatus, PaymentMethod

SEED_DOMAIN = "seed.eventshop.test"
"""Seeded customers have their emails here (`.test` is reserved: no mail ever leaves)."""

FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
    "Radia", "Donald", "Hedy", "Tim", "Katherine", "John", "Mary", "Niklaus", "Sophie", "Guido",
    "Anita", "Bjarne", "Joan", "Yukihiro", "Shafi", "Leslie", "Karen", "Whitfield", "Lynn", "Rasmus",
    "Amara", "Chen", "Priya", "Mateo", "Fatima", "Kwame", "Ingrid", "Luca", "Noor", "Diego",
    "Aiko", "Olga", "Tomás", "Zoë", "Björn", "Aylin", "Ravi", "Elena", "Kofi", "Mei",
    "Sven", "Lucía", "Hiroshi", "Nadia", "Omar", "Chloé", "Jonas", "Inês", "Arjun", "Freya",
)  # fmt: skip
LAST_NAMES = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen", "Dijkstra",
    "Perlman", "Knuth", "Lamarr", "Berners-Lee", "Johnson", "McCarthy", "Kenyon", "Wirth", "Wilson", "van Rossum",
    "Borg", "Stroustrup", "Clarke", "Matsumoto", "Goldwasser", "Lamport", "Spärck Jones", "Diffie", "Conway",
    "Lerdorf", "Okafor", "Wei", "Sharma", "García", "Haddad", "Mensah", "Larsen", "Rossi", "Khan", "Fernández",
    "Tanaka", "Petrova", "Müller", "Nguyen", "Andersson", "Yilmaz", "Patel", "Popescu", "Boateng", "Zhang",
    "Nilsson", "Martínez", "Sato", "Novak", "Farouk", "Dubois", "Schmidt", "Silva", "Iyer", "O'Brien",
)  # fmt: skip

# (what, lowest and highest usual price in whole currency units): prices spread log-uniformly in between.
CATALOGUE = (
    ("Wireless Headphones", 29, 349), ("Bluetooth Speaker", 19, 299), ("USB-C Charger", 9, 69),
    ("Mechanical Keyboard", 49, 229), ("Wireless Mouse", 12, 99), ("4K Monitor", 199, 899), ("Webcam", 25, 179),
    ("Power Bank", 15, 89), ("Smartwatch", 79, 499), ("Laptop Stand", 19, 119), ("Espresso Machine", 89, 1299),
    ("Chef's Knife", 19, 249), ("Cast Iron Skillet", 24, 129), ("French Press", 14, 69), ("Blender", 29, 449),
    ("Running Shoes", 49, 219), ("Rain Jacket", 39, 329), ("Wool Sweater", 29, 189), ("Backpack", 24, 199),
    ("Yoga Mat", 15, 99), ("Desk Lamp", 17, 149), ("Office Chair", 89, 899), ("Notebook", 3, 29),
    ("Fountain Pen", 9, 249), ("Board Game", 14, 89), ("Jigsaw Puzzle", 9, 49), ("Coffee Beans 1 kg", 12, 49),
    ("Green Tea", 4, 35), ("Water Bottle", 8, 49), ("Bike Light", 9, 79), ("Tent", 59, 699),
    ("Sleeping Bag", 39, 399), ("Scented Candle", 6, 45), ("Bath Towel", 9, 59), ("Plant Pot", 7, 79),
)  # fmt: skip
BRANDS = ("Acme", "Northwind", "Globex", "Initech", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Lumen", "Nordvik")
STYLES = ("Classic", "Pro", "Compact", "Eco", "Deluxe", "Essential", "Ultra", "Vintage", "Smart", "Premium", "Lite")
COLOURS = ("Black", "White", "Graphite", "Navy", "Olive", "Sand", "Red", "Silver", "Forest Green", "Charcoal")
FEATURES = (
    "Free returns within 30 days.",
    "Ships in plastic-free packaging.",
    "A bestseller in its category.",
    "Rated 4.6 out of 5 by our customers.",
    "Back in stock by popular demand.",
    "Limited edition.",
    "Ships within 24 hours.",
)
CENTS = (Decimal("0.99"), Decimal("0.49"), Decimal("0.95"), Decimal("0.00"))

LINE_COUNTS, LINE_WEIGHTS = (1, 2, 3, 4, 5), (40, 25, 17, 11, 7)
QUANTITIES, QUANTITY_WEIGHTS = (1, 2, 3, 4, 5, 10), (62, 20, 8, 4, 4, 2)
METHODS = tuple(PaymentMethod)
METHOD_WEIGHTS = (45, 15, 25, 10, 5)  # CREDIT_CARD, DEBIT_CARD, PIX, BOLETO, BANK_TRANSFER
CANCEL_REASONS = (
    "changed my mind",
    "found a better price elsewhere",
    "ordered by mistake",
    "delivery takes too long",
    "ordered the wrong size",
    "duplicate order",
)
CUSTOMER_SKEW, PRODUCT_SKEW = 0.7, 0.9
"""Zipf exponents: customers are less concentrated than best-sellers."""


class Fate(StrEnum):
    """Where an order ends up after checkout: left reserved (never paid), canceled, or paid and moved on."""

    RESERVED = "RESERVED"
    CANCELED = "CANCELED"
    PAID = "PAID"
    PROCESSING = "PROCESSING"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"


# Out of 100 orders: 18 stay reserved, 12 are canceled, 70 are paid (14 stay PAID, 10 PROCESSING,
# 14 SHIPPED, 32 DELIVERED).
FATES, FATE_WEIGHTS = tuple(Fate), (18, 12, 14, 10, 14, 32)
FULFILMENT = (
    OrderStatus.RESERVED,
    OrderStatus.PAID,
    OrderStatus.PROCESSING,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
)


@dataclass(frozen=True)
class CustomerSpec:
    index: int
    name: str
    email: str


@dataclass(frozen=True)
class ProductSpec:
    index: int
    name: str
    description: str
    price: Decimal
    stock: int


@dataclass(frozen=True)
class OrderSpec:
    index: int
    customer: int
    """The customer's index (not their user id)."""
    lines: tuple[tuple[int, int], ...]
    """(product index, quantity), distinct products."""
    fate: Fate
    payment_method: PaymentMethod
    cancel_reason: str


def stream(seed: int, kind: str, index: int | str) -> Random:
    """The random stream of one customer, product or order: independent of how many others are asked for."""
    return Random(f"eventshop-seed:{seed}:{kind}:{index}")


def email_domain(seed: int) -> str:
    return f"s{seed}.{SEED_DOMAIN}"


def product_marker(seed: int, index: int) -> str:
    """The tag ending a seeded product's description: how a rerun recognises the products it made."""
    return f"[eventshop seed {seed} #{index}]"


def marker_pattern(seed: int) -> str:
    """A LIKE pattern matching the descriptions of every product of this seed."""
    return f"%[eventshop seed {seed} #%]"


PRODUCT_MARKER = re.compile(r"\[eventshop seed (\d+) #(\d+)\]$")


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", folded.lower())


def customer(seed: int, index: int) -> CustomerSpec:
    rng = stream(seed, "user", index)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return CustomerSpec(index, f"{first} {last}", f"{_ascii(first)}.{_ascii(last)}.{index}@{email_domain(seed)}")


def product(seed: int, index: int, demand: int) -> ProductSpec:
    """A catalogue item priced like its kind; stock for `demand` planned units plus 20-100 % and a few spare."""
    rng = stream(seed, "product", index)
    what, low, high = rng.choice(CATALOGUE)
    brand, style, colour = rng.choice(BRANDS), rng.choice(STYLES), rng.choice(COLOURS)
    whole = math.floor(low * (high / low) ** rng.random())
    price = max(Decimal(whole) + rng.choice(CENTS), Decimal("0.99"))
    description = f"{style} {what.lower()} by {brand}, in {colour.lower()}. {rng.choice(FEATURES)}"
    stock = math.ceil(demand * rng.uniform(1.2, 2.0)) + rng.randint(5, 150)
    return ProductSpec(
        index, f"{brand} {style} {what}, {colour}", f"{description}\n{product_marker(seed, index)}", price, stock
    )


class Popularity:
    """Zipf-like choice of an index: the item of rank r is chosen with weight 1 / r**skew, and the seed
    decides which index holds which rank."""

    def __init__(self, count: int, skew: float, rng: Random) -> None:
        self.count = count
        self.by_rank = list(range(count))
        rng.shuffle(self.by_rank)
        self.cumulative = list(accumulate(1 / rank**skew for rank in range(1, count + 1)))

    def pick(self, rng: Random) -> int:
        return rng.choices(self.by_rank, cum_weights=self.cumulative)[0]


@dataclass(frozen=True)
class ShopShape:
    """Who buys what, for one seed and one number of customers and products."""

    seed: int
    customers: Popularity
    products: Popularity

    @classmethod
    def of(cls, seed: int, customers: int, products: int) -> ShopShape:
        return cls(
            seed,
            Popularity(customers, CUSTOMER_SKEW, stream(seed, "popularity", "customers")),
            Popularity(products, PRODUCT_SKEW, stream(seed, "popularity", "products")),
        )

    def order(self, index: int) -> OrderSpec:
        rng = stream(self.seed, "order", index)
        who = self.customers.pick(rng)
        size = min(rng.choices(LINE_COUNTS, LINE_WEIGHTS)[0], self.products.count)
        basket: list[int] = []
        while len(basket) < size:  # distinct products: the write model refuses a product twice in one order
            if (choice := self.products.pick(rng)) not in basket:
                basket.append(choice)
        lines = tuple((p, rng.choices(QUANTITIES, QUANTITY_WEIGHTS)[0]) for p in basket)
        fate = rng.choices(FATES, FATE_WEIGHTS)[0]
        return OrderSpec(index, who, lines, fate, rng.choices(METHODS, METHOD_WEIGHTS)[0], rng.choice(CANCEL_REASONS))


def demand(orders: Iterable[OrderSpec]) -> Counter[int]:
    """Units each product index is asked for by these orders."""
    units: Counter[int] = Counter()
    for order in orders:
        for product_index, quantity in order.lines:
            units[product_index] += quantity
    return units


def next_steps(status: OrderStatus, fate: Fate) -> list[OrderStatus]:
    """The moves that take an order from `status` to its fate; none when it is there or cannot get there
    (rejected, canceled, or moved past it by someone else)."""
    if fate is Fate.CANCELED:
        return [OrderStatus.CANCELED] if status in (OrderStatus.CREATED, OrderStatus.RESERVED) else []
    if status not in FULFILMENT:
        return []
    here, target = FULFILMENT.index(status), FULFILMENT.index(OrderStatus(fate.value))
    return list(FULFILMENT[here + 1 : target + 1])
