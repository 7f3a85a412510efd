"""Idempotency keys: a retried createOrder/payOrder returns the first result instead of acting twice.

The key is claimed in the same transaction as the command, so the stored response and the
command's effects commit together. A concurrent retry with the same key waits on the row lock
and then finds the stored response.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from command.db import Transaction, is_duplicate_key
from command.models import IdempotencyKey, db_now
from shared.errors import BadUserInput, Conflict
from shared.events import OrderSnapshot

MAX_KEY_LENGTH = 255
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
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise BadUserInput(f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} characters", field="idempotencyKey")
        canonical = json.dumps(asdict(request), sort_keys=True, default=str)
        return cls(operation, key, hashlib.sha256(canonical.encode()).hexdigest(), ttl_seconds)


async def recall(tx: Transaction, idem: Idempotency | None) -> OrderSnapshot | None:
    """The stored response of an earlier call with this key, or None if this call should act."""
    if idem is None:
        return None
    now = db_now()
    stmt = (
        select(IdempotencyKey)
        .where(IdempotencyKey.operation == idem.operation, IdempotencyKey.key == idem.key)
        .with_for_update()
    )
    row = (await tx.session.execute(stmt)).scalars().first()
    if row is not None and row.expires_at <= now:
        await tx.session.execute(
            delete(IdempotencyKey).where(
                col(IdempotencyKey.operation) == idem.operation, col(IdempotencyKey.key) == idem.key
            )
        )
        row = None
    if row is None:
        # Claim the key now: a concurrent call with the same key blocks here until this one commits.
        tx.session.add(
            IdempotencyKey(
                operation=idem.operation,
                key=idem.key,
                request_hash=idem.request_hash,
                response={},
                created_at=now,
                expires_at=now + timedelta(seconds=idem.ttl_seconds),
            )
        )
        await tx.session.flush()
        return None
    if row.request_hash != idem.request_hash:
        raise Conflict("idempotencyKey was already used for a different request", field="idempotencyKey")
    return OrderSnapshot.model_validate(row.response)


async def remember(tx: Transaction, idem: Idempotency | None, response: OrderSnapshot) -> None:
    if idem is None:
        return
    row = await tx.session.get(IdempotencyKey, (idem.operation, idem.key))
    assert row is not None
    row.response = response.model_dump(mode="json")


async def retry_on_key_race(call: Callable[[], Awaitable[T]]) -> T:
    """Two first calls with one key: the loser's INSERT collides after the winner commits; run it again
    and it finds the stored response."""
    try:
        return await call()
    except IntegrityError as exc:
        if not is_duplicate_key(exc, "PRIMARY"):
            raise
        return await call()
