"""`eventshop gateway --workers N`: N gateway processes behind one port.

This process, the supervisor, binds one socket per worker to HOST:PORT and spawns N workers (fresh interpreters,
as uvicorn's own workers are: nothing is inherited but a socket and the environment). Each worker is a whole
gateway, made by the runtime as a lone gateway is: its own app, read-model client, write pool and `views.changed`
feed, which reads every partition without a consumer group, so each worker gets every announcement. The sockets
share the port with SO_REUSEPORT, and the kernel hands each new connection to one of them by its addresses'
hash. One socket shared by all would not spread keep-alive clients: the worker that wakes first accepts every
connection waiting, and a burst of clients connecting at once stays on it. Their Prometheus metrics are files
in a fresh directory (shared/metrics.py) that any worker's /metrics reads; it is removed when they have stopped.

SIGINT/SIGTERM: every worker gets SIGTERM and shuts down as a lone gateway does; one still running after the
grace period is killed. A worker that ends on its own ends them all, and the supervisor exits 1: a gateway
silently serving with fewer workers than asked for would only show as slowness, a stopped one gets restarted
by whatever supervises it. A supervisor that is killed takes its workers with it (Linux's parent-death signal).
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from shared.logging import get_logger
from shared.metrics import MULTIPROCESS_DIR
from shared.settings import Settings

log = get_logger(__name__)

# A worker's own shutdown takes up to 30 s for its components (runtime.py), then closes its connections.
GRACE_SECONDS = 40.0

Worker = Callable[[Settings, socket.socket], None]
"""A worker process's body: a module-level function (spawned processes import it by name)."""


def bind(host: str, port: int, count: int) -> list[socket.socket]:
    """A socket per worker on one port, bound before any worker starts: a port in use fails once, at once.

    First a plain bind: SO_REUSEPORT would also join a port that another gateway of this user already serves.
    Not listening yet: each worker listens when it starts serving; until the first does, connecting is refused
    rather than left waiting."""
    with _socket(host, reuse_port=False) as probe:
        probe.bind((host, port))
        port = probe.getsockname()[1]  # port 0: the one the kernel chose
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_socket(host, reuse_port=True))
            sockets[-1].bind((host, port))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _socket(host: str, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart is not refused by TIME_WAIT
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


@dataclass(frozen=True)
class Child:
    """A process of the supervisor: a module-level function (spawned processes import it by name) and its
    arguments (a socket among them is the child's own once started)."""

    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]


def serve(worker: Worker, settings: Settings, count: int) -> bool:
    """Run `count` processes of `worker` on HOST:PORT until SIGINT/SIGTERM; True when all stopped cleanly."""
    try:
        sockets = bind(settings.host, settings.port, count)
    except OSError as exc:
        log.error("gateway.port_unavailable", host=settings.host, port=settings.port, error=repr(exc))
        return False
    children = [Child(f"gateway-worker-{n}", worker, (settings, sock)) for n, sock in enumerate(sockets)]
    return run_children(children, sockets)


def serve_split(gateway: Worker, workers: Callable[[Settings], None], settings: Settings) -> bool:
    """`eventshop all --processes 2`: the gateway in one process, the relay, stock worker and projector in
    another, so the Python side uses two cores (what `make run` starts: the pipeline bench chose it)."""
    try:
        sockets = bind(settings.host, settings.port, 1)
    except OSError as exc:
        log.error("gateway.port_unavailable", host=settings.host, port=settings.port, error=repr(exc))
        return False
    return run_children(
        [Child("gateway", gateway, (settings, sockets[0])), Child("workers", workers, (settings,))], sockets
    )


def run_children(children: list[Child], sockets: list[socket.socket]) -> bool:
    """Supervise `children` until SIGINT/SIGTERM or the end of one; their metrics are files in a fresh directory
    (any gateway's /metrics reads them all), removed when they have stopped."""
    metrics_dir = tempfile.mkdtemp(prefix="eventshop-metrics-")
    # Inherited by the children, where prometheus_client reads it when first imported: files, not memory.
    os.environ[MULTIPROCESS_DIR] = metrics_dir
    try:
        return asyncio.run(supervise(children))
    finally:
        for sock in sockets:  # those of children that never started (each started one's is closed already)
            sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def supervise(children: list[Child]) -> bool:
    """Start the children, wait for a signal or the end of any of them, then stop them all. True when asked to
    stop and every child exited 0."""
    loop = asyncio.get_running_loop()
    signalled, ended = asyncio.Event(), asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before any child starts: none outlives this process
        loop.add_signal_handler(sig, signalled.set)
    spawn = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = []
    try:
        for child in children:
            process = spawn.Process(
                target=_with_supervisor, args=(child.target, child.args, os.getpid()), name=child.name
            )
            process.start()
            for arg in child.args:  # the child has a copy of its own socket once started
                if isinstance(arg, socket.socket):
                    arg.close()
            processes.append(process)
            loop.add_reader(process.sentinel, ended.set)  # readable once the process has exited
        log.info("supervisor.started", processes={p.name: p.pid for p in processes})
        waits = [asyncio.create_task(signalled.wait()), asyncio.create_task(ended.wait())]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in pending:
            wait.cancel()
    finally:
        for started in processes:
            loop.remove_reader(started.sentinel)
        if not signalled.is_set():
            early = [(p.name, p.pid, p.exitcode) for p in processes if not p.is_alive()]
            log.error("supervisor.child_ended", processes=early, detail="stopping every process")
        await asyncio.to_thread(stop, processes)
    codes = {p.pid: p.exitcode for p in processes}
    log.info("supervisor.stopped", exit_codes=codes)
    return signalled.is_set() and all(code == 0 for code in codes.values())


def _with_supervisor(target: Callable[..., None], args: tuple[Any, ...], supervisor: int) -> None:
    """A child that stops with its supervisor, however that ends: killed (SIGKILL runs no handler of ours),
    the kernel sends the child SIGTERM (PR_SET_PDEATHSIG), and it shuts down as if asked to."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it ended before the line above took effect
        return
    target(*args)


def stop(processes: list[BaseProcess], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to every worker still running (a graceful shutdown), SIGKILL to those left after `grace`."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            log.error(
                "supervisor.child_killed",
                process=process.name,
                pid=process.pid,
                detail=f"still running {grace:g} s after SIGTERM",
            )
            process.kill()
            process.join()
