"""`eventshop dlq ...`, `eventshop projection rebuild`, `eventshop verify` and `eventshop seed`: typer commands
over the ops modules.

The commands only parse options, open the connections and render with rich; the work is in `dlq`,
`rebuild`, `verify` and `seed`, which tests call directly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from rich.console import Console
from rich.json import JSON
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from command.db import WriteDatabase
from eventshop.ops.dlq import DeadLetter, DeadLetters, RedriveLog, as_dlq_topic, redrive
from eventshop.ops.rebuild import CatchUpFailed, RebuildReport, Source, rebuild
from eventshop.ops.seed import SeedPlan, SeedRefused, SeedReport, SeedStalled, wait_settled
from eventshop.ops.seed import seed as seed_shop
from eventshop.ops.topics import reader
from eventshop.ops.verify import Difference, settled_differences
from projection.store import Doc
from shared.kafka.producer import make_producer
from shared.kafka.topics import TopicReport, describe_topics, ensure_topics
from shared.logging import configure_logging
from shared.settings import Settings

T = TypeVar("T")

dlq_app = typer.Typer(help="Inspect dead-letter topics and send their messages back.", no_args_is_help=True)
projection_app = typer.Typer(help="Maintain the MongoDB read model.", no_args_is_help=True)
topics_app = typer.Typer(help="The Kafka topics of this environment: check and create.", no_args_is_help=True)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _run(work: Callable[[Settings], Coroutine[Any, Any, T]], settings: Settings | None = None) -> T:
    return asyncio.run(work(settings or _settings()))


@asynccontextmanager
async def _databases(settings: Settings) -> AsyncIterator[tuple[WriteDatabase, AsyncDatabase[Doc]]]:
    """The write database and the read-model database, without touching indexes."""
    write_db = WriteDatabase(settings.mysql_dsn, pool_size=2)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(settings.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    try:
        yield write_db, client[settings.mongo_database]
    finally:
        await client.close()
        await write_db.dispose()


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode(errors="replace")


def _short(text: str | None, width: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


# --- dlq ------------------------------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    topic: str | None = typer.Option(
        None, "--topic", "-t", help="a DLQ topic (or the topic it belongs to): its messages"
    ),
    limit: int = typer.Option(100, min=1, help="show at most this many messages (the newest)"),
) -> None:
    """Messages per DLQ topic; with --topic, the messages of that topic and why they failed."""
    console = Console()

    async def work(settings: Settings) -> None:
        async with _databases(settings) as (write_db, _), reader(settings) as consumer:
            letters, log = DeadLetters(settings, consumer), RedriveLog(write_db)
            if topic is None:
                counts = await letters.counts()
                table = Table("DLQ topic", "messages", "redriven", title="dead-letter topics")
                for name, count in counts.items():
                    table.add_row(name, str(count), str(len(await log.redriven(name))))
                console.print(table)
                return
            name = as_dlq_topic(settings, topic)
            messages = await letters.messages(name)
            done = await log.redriven(name)
            newest = sorted(sorted(messages, key=lambda m: m.timestamp)[-limit:], key=lambda m: m.position)
            console.print(_messages_table(name, newest, done, total=len(messages)))

    _run(work)


def _messages_table(topic: str, messages: list[DeadLetter], redriven: set[tuple[int, int]], total: int) -> Table:
    table = Table(
        "partition/offset",
        "original topic",
        "key",
        "error type",
        "error message",
        "attempts",
        "consumer",
        "redriven",
        title=f"{topic}: {total} message(s)" + (f", newest {len(messages)} shown" if len(messages) < total else ""),
    )
    for m in messages:
        table.add_row(
            f"{m.partition}/{m.offset}",
            m.original_topic or "?",
            _short(_text(m.key), 24),
            m.error_type or "",
            _short(m.error_message),
            m.attempts or "",
            m.consumer or "",
            "yes" if m.position in redriven else "no",
        )
    return table


@dlq_app.command("show")
def dlq_show(
    topic: str = typer.Argument(..., help="the DLQ topic (or the topic it belongs to)"),
    partition: int = typer.Argument(..., min=0),
    offset: int = typer.Argument(..., min=0),
) -> None:
    """One dead-lettered message: its headers and its value (pretty-printed when it is JSON)."""
    console = Console()
    settings = _settings()
    name = as_dlq_topic(settings, topic)

    async def work(settings: Settings) -> DeadLetter | None:
        async with reader(settings) as consumer:
            return await DeadLetters(settings, consumer).message(name, partition, offset)

    message = _run(work, settings)
    if message is None:
        console.print(f"[red]{name} has no message at partition {partition}, offset {offset}[/red]")
        raise typer.Exit(1)
    stamp = datetime.fromtimestamp(message.timestamp / 1000, UTC).isoformat(timespec="milliseconds")
    console.print(f"[bold]{name}[/bold] partition {partition} offset {offset}, dead-lettered at {stamp}")
    console.print(f"key: {_text(message.key)!r}")
    headers = Table("header", "value", title="headers")
    for key, raw in message.headers:
        headers.add_row(key, _text(raw))
    console.print(headers)
    body = _text(message.value)
    try:
        json.loads(body)
    except ValueError:
        console.print("value (not JSON):")
        console.print(repr(message.value))
    else:
        console.print("value:")
        console.print(JSON(body))


@dlq_app.command("redrive")
def dlq_redrive(
    topic: str = typer.Option(..., "--topic", "-t", help="the DLQ topic (or the topic it belongs to)"),
    partition: int | None = typer.Option(None, min=0, help="with --offset: one message"),
    offset: int | None = typer.Option(None, min=0, help="with --partition: one message"),
    everything: bool = typer.Option(False, "--all", help="every message of the DLQ topic"),
    force: bool = typer.Option(False, "--force", help="also messages that were redriven before"),
) -> None:
    """Republish dead-lettered messages to their original topic (original key and headers) and record it."""
    console = Console()
    one = partition is not None and offset is not None
    if one == everything or (not one and (partition is not None or offset is not None)):
        console.print("[red]give either --partition and --offset, or --all[/red]")
        raise typer.Exit(2)
    settings = _settings()
    name = as_dlq_topic(settings, topic)

    async def work(settings: Settings) -> bool:
        async with _databases(settings) as (write_db, _), reader(settings) as consumer:
            letters = DeadLetters(settings, consumer)
            if partition is None or offset is None:
                chosen = await letters.messages(name)
            else:
                found = await letters.message(name, partition, offset)
                if found is None:
                    console.print(f"[red]{name} has no message at partition {partition}, offset {offset}[/red]")
                    return False
                chosen = [found]
            producer = make_producer(settings)
            await producer.start()
            try:
                result = await redrive(chosen, producer=producer, log=RedriveLog(write_db), force=force)
            finally:
                await producer.stop()
        for m in result.redriven:
            console.print(f"redriven {m.partition}/{m.offset} -> {m.original_topic}")
        for m in result.skipped:
            console.print(f"skipped {m.partition}/{m.offset}: redriven before (--force sends it again)")
        for m in result.unroutable:
            console.print(f"[red]cannot redrive {m.partition}/{m.offset}: no dlq.original_topic header[/red]")
        console.print(
            f"{name}: {len(result.redriven)} redriven, {len(result.skipped)} skipped, "
            f"{len(result.unroutable)} unroutable"
        )
        return not result.unroutable

    if not _run(work, settings):
        raise typer.Exit(1)


# --- projection rebuild ---------------------------------------------------------------------------------------


class _RichProgress:
    """eventshop.ops.progress.Progress on a rich progress bar: one line per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def start(self, label: str, total: int | None) -> None:
        self.tasks[label] = self.progress.add_task(label, total=total)

    def advance(self, label: str, amount: int) -> None:
        self.progress.advance(self.tasks[label], amount)


@projection_app.command("rebuild")
def projection_rebuild(
    source: Source = typer.Option(Source.WRITE_MODEL, "--from", help="build from the write model or replay Kafka"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    keep_old: bool = typer.Option(False, "--keep-old", help="keep the replaced collections (<view>_old_<stamp>)"),
) -> None:
    """Rebuild the read model into fresh collections, then switch readers over to them."""
    console = Console()
    if not yes:
        typer.confirm(f"Rebuild every view from {source.value} and switch readers over?", abort=True)

    async def work(settings: Settings) -> RebuildReport:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        async with _databases(settings) as (write_db, read_db):
            with Progress(*columns, console=console) as bar:
                return await rebuild(
                    source,
                    settings=settings,
                    write_db=write_db,
                    read_db=read_db,
                    progress=_RichProgress(bar),
                    keep_old=keep_old,
                )

    try:
        report = _run(work)
    except CatchUpFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    table = Table("view", "documents", "before", title=f"rebuilt from {report.source.value} (stamp {report.stamp})")
    for view, count in report.documents.items():
        before = report.previous.get(view, 0)
        table.add_row(view, str(count), f"[yellow]{before}[/yellow]" if before > count else str(before))
    console.print(table)
    window = (report.switch.finished - report.switch.started) * 1000
    console.print(f"switched over in {window:.1f} ms; re-applied {report.caught_up} recent change(s) to the new views")
    if report.skipped:
        console.print(f"skipped {report.skipped} message(s) no projector can apply (see `eventshop dlq list`)")
    if report.switch.strays:
        console.print(f"projector writes during the switch re-created: {', '.join(report.switch.strays)}")
    if report.dropped:
        console.print(f"dropped the replaced collections: {', '.join(report.dropped)}")
    elif report.switch.retired:
        console.print(f"kept the replaced collections: {', '.join(report.switch.retired.values())}")


# --- verify -----------------------------------------------------------------------------------------------------


def verify(
    limit: int = typer.Option(50, min=1, help="print at most this many differences"),
    settle: float = typer.Option(
        3.0, min=0, help="seconds to re-check differing documents (projection lag on a running system)"
    ),
) -> None:
    """Compare the write model and the read model field by field; exit 1 when they differ."""
    console = Console()

    async def work(settings: Settings) -> list[Difference]:
        async with _databases(settings) as (write_db, read_db):
            return await settled_differences(write_db, read_db, settle=settle)

    found = _run(work)
    if not found:
        console.print("[green]read model matches the write model[/green]")
        return
    table = Table("view", "id", "field", "expected (write model)", "actual (read model)", title="differences")
    for d in found[:limit]:
        shown = (str, str) if d.field == "_id" else (repr, repr)  # a whole document: say what, not a value
        table.add_row(d.kind.value, str(d.id), d.field, _short(shown[0](d.expected)), _short(shown[1](d.actual)))
    console.print(table)
    more = f" ({len(found) - limit} not shown; --limit)" if len(found) > limit else ""
    console.print(f"[red]{len(found)} difference(s){more}[/red]")
    raise typer.Exit(1)


# --- topics -----------------------------------------------------------------------------------------------------


@topics_app.command("check")
def topics_check() -> None:
    """Describe every catalog topic from the cluster against the settings; exit 1 when one is missing or differs."""
    _check(_run(describe_topics))


def _check(report: TopicReport) -> None:
    Console().print(_topics_table(report))
    if report.differing:
        typer.echo(
            f"{len(report.differing)} topic(s) differ from the settings; existing topics are never changed by "
            "eventshop (docs/deployment.md: running on a Kafka cluster, changing a topic's partitions)",
            err=True,
        )
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create() -> None:
    """Create the catalog topics that are missing (as the settings say), then check them all."""
    try:
        wanted = _run(ensure_topics)
    except RuntimeError as exc:  # e.g. more replicas asked for than the cluster has brokers
        typer.echo(f"topics not created: {exc}", err=True)
        raise typer.Exit(1) from None
    # Every broker learns of new topics from the controller in its own time: the check's admin client may ask one
    # that does not show them yet, and is then asked again.
    _check(_run(lambda settings: describe_topics(settings, expected=wanted)))


def _topics_table(report: TopicReport) -> Table:
    spec = report.spec
    title = (
        f"{report.brokers} broker(s); settings: {spec.partitions} partitions, replication factor "
        f"{spec.replication_factor}, min.insync.replicas {spec.min_insync_replicas}"
    )
    table = Table("topic", "partitions", "replicas", "min ISR", "under-replicated", "leaderless", "state", title=title)
    differing = report.differing
    for t in report.topics:
        state = "; ".join(differing.get(t.name, [])) or "ok"
        counts = (t.partitions, t.replication_factor, t.min_insync_replicas, t.under_replicated, t.leaderless)
        table.add_row(t.name, *("-" if n is None else str(n) for n in counts), state)
    return table


# --- seed -------------------------------------------------------------------------------------------------------


def seed(
    users: int = typer.Option(..., "--users", min=0, help="customers in the shop"),
    products: int = typer.Option(..., "--products", min=0, help="products in the catalogue"),
    orders: int = typer.Option(..., "--orders", min=0, help="orders placed (then paid, fulfilled or canceled)"),
    seed_value: int = typer.Option(1, "--seed", min=0, help="the same seed and counts always make the same shop"),
    concurrency: int = typer.Option(8, min=1, max=64, help="commands in flight at once"),
    force: bool = typer.Option(False, "--force", help="seed even though the database holds data the seed did not make"),
    wait: bool = typer.Option(False, "--wait", help="then wait until the relay and the stock worker are done"),
    wait_timeout: float = typer.Option(600.0, min=0, help="seconds --wait waits at most"),
    reserve_timeout: float = typer.Option(
        120.0, min=1, help="seconds without any order decided by the stock worker before the seed gives up"
    ),
) -> None:
    """Create a realistic shop through the command handlers (resumable: run it again to continue)."""
    console = Console()
    try:
        plan = SeedPlan(users, products, orders, seed_value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    started = time.monotonic()
    try:
        report, left = _run(
            lambda settings: _seed_with_progress(
                settings,
                plan,
                console,
                concurrency=concurrency,
                force=force,
                reserve_timeout=reserve_timeout,
                wait_timeout=wait_timeout if wait else None,
            )
        )
    except (SeedRefused, SeedStalled) as exc:
        console.print(f"[red]{'refusing to seed' if isinstance(exc, SeedRefused) else 'stopped'}: {exc}[/red]")
        raise typer.Exit(1) from None
    _print_seed_report(console, plan, report, time.monotonic() - started)
    if left:
        console.print(f"[red]still {left} event(s) or order(s) in flight after {wait_timeout:.0f} s[/red]")
        raise typer.Exit(1)


async def _seed_with_progress(
    settings: Settings,
    plan: SeedPlan,
    console: Console,
    *,
    concurrency: int,
    force: bool,
    reserve_timeout: float,
    wait_timeout: float | None,
) -> tuple[SeedReport, int]:
    """The seed with a progress bar per phase; then, with a `wait_timeout`, the wait for the relay and the stock
    worker. The report, and what was still in flight when the wait gave up (0 without a wait)."""
    write_db = WriteDatabase(settings.mysql_dsn, pool_size=concurrency + 2)
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as bar:
            progress = _RichProgress(bar)
            report = await seed_shop(
                write_db, plan, progress=progress, concurrency=concurrency, force=force, reserve_timeout=reserve_timeout
            )
            if wait_timeout is None:
                return report, 0
            return report, (await wait_settled(write_db, timeout=wait_timeout, progress=progress)).total
    finally:
        await write_db.dispose()


def _print_seed_report(console: Console, plan: SeedPlan, report: SeedReport, seconds: float) -> None:
    table = Table("phase", "planned", "already there", "created", "refused", title=f"seed {plan.seed}")
    for label, phase in report.phases.items():
        refused = ", ".join(f"{n} {code}" for code, n in sorted(phase.refused.items())) or "0"
        table.add_row(label, str(phase.planned), str(phase.existing), str(phase.created), refused)
    console.print(table)
    shown = ", ".join(f"{n} {status}" for status, n in sorted(report.statuses.items()))
    console.print(f"orders: {shown or 'none'}; {seconds:.1f} s")
