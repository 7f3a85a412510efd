"""`eventshop devstack up|down|status`: the real backing services on this machine, without Docker."""

from __future__ import annotations

import logging

import typer

from devstack.browser import provision_chromium, provision_node
from devstack.process import DevstackError
from devstack.stack import down, status, up
from shared.settings import Settings

# aiokafka logs every refused connection while the broker boots; the wait loop reports real failures.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

devstack_app = typer.Typer(
    help="Run MariaDB, Kafka and FerretDB locally (no Docker): provision, start, stop, check.",
    no_args_is_help=True,
)


@devstack_app.command("up")
def up_cmd() -> None:
    """Provision and start every service (idempotent), health-check them, create the Kafka topics."""
    try:
        up(Settings(), echo=typer.echo)
    except DevstackError as exc:
        typer.echo(f"devstack up failed:\n{exc}", err=True)
        raise typer.Exit(1) from None


@devstack_app.command("down")
def down_cmd() -> None:
    """Stop the daemons devstack started; their data stays under the state dir."""
    try:
        down(Settings(), echo=typer.echo)
    except DevstackError as exc:
        typer.echo(f"devstack down failed:\n{exc}", err=True)
        raise typer.Exit(1) from None


@devstack_app.command("browser")
def browser_cmd() -> None:
    """Install Debian's chromium for the browser tests when it is missing; print its path."""
    try:
        typer.echo(provision_chromium(Settings()))
    except DevstackError as exc:
        typer.echo(f"devstack browser failed:\n{exc}", err=True)
        raise typer.Exit(1) from None


@devstack_app.command("node")
def node_cmd() -> None:
    """Install Debian's nodejs and npm for the JavaScript test clients when npm is missing; print its path."""
    try:
        typer.echo(provision_node(Settings()))
    except DevstackError as exc:
        typer.echo(f"devstack node failed:\n{exc}", err=True)
        raise typer.Exit(1) from None


@devstack_app.command("status")
def status_cmd() -> None:
    """Show who runs each service and whether it answers; exit 1 if any does not."""
    result = status(Settings())
    for name, line in result.items():
        typer.echo(f"{name}: {line}")
    if any("; answering" not in line for line in result.values()):
        raise typer.Exit(1)
