"""The devstack lifecycle: provision, start, health-check, stop and report the three backing services.

Each service module (mariadb, kafka, ferretdb) provides the same small set of functions; this module
decides per service whether to reuse what is running, adopt an external server or start a daemon.
"""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from devstack import ferretdb, kafka, mariadb, postgresql
from devstack.process import (
    DevstackError,
    is_loopback,
    log_path,
    port_open,
    running_pid,
    service_lock,
    start_daemon,
    stop_daemon,
    wait_for,
)
from shared.settings import Settings

AFTER: dict[str, str] = {"ferretdb": "postgresql"}
"""Services that start only once another one answers (FerretDB stores its data in PostgreSQL)."""
EXTERNAL_TIMEOUT = 30.0


def services(settings: Settings) -> dict[str, Any]:
    """Every service by name: a module of functions, or a Kafka broker (`kafka`, or `kafka-1`..`kafka-N` with
    DEVSTACK_KAFKA_BROKERS=N), each with the same interface."""
    found: dict[str, Any] = {"mariadb": mariadb}
    found.update((broker.name, broker) for broker in kafka.brokers(settings))
    return {**found, "postgresql": postgresql, "ferretdb": ferretdb}


def _service(settings: Settings, name: str) -> Any:
    known = services(settings)
    try:
        return known[name]
    except KeyError:
        raise DevstackError(f"unknown service {name!r}; expected one of {sorted(known)}") from None


def start_service(settings: Settings, name: str) -> str:
    """Make one service answer at its configured address and return a line saying how it was provided.

    Idempotent: a daemon devstack already runs is reused, a server that something else runs on the
    port (Docker, a system service) is used as it is, and only otherwise is a daemon started, on the
    existing data so a restart after stop_service keeps everything.
    """
    svc = _service(settings, name)
    with service_lock(settings, name):
        return _start(settings, name, svc)


def _start(settings: Settings, name: str, svc: Any) -> str:
    host, port = svc.address(settings)
    where = f"{host}:{port}"
    log = log_path(settings, name)
    started = time.monotonic()

    if (pid := running_pid(settings, name)) is not None:
        wait_for(lambda: svc.ready(settings), what=f"{name} (pid {pid})", timeout=svc.START_TIMEOUT, log=log, pid=pid)
        svc.ensure(settings, ours=True)
        detail = wait_for(lambda: svc.check(settings), what=f"{name} health check", timeout=30, log=log)
        return f"{name}: already running (devstack pid {pid}) at {where}: {detail}"

    if port_open(host, port):
        svc.ensure(settings, ours=False)
        detail = wait_for(
            lambda: svc.check(settings), what=f"{name} at {where} (not started by devstack)", timeout=EXTERNAL_TIMEOUT
        )
        return f"{name}: using the server already listening at {where} (not started by devstack): {detail}"

    if not is_loopback(host):
        raise DevstackError(f"{name}: nothing answers at {where}; devstack only starts services on loopback")

    svc.provision(settings)
    argv = svc.prepare(settings)
    pid = start_daemon(settings, name, argv)
    wait_for(lambda: svc.ready(settings), what=f"{name} (pid {pid}) start", timeout=svc.START_TIMEOUT, log=log, pid=pid)
    svc.ensure(settings, ours=True)
    detail = wait_for(lambda: svc.check(settings), what=f"{name} health check", timeout=30, log=log, pid=pid)
    elapsed = time.monotonic() - started
    return f"{name}: started (devstack pid {pid}) at {where} in {elapsed:.1f}s: {detail}; log {log}"


def stop_service(settings: Settings, name: str, kill: bool = False) -> bool:
    """Stop the daemon devstack started for `name` (SIGTERM, or SIGKILL with `kill` to simulate a crash).

    Data stays on disk, so start_service brings the same state back. Returns False if devstack had
    nothing running for it (an external server is never touched).
    """
    svc = _service(settings, name)
    with service_lock(settings, name):
        stop_signal = getattr(svc, "STOP_SIGNAL", signal.SIGTERM)
        return stop_daemon(settings, name, timeout=svc.STOP_TIMEOUT, kill=kill, stop_signal=stop_signal)


def _each(
    fn: Callable[[str], str],
    names: Collection[str],
    *,
    first: Callable[[str], str | None] = lambda name: None,
    meanwhile: Callable[[str], None] = lambda name: None,
) -> tuple[dict[str, str], dict[str, BaseException]]:
    """Run `fn` for every service in parallel; a service waits for the one `first` names to finish first,
    doing `meanwhile` while it waits.

    In parallel a cold `up` is roughly as slow as the slowest service (the FerretDB build) rather than the sum.
    """
    results: dict[str, str] = {}
    errors: dict[str, BaseException] = {}
    done = {name: threading.Event() for name in names}

    def after_first(name: str) -> str:
        try:
            if (other := first(name)) is not None and other in done:
                meanwhile(name)
                done[other].wait()
                if other in errors:
                    raise DevstackError(f"{name}: not attempted because {other} failed")
            return fn(name)
        finally:
            done[name].set()

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {pool.submit(after_first, name): name for name in names}
        for fut in concurrent.futures.as_completed(futures):
            name = futures[fut]
            try:
                results[name] = fut.result()
            except BaseException as exc:  # noqa: BLE001 - reported per service below
                errors[name] = exc
    return results, errors


def _labelled(name: str, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def _chosen(settings: Settings, only: Collection[str] | None) -> dict[str, Any]:
    known = services(settings)
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise DevstackError(f"unknown services {unknown}; expected some of {sorted(known)}")
    return {name: svc for name, svc in known.items() if only is None or name in only}


def up(settings: Settings, echo: Callable[[str], None] = print, only: Collection[str] | None = None) -> None:
    """Provision, start and health-check every service (or those named in `only`), then create the Kafka topics.

    Prints one line per service saying how it was provided. Raises DevstackError naming every service
    that failed (with its log tail) so CI output alone explains the failure.
    """

    def one(name: str) -> str:
        line = start_service(settings, name)
        echo(line)
        return line

    chosen = _chosen(settings, only)

    def provision(name: str) -> None:  # a service that waits for another is built meanwhile
        host, port = chosen[name].address(settings)
        if running_pid(settings, name) is None and not port_open(host, port):
            chosen[name].provision(settings)

    _, errors = _each(one, chosen, first=AFTER.get, meanwhile=provision)
    if errors:
        raise DevstackError("\n\n".join(_labelled(name, exc) for name, exc in errors.items()))


def down(settings: Settings, echo: Callable[[str], None] = print, only: Collection[str] | None = None) -> None:
    """Stop the daemons devstack started (or those named in `only`; servers it merely used are left alone); data
    is kept."""

    def one(name: str) -> str:
        line = f"{name}: stopped" if stop_service(settings, name) else f"{name}: not running under devstack"
        echo(line)
        return line

    dependents = {dependency: name for name, dependency in AFTER.items()}
    _, errors = _each(one, _chosen(settings, only), first=dependents.get)
    if errors:
        raise DevstackError("\n".join(_labelled(name, exc) for name, exc in errors.items()))


def status(settings: Settings) -> dict[str, str]:
    """Per service: who runs it and whether it answers its real health check right now.

    Values look like "devstack pid 123; answering at 127.0.0.1:3306 (...)", "external; answering ..."
    or "stopped; not answering ... (error)".
    """

    known = services(settings)

    def one(name: str) -> str:
        svc = known[name]
        host, port = svc.address(settings)
        pid = running_pid(settings, name)
        owner = f"devstack pid {pid}" if pid is not None else ("external" if port_open(host, port) else "stopped")
        try:
            health = f"answering at {host}:{port} ({svc.check(settings, timeout=3.0)})"
        except Exception as exc:  # noqa: BLE001 - any failure means not answering
            reason = (str(exc).splitlines() or [""])[0][:160]
            health = f"not answering at {host}:{port} ({type(exc).__name__}: {reason})"
        return f"{owner}; {health}"

    results, errors = _each(one, known)
    for name, exc in errors.items():
        results[name] = f"unknown; not answering ({exc})"
    return {name: results[name] for name in known}
