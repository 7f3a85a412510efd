"""The `eventshop` command line: processes, migrations, the local devstack and operations."""

from __future__ import annotations

import socket
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog
import typer
import uvloop  # every process's event loop: about 5% less CPU per order than asyncio's (docs/benchmarks.md)

from eventshop import workers
from eventshop.ops.cli import dlq_app, projection_app, seed, topics_app, verify
from eventshop.runtime import Component, gateway_may_start, run
from gateway.auth import STOREFRONT_SCOPES, AuthConfigError, Role, Scope, issue_token
from shared.logging import configure_logging, get_logger
from shared.settings import Settings, mask_dsn

WORKERS = (Component.RELAY, Component.STOCK_WORKER, Component.PROJECTOR)
"""The components of `eventshop workers`, the second process of `eventshop all --processes 2`."""

app = typer.Typer(help="eventshop: event-driven e-commerce backend (GraphQL over CQRS).", no_args_is_help=True)

try:
    from devstack.cli import devstack_app

    app.add_typer(devstack_app, name="devstack", help="Start/stop the local backing services (no Docker).")
except ImportError:  # pragma: no cover - devstack is part of the distribution
    pass


def _settings() -> Settings:
    settings = Settings()
    _configure_logs(settings)
    return settings


def _configure_logs(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_json)
    _mask_credentials_in_logs()


def _mask_credentials_in_logs() -> None:
    """No log line shows a DSN password, whatever printed it (tracebacks included): masked before rendering."""
    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[*processors[:-1], _masked, processors[-1]])


def _masked(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask_dsn(value)
    return event


def _run(*components: Component, settings: Settings | None = None) -> None:
    if not uvloop.run(run(list(components), settings or _settings())):
        raise typer.Exit(1)


@app.command()
def gateway(
    host: str = typer.Option(None, help="bind address (default HOST)"),
    port: int = typer.Option(None, help="port (default PORT)"),
    workers_: int = typer.Option(
        None, "--workers", min=1, help="processes behind the port, each with its own feed (default GATEWAY_WORKERS)"
    ),
) -> None:
    """GraphQL gateway: /graphql, /healthz, /readyz, /metrics."""
    given = {"host": host, "port": port, "gateway_workers": workers_}
    settings = _settings().model_copy(update={k: v for k, v in given.items() if v is not None})
    if settings.gateway_workers == 1:
        _run(Component.GATEWAY, settings=settings)
    elif not (gateway_may_start(settings) and workers.serve(_gateway_worker, settings, settings.gateway_workers)):
        raise typer.Exit(1)


def _gateway_worker(settings: Settings, listening: socket.socket) -> None:
    """One of `eventshop gateway --workers N`, in a process of its own (eventshop/workers.py)."""
    _configure_logs(settings)
    if not uvloop.run(run([Component.GATEWAY], settings, listening)):
        raise SystemExit(1)


@app.command()
def relay() -> None:
    """Outbox relay: MySQL outbox -> Kafka (one active leader)."""
    _run(Component.RELAY)


@app.command("stock-worker")
def stock_worker() -> None:
    """Reserve and release stock from order events."""
    _run(Component.STOCK_WORKER)


@app.command()
def projector() -> None:
    """Project every domain topic into the MongoDB read model."""
    _run(Component.PROJECTOR)


@app.command("workers")
def workers_() -> None:
    """Relay, stock worker and projector in one process (beside `eventshop gateway`)."""
    _run(*WORKERS)


def _workers(settings: Settings) -> None:
    """The workers' process of `eventshop all --processes 2` (eventshop/workers.py)."""
    _configure_logs(settings)
    if not uvloop.run(run(list(WORKERS), settings)):
        raise SystemExit(1)


@app.command("all")
def all_components(
    processes: int = typer.Option(
        1,
        "--processes",
        min=1,
        max=2,
        help="1: every component in this process; 2: the gateway in one process, relay, stock worker and "
        "projector in another (two cores in use: what `make run` starts)",
    ),
) -> None:
    """Gateway, relay, stock worker and projector: in one process, or in two (--processes 2)."""
    settings = _settings()
    if settings.gateway_workers > 1:  # one gateway process is what `all` is for; several are `eventshop gateway`'s
        get_logger(__name__).warning(
            "all.one_gateway_process", detail="GATEWAY_WORKERS applies to `eventshop gateway`; `all` runs one"
        )
    if processes == 1:
        _run(*Component, settings=settings)
    elif not (gateway_may_start(settings) and workers.serve_split(_gateway_worker, _workers, settings)):
        raise typer.Exit(1)


@app.command()
def migrate(revision: str = typer.Argument("head")) -> None:
    """Apply the Alembic migrations of the write model."""
    from alembic import command
    from alembic.config import Config

    settings = _settings()
    root = Path(__file__).resolve().parent.parent
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.set_main_option("sqlalchemy.url", settings.mysql_dsn.replace("%", "%%"))
    command.upgrade(config, revision)
    typer.echo(f"migrated to {revision}")


_STOREFRONT = " ".join(sorted(STOREFRONT_SCOPES))


@app.command()
def token(
    role: Role = typer.Option(..., help="admin, customer or service"),
    user_id: int = typer.Option(None, "--user-id", help="the customer's user id (customer tokens)"),
    ttl: int = typer.Option(3600, "--ttl", min=1, help="seconds until the token expires"),
    subject: str = typer.Option("admin", help="the subject of an admin token"),
    name: str = typer.Option(None, "--name", help="the calling service's name, its token's subject (service tokens)"),
    scope: list[str] = typer.Option(
        None,
        "--scope",
        help=f"a service token's scopes (repeat or space-separate; default: {_STOREFRONT})",
    ),
) -> None:
    """Print a bearer token signed with JWT_SECRET (HS256) as the last line: for local use and tests."""
    if role is Role.CUSTOMER and (user_id is None or user_id < 1):
        raise typer.BadParameter("a customer token needs --user-id (a positive user id)", param_hint="--user-id")
    if role is not Role.CUSTOMER and user_id is not None:
        raise typer.BadParameter("--user-id is for customer tokens", param_hint="--user-id")
    if role is Role.SERVICE and not (name and name.strip()):
        raise typer.BadParameter("a service token needs --name (e.g. storefront)", param_hint="--name")
    if role is not Role.SERVICE and (name is not None or scope):
        raise typer.BadParameter("--name and --scope are for service tokens", param_hint="--name/--scope")
    scopes = _scopes(scope) if role is Role.SERVICE else frozenset()
    subjects = {Role.CUSTOMER: str(user_id), Role.SERVICE: (name or "").strip(), Role.ADMIN: subject}
    try:
        signed = issue_token(Settings(), role, subjects[role], ttl, scopes)
    except AuthConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if scopes:
        typer.echo(f"scope: {' '.join(sorted(scopes))}", err=True)
    typer.echo('GraphiQL headers: {"Authorization": "Bearer <the token below>"}', err=True)
    typer.echo(signed)


def _scopes(given: list[str] | None) -> frozenset[Scope]:
    names = [name for item in given or () for name in item.split()]
    if not names:
        return STOREFRONT_SCOPES
    unknown = sorted(set(names) - {s.value for s in Scope})
    if unknown:
        known = " ".join(s.value for s in Scope)
        raise typer.BadParameter(f"unknown scope {' '.join(unknown)}; known: {known}", param_hint="--scope")
    return frozenset(Scope(name) for name in names)


@app.command("export-schema")
def export_schema(output: Path = typer.Argument(Path("schema.graphql"))) -> None:
    """Write the GraphQL SDL exported from the code."""
    from gateway.schema import create_schema

    output.write_text(create_schema(Settings()).as_str() + "\n")
    typer.echo(f"wrote {output}")


trusted_app = typer.Typer(no_args_is_help=True)


@trusted_app.command("build")
def trusted_documents_build(
    sources: list[Path] = typer.Argument(..., help="the clients' .graphql/.gql files or folders, and manifests"),
    output: Path = typer.Option(Path("trusted-documents.json"), "--output", "-o"),
) -> None:
    """Write the manifest of trusted documents (id -> text) from the clients' operations; each must validate."""
    from gateway.schema import create_schema
    from gateway.trusted import ManifestError, build

    try:
        manifest = build(create_schema(Settings())._schema, sources)
    except ManifestError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    manifest.write(output)
    typer.echo(f"wrote {output}: {len(manifest)} documents")


app.add_typer(trusted_app, name="trusted-documents", help="Build the manifest of trusted documents (production).")
app.add_typer(dlq_app, name="dlq", help="Inspect dead-letter topics and redrive their messages.")
app.add_typer(projection_app, name="projection", help="Maintain the read model: rebuild and switch over.")
app.add_typer(topics_app, name="topics", help="Check the Kafka topics against the settings; create missing ones.")
app.command("verify")(verify)
app.command("seed")(seed)

if __name__ == "__main__":
    app()
