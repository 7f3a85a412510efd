"""Daemon, pid-file, polling and subprocess helpers shared by the devstack services.

Services run as detached daemons (own session, output to a log file, pid file under the state dir) so
that they outlive the `eventshop devstack up` process and can be stopped later by another process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from shared.settings import Settings

T = TypeVar("T")


class DevstackError(RuntimeError):
    """A service could not be provisioned, started, checked or stopped; the message says what to look at."""


def state_root(settings: Settings) -> Path:
    """Absolute state dir: pid files must name the same place whichever directory a later command runs in."""
    return settings.state_dir.expanduser().resolve()


def service_dir(settings: Settings, name: str) -> Path:
    return state_root(settings) / name


def log_path(settings: Settings, name: str) -> Path:
    return state_root(settings) / "logs" / f"{name}.log"


def pid_path(settings: Settings, name: str) -> Path:
    return state_root(settings) / "run" / f"{name}.pid"


@contextlib.contextmanager
def service_lock(settings: Settings, name: str) -> Iterator[None]:
    """Serialise start/stop of one service across processes (two `up`s at once must not race)."""
    path = state_root(settings) / "run" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log file, for error messages that explain why a service did not come up."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def run(
    cmd: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800,
    log: Path | None = None,
) -> str:
    """Run a provisioning command to completion; raise DevstackError with its output when it fails."""
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            list(cmd), env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevstackError(f"{what} failed: {exc}") from exc
    output = (proc.stdout or "") + (proc.stderr or "")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{output}\n")
    if proc.returncode != 0:
        last = "\n".join(output.splitlines()[-30:])
        raise DevstackError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{last}")
    return proc.stdout


def apt_install(settings: Settings, package: str, *, what: str, options: Sequence[str] = ()) -> None:
    """`apt-get update` and `apt-get install -y <package>` (fresh CI machines); as root, or through sudo.

    One at a time: `devstack up` provisions the services in parallel, and apt holds a lock while it works."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise DevstackError(f"{what}: {package} is missing and installing it needs root or sudo")
        prefix = ["sudo", "-n"]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    log = log_path(settings, f"provision-{what}")
    wait_for_apt = ["-o", "DPkg::Lock::Timeout=600"]  # another apt (not ours) may be running
    with service_lock(settings, "apt"):
        run([*prefix, "apt-get", *wait_for_apt, "update"], what=f"{what}: apt-get update", env=env, log=log)
        run(
            [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", *wait_for_apt, "install", "-y", *options]
            + [package],
            what=f"{what}: apt-get install {package}",
            env=env,
            log=log,
        )


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Cheap "is anything listening" probe, used to detect services we did not start (e.g. Docker)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


def _alive(pid: int) -> bool:
    # For our own children (fault tests stop and start services from one process) waitpid is the
    # truth and reaps them. For others, signal 0 also succeeds on zombies, and a multi-threaded
    # process (the JVM) shows its leader as a zombie while other threads still hold its sockets,
    # so it only counts as dead once the leader is a zombie with no other threads left.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done != pid
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" or len(os.listdir(f"/proc/{pid}/task")) > 1
    except (OSError, IndexError):
        return True


def running_pid(settings: Settings, name: str) -> int | None:
    """Pid of the daemon devstack started for `name`, or None; guards against recycled pids.

    Every devstack daemon has its own state directory on its command line, so a live pid whose command
    line does not mention it is some other process that got the recycled pid.
    """
    path = pid_path(settings, name)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return pid
    return pid if str(service_dir(settings, name)) in cmdline else None


def start_daemon(
    settings: Settings,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` detached from the caller (new session, no stdin, output appended to the log)."""
    log = log_path(settings, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file = pid_path(settings, name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            close_fds=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_daemon(
    settings: Settings, name: str, *, timeout: float, kill: bool = False, stop_signal: int = signal.SIGTERM
) -> bool:
    """`stop_signal` (or SIGKILL when `kill`) to the daemon and wait; SIGKILL if it outlives the deadline.

    Returns False when devstack had nothing running for `name`.
    """
    pid = running_pid(settings, name)
    if pid is None:
        pid_path(settings, name).unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGKILL if kill else stop_signal)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            raise DevstackError(f"{name} (pid {pid}) survived SIGKILL")
    pid_path(settings, name).unlink(missing_ok=True)
    return True


def wait_for(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float,
    log: Path | None = None,
    pid: int | None = None,
    interval: float = 0.5,
) -> T:
    """Poll `check` until it returns without raising or the deadline passes.

    Fails fast when the daemon `pid` exits while we wait, and includes the log tail in the error so a
    CI failure is diagnosable from the message alone.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            return check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
        if pid is not None and not _alive(pid):
            reason = f"{what}: process {pid} exited"
            break
        if time.monotonic() >= deadline:
            reason = f"{what}: not ready after {timeout:.0f}s"
            break
        time.sleep(interval)
    detail = f"\nlast error: {last!r}" if last else ""
    logs = f"\n--- tail of {log} ---\n{tail(log)}" if log else ""
    raise DevstackError(reason + detail + logs)


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, also when the caller is itself inside an event loop.

    The public devstack API is synchronous, but async tests call stop/start_service; asyncio.run
    cannot nest, so in that case the coroutine runs on a private loop in a worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
