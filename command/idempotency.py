"""Idempotency keys: a retried createOrder/payOrder returns the first result instead of acting twice.

The key costs two statements, in the command's own transaction, so the stored response and the command's
effects commit together: an `INSERT IGNORE` claims it (one row inserted: this call acts) and an `UPDATE` stores
the response at the end. Only when the key exists (a retry: the rare path) is the row read: InnoDB's duplicate
check made the claim wait until a concurrent first call with the key committed or rolled back, so what the read
sees is committed. A failed command rolls its claim back, so it never burns the key; an expired key is taken
over by the one call whose `UPDATE ... WHERE expires_at <= now` finds it still expired.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Insert, Select, Table, Update, bindparam, insert, select, update
from sqlalchemy.exc import OperationalError

from command.db import Transaction, is_deadlock
from command.models import IdempotencyKey, db_now
from command.validation import MAX_IDEMPOTENCY_KEY
from shared.errors import BadUserInput, Conflict
from shared.events import OrderSnapshot

KEYS: Table = IdempotencyKey.__table__  # type: ignore[attr-defined]
ATTEMPTS = 3
T = TypeVar("T")


@dataclass(frozen=True)
class Idempotency:
    operation: str
    key: str
    request_hash: str
    ttl_seconds: float

    @classmethod
    def of(cls, operation: str, key: str | None, request: Any, ttl_seconds: float) -> Idempotency | None:
        if key is None:
            return None
        if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
            raise BadUserInput(f"idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY} characters", field="idempotencyKey")
        canonical = json.dumps(asdict(request), sort_keys=True, default=str)
        return cls(operation, key, hashlib.sha256(canonical.encode()).hexdigest(), ttl_seconds)


class KeyRace(Exception):
    """The key's row changed under this call (taken over or purged); the transaction is run again."""


async def recall(tx: Transaction, idem: Idempotency | None) -> OrderSnapshot | None:
    """The stored response of an earlier call with this key, or None if this call should act (it then holds
    the key until its transaction ends)."""
    if idem is None:
        return None
    now = db_now()
    claim = {"request_hash": idem.request_hash, "created_at": now, "expires_at": _expiry(idem, now)}
    inserted = await tx.execute(_claiming(), {**claim, "operation": idem.operation, "key": idem.key, "response": {}})
    if inserted.rowcount == 1:
        return None
    row = (await tx.execute(_reading(), _key(idem))).first()
    if row is None:
        raise KeyRace  # purged since the claim met it
    if row.expires_at <= now:
        if (await tx.execute(_taking_over(), {**claim, **_key(idem), "now": now})).rowcount != 1:
            raise KeyRace  # another call took it over first
        return None
    if row.request_hash != idem.request_hash:
        raise Conflict("idempotencyKey was already used for a different request", field="idempotencyKey")
    return OrderSnapshot.model_validate(row.response)


async def remember(tx: Transaction, idem: Idempotency | None, response: OrderSnapshot) -> None:
    """Store the response under the key this call claimed."""
    if idem is not None:
        await tx.execute(_remembering(), {**_key(idem), "response": response.model_dump(mode="json")})


async def retry_on_key_race(call: Callable[[], Awaitable[T]]) -> T:
    """Run the command's transaction again when it lost a race for its key: the row changed under it, or InnoDB
    made it a deadlock's victim (two calls taking over one expired key). The next run finds the winner's
    stored response."""
    for _ in range(ATTEMPTS - 1):
        try:
            return await call()
        except KeyRace:
            continue
        except OperationalError as exc:
            if not is_deadlock(exc):
                raise
    return await call()


def _key(idem: Idempotency) -> dict[str, str]:
    """The parameters of `_this_key` (named apart from the columns, as an UPDATE's WHERE must be)."""
    return {"this_operation": idem.operation, "this_key": idem.key}


def _expiry(idem: Idempotency, now: datetime) -> datetime:
    return now + timedelta(seconds=idem.ttl_seconds)


def _this_key() -> Any:
    return (KEYS.c.operation == bindparam("this_operation")) & (KEYS.c.key == bindparam("this_key"))


@cache
def _claiming() -> Insert:
    return insert(KEYS).prefix_with("IGNORE")


@cache
def _reading() -> Select[Any]:
    return select(KEYS.c.request_hash, KEYS.c.response, KEYS.c.expires_at).where(_this_key())


@cache
def _taking_over() -> Update:
    return (
        update(KEYS)
        .where(_this_key(), KEYS.c.expires_at <= bindparam("now"))
        .values(
            request_hash=bindparam("request_hash"),
            response={},
            created_at=bindparam("created_at"),
            expires_at=bindparam("expires_at"),
        )
    )


@cache
def _remembering() -> Update:
    return update(KEYS).where(_this_key()).values(response=bindparam("response"))
