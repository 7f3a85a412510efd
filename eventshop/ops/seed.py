"""`eventshop seed`: a realistic shop written through the real command handlers, resumable and exactly once.

Why the handlers and not INSERTs: every row then comes with its outbox events, so the relay, the stock
worker and the projector (whatever runs: `eventshop all` or separate processes) build stock reservations
and the read model exactly as they do in production. The seed only sends commands: createUser,
createProduct, createOrder, then payOrder / updateOrder / cancelOrder once the stock worker has decided.

What the seed made is recognisable from the rows themselves, which is what makes a rerun continue instead
of starting over, and what lets it refuse a database holding anything else:
- customers have their email at `@s<seed>.seed.eventshop.test`;
- products end their description with `[eventshop seed <seed> #<index>]`;
- orders are placed with the idempotency key `eventshop-seed:<seed>:order:<index>`, claimed in the
  order's own transaction: an order and its key commit together, so none is placed twice. The keys are kept
  for a century (the relay purges expired keys, and a purged key would let a rerun place its order again);
- follow-ups are derived from each order's current status, and the state machine refuses a second pay or
  a repeated move, so they need no keys.
One seed runs per database at a time (a MySQL named lock), so nothing is planned twice concurrently.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

from command.db import WriteDatabase
from command.handlers.cancel_order import CancelOrder, cancel_order
from command.handlers.create_order import CreateOrder, RequestedLine, create_order
from command.handlers.create_product import CreateProduct, create_product
from command.handlers.create_user import CreateUser, create_user
from command.handlers.pay_order import PayOrder, pay_order
from command.handlers.update_order import UpdateOrder, update_order
from command.idempotency import Idempotency
from command.models import OrderStatus
from eventshop.ops.progress import NoProgress, Progress
from eventshop.ops.seed_data import (
    PRODUCT_MARKER,
    CustomerSpec,
    Fate,
    OrderSpec,
    ProductSpec,
    ShopShape,
    customer,
    demand,
    email_domain,
    marker_pattern,
    next_steps,
    product,
    product_marker,
)
from shared.errors import Conflict, DomainError, ErrorCode, InvalidState, NotFound
from shared.events import OrderSnapshot, ProductSnapshot

T = TypeVar("T")
KEY_TTL_SECONDS = 100 * 365 * 24 * 3600.0
ROLLED_BACK = {1205, 1213}
"""Lock wait timeout, deadlock: MySQL rolled the transaction back."""
CONNECTION_LOST = {1053, 1927, 2002, 2003, 2006, 2013, 2055}
"""Server shutting down, connection killed, cannot connect, gone away, lost: a restart is waited for; a
command whose commit may have happened is checked before it runs again (see `_retrying`)."""
OUTAGE_SECONDS = 120.0
STATUS_BATCH = 1000
POLL_SECONDS = 0.2


class SeedRefused(RuntimeError):
    """The seed will not run: the database holds data it did not make, or another seed is running."""


class SeedStalled(RuntimeError):
    """Orders stay undecided: nothing consumes the outbox (no relay or no stock worker running)."""


@dataclass(frozen=True)
class SeedPlan:
    """The arguments of one seed: the same plan always describes the same shop."""

    users: int
    products: int
    orders: int
    seed: int = 1

    def __post_init__(self) -> None:
        if min(self.users, self.products, self.orders) < 0:
            raise ValueError("counts cannot be negative")
        if self.orders and not (self.users and self.products):
            raise ValueError("orders need at least one user and one product")

    @property
    def email_domain(self) -> str:
        return email_domain(self.seed)

    def order_key(self, index: int) -> str:
        return f"{self.key_prefix}{index}"

    @property
    def key_prefix(self) -> str:
        return f"eventshop-seed:{self.seed}:order:"


@dataclass
class PhaseReport:
    planned: int
    existing: int = 0
    """Already there from an earlier run (follow-ups: orders with nothing left to do: at their fate, or where
    no move takes them, such as a rejected order)."""
    created: int = 0
    """Made by this run (follow-ups: orders this run moved on)."""
    refused: Counter[str] = field(default_factory=Counter)
    """Error code -> how many commands the write model refused (a product deleted meanwhile, ...)."""


@dataclass
class SeedReport:
    phases: dict[str, PhaseReport] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    """The seed's orders per status at the end."""


@dataclass(frozen=True)
class Foreign:
    """Rows the seed did not make."""

    users: int
    products: int
    orders: int

    def __bool__(self) -> bool:
        return bool(self.users or self.products or self.orders)

    def describe(self) -> str:
        def count(n: int, noun: str) -> str:
            return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

        return f"{count(self.users, 'user')}, {count(self.products, 'product')} and {count(self.orders, 'order')}"


@dataclass(frozen=True)
class Backlog:
    """What the running processes still have to do for the commands written so far."""

    unpublished: int
    """Outbox rows the relay has not published yet."""
    undecided: int
    """Orders the stock worker has neither reserved nor rejected yet."""
    unreleased: int
    """Canceled orders whose stock is not back yet."""

    @property
    def total(self) -> int:
        return self.unpublished + self.undecided + self.unreleased


async def seed(
    db: WriteDatabase,
    plan: SeedPlan,
    *,
    progress: Progress | None = None,
    concurrency: int = 8,
    force: bool = False,
    reserve_timeout: float = 120.0,
) -> SeedReport:
    """Create what `plan` describes and is not there yet: users, products, orders, then their follow-ups."""
    seeder = Seeder(db, plan, progress or NoProgress(), concurrency, reserve_timeout)
    async with only_seed(db):
        if not force and (found := await foreign(db, plan)):
            raise SeedRefused(
                f"the database holds {found.describe()} that `eventshop seed --seed {plan.seed}` did not make "
                f"(its users have emails @{plan.email_domain}); seed an empty database, or pass --force "
                "to seed beside them"
            )
        return await seeder.run()


@asynccontextmanager
async def only_seed(db: WriteDatabase) -> AsyncIterator[None]:
    """One seed per database at a time: two would plan the same products twice (products have no unique key)."""
    name = f"eventshop.seed.{db.engine.url.database}"[:64]
    conn = await db.engine.connect()
    try:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        if (await conn.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": name})).scalar() != 1:
            raise SeedRefused("another `eventshop seed` is running against this database")
        yield
    finally:
        # The session ends with the connection (never back to the pool), and the server frees the lock with it.
        with suppress(Exception):
            await conn.invalidate()
        with suppress(Exception):
            await conn.close()


async def foreign(db: WriteDatabase, plan: SeedPlan) -> Foreign:
    ours = {"email": f"%@{plan.email_domain}", "marker": marker_pattern(plan.seed)}
    async with db.engine.connect() as conn:

        async def count(sql: str) -> int:
            return int((await conn.execute(text(sql), ours)).scalar_one())

        return Foreign(
            users=await count("SELECT COUNT(*) FROM users WHERE email NOT LIKE :email"),
            products=await count("SELECT COUNT(*) FROM products WHERE description NOT LIKE :marker"),
            orders=await count(
                "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS "
                "(SELECT 1 FROM users u WHERE u.id = o.user_id AND u.email LIKE :email)"
            ),
        )


async def backlog(db: WriteDatabase) -> Backlog:
    async with db.engine.connect() as conn:

        async def count(sql: str) -> int:
            return int((await conn.execute(text(sql))).scalar_one())

        return Backlog(
            unpublished=await count("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL"),
            undecided=await count("SELECT COUNT(*) FROM orders WHERE status = 'CREATED'"),
            unreleased=await count("SELECT COUNT(*) FROM orders WHERE status = 'CANCELED' AND stock_held"),
        )


async def wait_settled(db: WriteDatabase, *, timeout: float, progress: Progress | None = None) -> Backlog:
    """Until the relay has published every outbox row and the stock worker has nothing left to decide or
    release (its own events are outbox rows too); returns what is left when `timeout` runs out first."""
    progress = progress or NoProgress()
    deadline = time.monotonic() + timeout
    left = await _retrying(partial(backlog, db))
    total, shown = left.total, 0
    progress.start("settling", total=total)
    while left.total and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        left = await _retrying(partial(backlog, db))
        if (reached := max(total - left.total, 0)) > shown:  # the stock worker's own events may add some
            progress.advance("settling", reached - shown)
            shown = reached
    return left


class Seeder:
    def __init__(
        self, db: WriteDatabase, plan: SeedPlan, progress: Progress, concurrency: int, reserve_timeout: float
    ) -> None:
        self.db = db
        self.plan = plan
        self.progress = progress
        self.concurrency = concurrency
        self.reserve_timeout = reserve_timeout
        self.report = SeedReport()
        self.shape = ShopShape.of(plan.seed, max(plan.users, 1), max(plan.products, 1))

    async def run(self) -> SeedReport:
        orders = [self.shape.order(i) for i in range(self.plan.orders)]
        users = await self.users([customer(self.plan.seed, i) for i in range(self.plan.users)])
        units = demand(orders)
        products = await self.products([product(self.plan.seed, i, units[i]) for i in range(self.plan.products)])
        placed = await self.orders(orders, users, products)
        await self.follow_ups(placed)
        self.report.statuses = await self._statuses_of(list(placed))
        return self.report

    # --- users and products -------------------------------------------------------------------------------------

    async def users(self, specs: list[CustomerSpec]) -> dict[int, int]:
        """Customer index -> user id, creating the customers not there yet."""
        phase = self._phase("users", len(specs))
        known = await _retrying(self._seeded_users)
        missing = [s for s in specs if s.email not in known]
        self._already(phase, "users", len(specs) - len(missing))

        async def create(spec: CustomerSpec) -> None:
            try:
                await _retrying(lambda: create_user(self.db, CreateUser(spec.name, spec.email)))
            except Conflict:  # an attempt whose answer was lost with the connection did commit
                phase.existing += 1
            else:
                phase.created += 1
            self.progress.advance("users", 1)

        await each(missing, create, self.concurrency)
        known = await _retrying(self._seeded_users)
        return {s.index: known[s.email] for s in specs if s.email in known}

    async def _seeded_users(self) -> dict[str, int]:
        """Email -> id of every user with an email of this seed (soft-deleted ones too: they count as made)."""
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id, email FROM users WHERE email LIKE :pattern"),
                {"pattern": f"%@{self.plan.email_domain}"},
            )
            return {email: int(user_id) for user_id, email in rows}

    async def products(self, specs: list[ProductSpec]) -> dict[int, int]:
        """Product index -> product id, creating the products not there yet."""
        phase = self._phase("products", len(specs))
        known = await _retrying(self._seeded_products)
        missing = [s for s in specs if s.index not in known]
        self._already(phase, "products", len(specs) - len(missing))

        async def create(spec: ProductSpec) -> None:
            command = CreateProduct(spec.name, spec.price, spec.stock, spec.description)
            known[spec.index] = await _retrying(
                lambda: _id_of(create_product(self.db, command)),
                committed=lambda: self._seeded_product(spec.index),  # products have no unique key to say so
            )
            phase.created += 1
            self.progress.advance("products", 1)

        await each(missing, create, self.concurrency)
        return {s.index: known[s.index] for s in specs if s.index in known}

    async def _seeded_product(self, index: int) -> int | None:
        async with self.db.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT id FROM products WHERE description LIKE :tail ORDER BY id LIMIT 1"),
                {"tail": f"%{product_marker(self.plan.seed, index)}"},
            )
            product_id = found.scalar()
        return None if product_id is None else int(product_id)

    async def _seeded_products(self) -> dict[int, int]:
        """Index -> id of every product carrying this seed's marker (soft-deleted ones too)."""
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id, description FROM products WHERE description LIKE :pattern"),
                {"pattern": marker_pattern(self.plan.seed)},
            )
            found: dict[int, int] = {}
            for product_id, description in rows:
                if (m := PRODUCT_MARKER.search(description)) and int(m.group(1)) == self.plan.seed:
                    found.setdefault(int(m.group(2)), int(product_id))
            return found

    # --- orders -------------------------------------------------------------------------------------------------

    async def orders(
        self, specs: list[OrderSpec], users: dict[int, int], products: dict[int, int]
    ) -> dict[int, OrderSpec]:
        """Order id -> its spec, for every planned order now placed (by this run or an earlier one)."""
        phase = self._phase("orders", len(specs))
        placed = await _retrying(self._placed_orders)
        missing = [s for s in specs if s.index not in placed]
        self._already(phase, "orders", len(specs) - len(missing))

        async def place(spec: OrderSpec) -> None:
            try:
                order_id = await self._place(spec, users, products)
            except DomainError as exc:
                phase.refused[exc.code.value] += 1
            else:
                placed[spec.index] = order_id
                phase.created += 1
            self.progress.advance("orders", 1)

        await each(missing, place, self.concurrency)
        by_index = {s.index: s for s in specs}
        return {order_id: by_index[i] for i, order_id in placed.items() if i in by_index}

    async def _place(self, spec: OrderSpec, users: dict[int, int], products: dict[int, int]) -> int:
        if spec.customer not in users or any(p not in products for p, _ in spec.lines):
            raise NotFound(f"order #{spec.index}: its customer or a product was not created")
        command = CreateOrder(users[spec.customer], tuple(RequestedLine(products[p], q) for p, q in spec.lines))
        idem = Idempotency.of("createOrder", self.plan.order_key(spec.index), command, KEY_TTL_SECONDS)
        order = await _retrying(lambda: create_order(self.db, command, idem))
        return order.id

    async def _placed_orders(self) -> dict[int, int]:
        """Order index -> order id of every order placed with this seed's keys."""
        prefix = self.plan.key_prefix
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT `key`, JSON_UNQUOTE(JSON_EXTRACT(response, '$.id')) FROM idempotency_keys "
                    "WHERE operation = 'createOrder' AND `key` LIKE :pattern"
                ),
                {"pattern": f"{prefix}%"},
            )
            return {int(key[len(prefix) :]): int(order_id) for key, order_id in rows if order_id is not None}

    # --- follow-ups ---------------------------------------------------------------------------------------------

    async def follow_ups(self, placed: dict[int, OrderSpec]) -> None:
        """Pay, fulfil or cancel each order as planned, once the stock worker has decided it."""
        waiting = {order_id: spec for order_id, spec in placed.items() if spec.fate is not Fate.RESERVED}
        phase = self._phase("follow-ups", len(waiting))
        self._already(phase, "follow-ups", 0)
        last_move = time.monotonic()
        while waiting:
            statuses = await _retrying(partial(self._statuses, list(waiting)))
            decided = [
                (order_id, waiting.pop(order_id), OrderStatus(status))
                for order_id, status in statuses.items()
                if status != OrderStatus.CREATED
            ]
            for order_id in [i for i in waiting if i not in statuses]:  # deleted meanwhile: nothing to do
                del waiting[order_id]
                phase.refused["NOT_FOUND"] += 1
                self.progress.advance("follow-ups", 1)
            if decided:
                await each(decided, lambda found: self._follow_up(phase, *found), self.concurrency)
                last_move = time.monotonic()
            elif waiting and time.monotonic() - last_move > self.reserve_timeout:
                raise SeedStalled(
                    f"{len(waiting)} order(s) still CREATED after {self.reserve_timeout:.0f} s: are a relay and a "
                    "stock worker running (`eventshop all`)? Run the seed again to continue."
                )
            elif waiting:
                await asyncio.sleep(POLL_SECONDS)

    async def _follow_up(self, phase: PhaseReport, order_id: int, spec: OrderSpec, status: OrderStatus) -> None:
        """Step by step to the order's fate. A refused step says where the order really is: an earlier attempt
        committed (its answer lost with the connection), or someone else moved it; go on from there."""
        needed, current = bool(next_steps(status, spec.fate)), status
        try:
            while steps := next_steps(current, spec.fate):
                try:
                    current = (await _retrying(partial(self._move, order_id, spec, steps[0]))).status
                except InvalidState as exc:
                    if (actual := OrderStatus(exc.extensions["status"])) == current:
                        raise
                    current = actual
        except DomainError as exc:  # deleted meanwhile, say
            phase.refused[exc.code.value] += 1
        else:
            if not needed:
                phase.existing += 1
            elif current.value == spec.fate.value:
                phase.created += 1
            else:
                phase.refused[ErrorCode.INVALID_STATE.value] += 1  # someone else took it elsewhere
        self.progress.advance("follow-ups", 1)

    async def _move(self, order_id: int, spec: OrderSpec, step: OrderStatus) -> OrderSnapshot:
        if step is OrderStatus.PAID:
            return await pay_order(self.db, PayOrder(order_id, spec.payment_method))
        if step is OrderStatus.CANCELED:
            return await cancel_order(self.db, CancelOrder(order_id, spec.cancel_reason))
        return await update_order(self.db, UpdateOrder(order_id, step))

    async def _statuses(self, order_ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        async with self.db.engine.connect() as conn:
            for start in range(0, len(order_ids), STATUS_BATCH):
                chunk = ", ".join(str(int(i)) for i in order_ids[start : start + STATUS_BATCH])
                rows = await conn.execute(text(f"SELECT id, status FROM orders WHERE id IN ({chunk})"))
                found.update((int(order_id), str(status)) for order_id, status in rows)
        return found

    async def _statuses_of(self, order_ids: Sequence[int]) -> Counter[str]:
        return Counter((await _retrying(partial(self._statuses, order_ids))).values())

    # --- reporting ----------------------------------------------------------------------------------------------

    def _phase(self, label: str, planned: int) -> PhaseReport:
        self.report.phases[label] = phase = PhaseReport(planned)
        self.progress.start(label, total=planned)
        return phase

    def _already(self, phase: PhaseReport, label: str, count: int) -> None:
        phase.existing += count
        self.progress.advance(label, count)


async def each(items: Iterable[T], work: Callable[[T], Awaitable[None]], concurrency: int) -> None:
    """`work` on every item, at most `concurrency` at once; the first failure stops the others and is raised."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    tasks = [asyncio.create_task(worker()) for _ in range(max(concurrency, 1))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _transient(exc: BaseException) -> bool:
    args: tuple[Any, ...] = getattr(getattr(exc, "orig", None), "args", ())
    code = args[0] if args else None
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated or code in ROLLED_BACK | CONNECTION_LOST)


async def _retrying(
    call: Callable[[], Awaitable[T]], *, committed: Callable[[], Awaitable[T | None]] | None = None
) -> T:
    """`call` again after a deadlock, or until a lost MySQL is back (up to OUTAGE_SECONDS).

    A lost connection may have lost only the answer of a commit. Users (unique email), orders (idempotency
    key) and follow-ups (the state machine) say so themselves when run again; for the rest `committed`
    looks for the first attempt's effect before the command runs twice."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_delay(OUTAGE_SECONDS),
        wait=wait_random_exponential(multiplier=0.05, max=5),
        reraise=True,
    ):
        with attempt:
            if committed is not None and attempt.retry_state.attempt_number > 1:
                if (earlier := await committed()) is not None:
                    return earlier
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover


async def _id_of(created: Awaitable[ProductSnapshot]) -> int:
    return (await created).id
