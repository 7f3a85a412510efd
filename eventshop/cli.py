"""The `eventshop` command line: processes, migrations, the local devstack and operations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from eventshop.runtime import Component, run
from shared.logging import configure_logging
from shared.settings import Settings

app = typer.Typer(help="eventshop: event-driven e-commerce backend (GraphQL over CQRS).", no_args_is_help=True)

try:
    from devstack.cli import devstack_app

    app.add_typer(devstack_app, name="devstack", help="Start/stop the local backing services (no Docker).")
except ImportError:  # pragma: no cover - devstack is part of the distribution
    pass


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _run(*components: Component, settings: Settings | None = None) -> None:
    if not asyncio.run(run(list(components), settings or _settings())):
        raise typer.Exit(1)


@app.command()
def gateway(
    host: str = typer.Option(None, help="bind address (default HOST)"),
    port: int = typer.Option(None, help="port (default PORT)"),
) -> None:
    """GraphQL gateway: /graphql, /healthz, /readyz, /metrics."""
    settings = _settings()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    _run(Component.GATEWAY, settings=settings.model_copy(update=overrides))


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


@app.command("all")
def all_components() -> None:
    """Gateway, relay, stock worker and projector in one process."""
    _run(*Component)


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


@app.command("export-schema")
def export_schema(output: Path = typer.Argument(Path("schema.graphql"))) -> None:
    """Write the GraphQL SDL exported from the code."""
    from gateway.schema import schema

    output.write_text(schema.as_str() + "\n")
    typer.echo(f"wrote {output}")


if __name__ == "__main__":
    app()
