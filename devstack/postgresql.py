"""PostgreSQL (FerretDB's storage): Debian's postgresql, run as a private cluster on loopback.

FerretDB keeps each MongoDB database as a schema of one PostgreSQL database. The cluster has its own data
directory, socket directory and port under the state dir, so it never touches a system cluster. It is
initialised with the C collation: strings then compare byte by byte, as MongoDB's simple collation does,
which the patched FerretDB relies on when it pushes string ranges and sorts down (devstack/ferretdb.py).
PostgreSQL refuses to run as root, so as root it runs as the `postgres` user the Debian package creates.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
from pathlib import Path
from urllib.parse import urlsplit

from devstack.process import DevstackError, apt_install, log_path, run, service_dir
from shared.settings import Settings

NAME = "postgresql"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
STOP_SIGNAL = signal.SIGINT
"""PostgreSQL's fast shutdown: SIGTERM would wait for every client (FerretDB's pool never leaves) to disconnect."""
SERVER_USER = "postgres"


def address(settings: Settings) -> tuple[str, int]:
    url = urlsplit(settings.ferretdb_postgresql_url)
    return url.hostname or "127.0.0.1", url.port or 5432


def _bin(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    return str(found[-1]) if found else shutil.which(name)


def _as_server_user() -> list[str]:
    """Prefix that runs a command as the cluster's owner: itself, or `postgres` when we are root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups", "--"]


def _owner() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def _root(settings: Settings) -> Path:
    """The cluster's directory: in the state dir, unless the server user cannot reach it there (a checkout in a
    private home directory, run as root); then in that user's home, named after the state dir."""
    root = service_dir(settings, NAME)
    if os.geteuid() != 0 or all(p.stat().st_mode & 0o001 for p in root.parents if p.exists()):
        return root
    home = Path(pwd.getpwnam(SERVER_USER).pw_dir)
    return home / f"eventshop-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def _socket_dir(settings: Settings) -> Path:
    return _root(settings) / "run"


def provision(settings: Settings) -> None:
    """Install Debian's postgresql when its server binaries are missing (fresh CI machines)."""
    if _bin("postgres") and _bin("initdb") and _bin("psql"):
        return
    apt_install(settings, "postgresql", what=NAME)
    if not _bin("postgres"):
        raise DevstackError("postgresql: postgresql installed but the postgres binary was not found")


def prepare(settings: Settings) -> list[str]:
    """Initialise the cluster once (C collation, UTF-8) and return the postgres command line."""
    root = _root(settings)
    data = root / "data"
    uid, gid = _owner()
    for path in (root, _socket_dir(settings)):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
    if not (data / "PG_VERSION").exists():
        data.mkdir(exist_ok=True)
        os.chown(data, uid, gid)
        data.chmod(0o700)
        run(
            [
                *_as_server_user(),
                _bin("initdb") or "initdb",
                f"--pgdata={data}",
                "--encoding=UTF8",
                "--locale=C",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                f"--username={SERVER_USER}",
            ],
            what="postgresql: initdb",
            log=log_path(settings, NAME),
        )
    host, port = address(settings)
    return [
        *_as_server_user(),
        _bin("postgres") or "postgres",
        "-D",
        str(data),
        "-c",
        f"listen_addresses={host}",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={_socket_dir(settings)}",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=256MB",
        "-c",
        "log_min_messages=warning",
        "-c",  # devstack finds its daemon by the state dir in its command line
        f"cluster_name=eventshop {service_dir(settings, NAME)}",
    ]


def _admin_sql(settings: Settings, sql: str, database: str = "postgres", timeout: float = 30) -> str:
    _, port = address(settings)
    cmd = [*_as_server_user(), _bin("psql") or "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"]
    cmd += ["-h", str(_socket_dir(settings)), "-p", str(port), "-U", SERVER_USER, "-d", database, "-c", sql]
    return run(cmd, what="postgresql: admin SQL over the unix socket", timeout=timeout)


def ready(settings: Settings) -> None:
    _admin_sql(settings, "SELECT 1", timeout=10)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def ensure(settings: Settings, *, ours: bool) -> None:
    """Create the URL's role (with its password) and database (C collation); on a server devstack did not
    start nothing is created: it is used as it is."""
    if not ours:
        return
    url = urlsplit(settings.ferretdb_postgresql_url)
    user, password = url.username or "eventshop", url.password or ""
    database = url.path.lstrip("/") or "ferretdb"
    role = _ident(user)
    exists = _admin_sql(settings, f"SELECT 1 FROM pg_roles WHERE rolname = {_lit(user)}")
    verb = "ALTER" if exists.strip() else "CREATE"
    _admin_sql(settings, f"{verb} ROLE {role} LOGIN PASSWORD {_lit(password)}")
    if not _admin_sql(settings, f"SELECT 1 FROM pg_database WHERE datname = {_lit(database)}").strip():
        _admin_sql(
            settings,
            f"CREATE DATABASE {_ident(database)} OWNER {role} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0",
        )


def check(settings: Settings, timeout: float = 5.0) -> str:
    """As the URL's user over TCP, the way FerretDB connects: the server version and the collation."""
    url = urlsplit(settings.ferretdb_postgresql_url)
    host, port = address(settings)
    database = url.path.lstrip("/") or "ferretdb"
    env = {"PGPASSWORD": url.password or "", "PGCONNECT_TIMEOUT": str(max(1, int(timeout)))}
    sql = (
        "SELECT datcollate || '|' || current_setting('server_version') "
        "FROM pg_database WHERE datname = current_database()"
    )
    cmd = [_bin("psql") or "psql", "-X", "-t", "-A", "-h", host, "-p", str(port), "-U", url.username or "eventshop"]
    out = run([*cmd, "-d", database, "-c", sql], what="postgresql: health check", env=env, timeout=timeout + 5)
    collation, _, version = out.strip().partition("|")
    if collation != "C":
        raise DevstackError(f"postgresql: database {database} has collation {collation!r}; FerretDB here needs 'C'")
    return f"PostgreSQL {version}, db {database} (C collation)"
