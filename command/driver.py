"""Core statements run on the driver's own connection: SQLAlchemy compiles each statement once, asyncmy runs it.

Every handler, the stock worker and the idempotency keys build their statements with SQLAlchemy Core on the
models' tables. Executed through SQLAlchemy's asyncio layer (the greenlet bridge, the adapted cursor, an
execution context and a `Result` per statement), a primary-key SELECT cost about 200 us of CPU against 60-80 us
for the same round trip on the driver (measured in-process under the pipeline bench's load; 7 statements per
createOrder), and the CPU per order is what bounds the pipeline on two cores. So a `Transaction` (command/db.py)
sends its statements here, on the connection it checked out of SQLAlchemy's pool, and ends its transaction here:
- the SQL text, the order of its parameters and their type conversions (bind and result processors) come from
  SQLAlchemy's compiler, once per statement shape (its cache key and the names of the parameters given);
- values embedded in a statement (`update(...).values({...})`, `case(...)`) are taken from each statement as
  SQLAlchemy does (the cache key's bound parameters), IN lists expand per call, scalar column defaults of an
  INSERT are filled in;
- the engine's `before_cursor_execute`/`after_cursor_execute` listeners see every statement and its `commit`
  listeners every commit (store metrics, the statement counts of tests and benchmarks), errors are raised as
  SQLAlchemy's (`IntegrityError`, `OperationalError`, with `.orig`), and a connection the server dropped is
  invalidated, as SQLAlchemy does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple, Protocol

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import greenlet_spawn

from shared.store_metrics import statement_failed

CACHE_SIZE = 500
"""Statement shapes kept compiled (the code has a few dozen; a shape per IN-list length is not one: those
expand per call)."""

Processor = Callable[[Any], Any] | None


class Session(Protocol):
    """What a statement runs on (a `Transaction`, command/db.py)."""

    pooled: PoolProxiedConnection
    driver: Any  # asyncmy's connection
    engine: Engine
    invalidated: bool

    async def invalidate(self, exc: BaseException | None = None) -> None: ...


class DriverResult:
    """What a statement gave back: its rows (attribute access and `_mapping`, as a Core `Row`), the rows it
    changed and the id it inserted."""

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any | None:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]


@cache
def _row_type(names: tuple[str, ...]) -> Any:
    """A named tuple with the result's column names, and `_mapping` as a Core row has."""
    base: Any = NamedTuple("DriverRow", [(name, Any) for name in names])  # type: ignore[misc]

    class DriverRow(base):  # type: ignore[misc,valid-type]
        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(self._fields, self, strict=True))

    return DriverRow


@dataclass(frozen=True)
class _Shape:
    """A statement compiled for the driver: its SQL, positional names, conversions and defaults."""

    compiled: Any  # SQLCompiler
    expands: bool  # IN lists rendered per call
    defaults: Mapping[str, Any]  # scalar column defaults of an INSERT's missing columns
    result_names: tuple[str, ...]
    result_types: tuple[Any, ...]
    binds: tuple[tuple[str, Processor], ...] | None
    """Each positional value's parameter and conversion, when the parameters given are all the statement takes
    (no IN list, no default, no value embedded in the statement): the values are then read straight from them."""
    result_processors: dict[tuple[Any, ...], list[Processor]]  # by the driver's column types


_shapes: dict[tuple[Any, ...], _Shape] = {}
_keys: dict[int, tuple[ClauseElement, Any]] = {}
"""The cache key of each statement object seen lately (kept, so its id is not reused meanwhile): the handlers'
statements are built once, and their key is the same on every call."""


def _cache_key(statement: ClauseElement) -> Any:
    known = _keys.get(id(statement))
    if known is not None and known[0] is statement:
        return known[1]
    key = statement._generate_cache_key()  # type: ignore[attr-defined]
    if key is None:
        raise NotImplementedError(f"an uncacheable statement cannot run on the driver path: {statement}")
    if len(_keys) >= CACHE_SIZE:
        _keys.clear()
    _keys[id(statement)] = (statement, key)
    return key


def _shape(statement: ClauseElement, dialect: Dialect, key: Any, names: tuple[str, ...], many: bool) -> _Shape:
    cache_key = (key.key, names, many)
    shape = _shapes.get(cache_key)
    if shape is None:
        compiled: Any = dialect.statement_compiler(
            dialect, statement, cache_key=key, column_keys=list(names), for_executemany=many
        )
        defaults = {}
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            default = column.default if column in compiled.insert_prefetch else column.onupdate
            if default is None or not default.is_scalar:
                raise NotImplementedError(f"{column}: only scalar column defaults run on the driver path")
            defaults[column.key] = default.arg
        expands = bool(compiled.post_compile_params or compiled.literal_execute_params)
        order = compiled.positiontup or ()
        direct = not expands and not defaults and set(order) <= set(names)
        shape = _Shape(
            compiled=compiled,
            expands=expands,
            defaults=defaults,
            result_names=tuple(c[0] for c in compiled._result_columns),
            result_types=tuple(c[3] for c in compiled._result_columns),
            binds=tuple((name, compiled._bind_processors.get(name)) for name in order) if direct else None,
            result_processors={},
        )
        if len(_shapes) >= CACHE_SIZE:
            _shapes.clear()
        _shapes[cache_key] = shape
    return shape


def _positional(shape: _Shape, given: Mapping[str, Any], extracted: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """The SQL and its positional values for one parameter set (IN lists expanded, conversions applied)."""
    compiled = shape.compiled
    if shape.binds is not None:
        return compiled.string, tuple(given[name] if p is None else p(given[name]) for name, p in shape.binds)
    values = compiled.construct_params(given, extracted_parameters=extracted, escape_names=False, _check=False)
    for name, default in shape.defaults.items():
        if name not in given:
            values[name] = default
    if shape.expands:
        expanded = compiled._process_parameters_for_postcompile(values)
        sql, order, values, processors = (
            expanded.statement,
            expanded.positiontup,
            expanded.parameters,
            expanded.processors,
        )
    else:
        sql, order, processors = compiled.string, compiled.positiontup, compiled._bind_processors
    return sql, tuple(processors[name](values[name]) if name in processors else values[name] for name in order)


async def checkout(engine: Engine) -> PoolProxiedConnection:
    """A connection of the engine's pool (its events fire: store metrics, the idle ping); a failure to connect is
    raised as SQLAlchemy's `Engine.connect` raises it (`OperationalError`, with `.orig`)."""
    try:
        return await greenlet_spawn(engine.raw_connection)
    except Exception as exc:
        dialect: Any = engine.dialect
        if not isinstance(exc, dialect.loaded_dbapi.Error):
            raise
        raise _wrapped(dialect, exc, None, None, disconnect=dialect.is_disconnect(exc, None, None)) from exc


async def run(session: Session, statement: ClauseElement, params: Mapping[str, Any] | list[Any] | None) -> DriverResult:
    """`statement` with `params` (a list: one executemany, a multi-row INSERT) on the session's connection."""
    engine = session.engine
    dialect = engine.dialect
    many = isinstance(params, list)
    sets: list[Mapping[str, Any]] = params if isinstance(params, list) else [params or {}]
    key = _cache_key(statement)
    shape = _shape(statement, dialect, key, tuple(sorted(sets[0])), many)
    positional = [_positional(shape, given, key.bindparams) for given in sets]
    sql = positional[0][0]
    args: Any = [p[1] for p in positional] if many else positional[0][1]
    events = engine._has_events  # type: ignore[attr-defined]
    cursor = session.driver.cursor()
    try:
        if events:
            engine.dispatch.before_cursor_execute(session.pooled, cursor, sql, args, None, many)  # type: ignore[arg-type]
        try:
            if many:
                await cursor.executemany(sql, args)
            else:
                await cursor.execute(sql, args)
            rows = await cursor.fetchall() if cursor.description else []
        except Exception as exc:
            statement_failed("mysql", sql)
            raise await _translated(session, exc, sql, args, cursor) from exc
        except BaseException:  # cancelled mid-statement: the session's state is unknown, it is not used again
            await session.invalidate()
            raise
        if events:
            engine.dispatch.after_cursor_execute(session.pooled, cursor, sql, args, None, many)  # type: ignore[arg-type]
        return DriverResult(_rows(shape, dialect, cursor.description, rows), cursor.rowcount, cursor.lastrowid)
    finally:
        await cursor.close()


async def commit(session: Session) -> None:
    """COMMIT, seen by the engine's `commit` listeners. A commit that failed leaves nothing open: rolled back, or
    the connection dropped."""
    if session.engine._has_events:  # type: ignore[attr-defined]
        session.engine.dispatch.commit(session.pooled)  # type: ignore[arg-type]
    try:
        await session.driver.commit()
    except Exception as exc:
        statement_failed("mysql", "COMMIT")
        error = await _translated(session, exc, "COMMIT", ())
        await rollback(session)
        if error is exc:
            raise
        raise error from exc
    except BaseException:  # cancelled mid-commit: whether it committed is unknown, the session is not used again
        await session.invalidate()
        raise


async def rollback(session: Session) -> None:
    """ROLLBACK what is open. A connection that cannot roll back is dropped (so no pooled session keeps an open
    transaction or its locks), and the caller's own error stays the one raised."""
    if session.invalidated:
        return
    try:
        await session.driver.rollback()
    except Exception:
        await session.invalidate()
    except BaseException:
        await session.invalidate()
        raise


def _rows(shape: _Shape, dialect: Dialect, description: Any, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    if not rows:
        return []
    if shape.result_names:
        names = shape.result_names
        types = tuple(column[1] for column in description)
        processors = shape.result_processors.get(types)
        if processors is None:
            processors = shape.result_processors[types] = [
                kind._cached_result_processor(dialect, type_code)
                for kind, type_code in zip(shape.result_types, types, strict=True)
            ]
    else:  # a text statement: the driver's names and values
        names, processors = tuple(column[0] for column in description), []
    row = _row_type(names)
    if not any(processors):
        return [row._make(r) for r in rows]
    return [row._make(p(v) if p else v for p, v in zip(processors, r, strict=True)) for r in rows]


async def _translated(session: Session, exc: Exception, sql: str, args: Any, cursor: Any = None) -> Exception:
    """The driver's error as SQLAlchemy raises it (IntegrityError, OperationalError, ... with `.orig`); a
    connection the server dropped is invalidated, so the pool replaces it."""
    dialect: Any = session.engine.dialect
    if not isinstance(exc, dialect.loaded_dbapi.Error):
        return exc
    disconnect = dialect.is_disconnect(exc, session.driver, cursor)
    if disconnect:
        await session.invalidate(exc)
    return _wrapped(dialect, exc, sql, args, disconnect=disconnect)


def _wrapped(dialect: Any, exc: Exception, sql: str | None, args: Any, *, disconnect: bool) -> Exception:
    return DBAPIError.instance(
        sql, args, exc, dialect.loaded_dbapi.Error, connection_invalidated=disconnect, dialect=dialect
    )
