"""MariaDB (the MySQL side): Debian's mariadb-server, run as a private mariadbd on loopback.

The private server has its own datadir, socket and pid file under the state dir, so it never touches a
system MariaDB/MySQL; administration goes through its unix socket as the OS user (unix_socket auth),
which is why no root password exists anywhere.
"""

from __future__ import annotations

import getpass
import os
import shutil
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from devstack.process import DevstackError, apt_install, log_path, run, run_async, service_dir
from shared.settings import Settings

NAME = "mariadb"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0

# MySQL 8.4's default sql_mode, so SQL that MariaDB accepts but MySQL rejects fails here too.
SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)
SYSTEM_SOCKETS = (Path("/run/mysqld/mysqld.sock"), Path("/var/run/mysqld/mysqld.sock"))


def _dsn(settings: Settings) -> URL:
    return make_url(settings.mysql_dsn)


def address(settings: Settings) -> tuple[str, int]:
    url = _dsn(settings)
    return url.host or "127.0.0.1", url.port or 3306


def _socket(settings: Settings) -> Path:
    return service_dir(settings, NAME) / "mariadb.sock"


def _find(name: str) -> str | None:
    # /usr/sbin is often missing from a non-root PATH.
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).exists()), None
    )


def provision(settings: Settings) -> None:
    """Install Debian's mariadb-server when mariadbd is missing (fresh CI machines)."""
    if _find("mariadbd") and _find("mariadb-install-db") and _find("mariadb"):
        return
    apt_install(settings, "mariadb-server", what=NAME)
    if not _find("mariadbd"):
        raise DevstackError("mariadb: mariadb-server installed but mariadbd not found")


def prepare(settings: Settings) -> list[str]:
    """Initialise the datadir once and return the mariadbd command line."""
    root = service_dir(settings, NAME)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    if not (data / "mysql").is_dir():
        user_opts = ["--user=root"] if as_root else [f"--auth-root-socket-user={getpass.getuser()}"]
        run(
            [
                _find("mariadb-install-db") or "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                *user_opts,
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            what="mariadb: mariadb-install-db",
            log=log_path(settings, NAME),
        )
    host, port = address(settings)
    return [
        _find("mariadbd") or "mariadbd",
        "--no-defaults",  # must come first; ignores /etc/mysql (system socket, port, datadir)
        f"--datadir={data}",
        f"--socket={_socket(settings)}",
        f"--pid-file={root / 'mariadbd.pid'}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        *(["--user=root"] if as_root else []),  # mariadbd refuses to run as root without it
        # Enough with 1M orders (about 1.3 GB with their items, history and kept outbox rows): bench write-scale
        # measured createOrder and payOrder flat from 10k to 1M orders at 256 MB as at 2 GB.
        "--innodb-buffer-pool-size=256M",
        "--max-connections=500",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        "--default-time-zone=+00:00",
        f"--sql-mode={SQL_MODE}",
        "--skip-name-resolve",
    ]


def _admin_sql(sql: str, socket: Path, user: str | None = None, timeout: float = 30) -> str:
    client = _find("mariadb") or _find("mysql") or "mariadb"
    cmd = [client, "--no-defaults", "--protocol=socket", f"--socket={socket}"]
    cmd += [f"--user={user or ('root' if os.geteuid() == 0 else getpass.getuser())}", "-N", "-B", "-e", sql]
    return run(cmd, what="mariadb: admin SQL over the unix socket", timeout=timeout)


def ready(settings: Settings) -> None:
    """Our own server is up when its unix socket answers the admin user."""
    _admin_sql("SELECT 1", _socket(settings), timeout=10)


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _ident(value: str) -> str:
    return "`" + value.replace("`", "``") + "`"


def _provision_sql(settings: Settings, admin_user: str) -> str:
    url = _dsn(settings)
    db = url.database or "eventshop"
    user, password = url.username or "eventshop", url.password or ""
    pattern = db.replace("_", "\\_").replace("%", "\\%") + "\\_%"
    stmts = [
        f"CREATE DATABASE IF NOT EXISTS {_ident(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        for name in (db, f"{db}_test")
    ]
    # 'localhost' is for socket logins; never re-password the admin account we log in with.
    hosts = ["%"] if user == admin_user else ["%", "localhost"]
    for host in hosts:
        account = f"{_lit(user)}@{_lit(host)}"
        stmts += [
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {_lit(password)}",
            f"ALTER USER {account} IDENTIFIED BY {_lit(password)}",
            *(f"GRANT ALL PRIVILEGES ON {_ident(d)}.* TO {account}" for d in (db, f"{db}_test", pattern)),
        ]
    return ";\n".join(stmts) + ";"


def ensure(settings: Settings, *, ours: bool) -> None:
    """Create the DSN's database, `<db>_test` and the DSN user (ALL on both and on `<db>_%`).

    On a server devstack did not start this is best effort: a system MariaDB reachable as root over
    its default socket is provisioned the same way; otherwise the server is used as it is.
    """
    admin = "root" if os.geteuid() == 0 else getpass.getuser()
    if ours:
        _admin_sql(_provision_sql(settings, admin), _socket(settings), admin)
        return
    try:
        check(settings)
        return
    except Exception:  # noqa: BLE001 - fall through to provisioning via the system socket
        pass
    for sock in SYSTEM_SOCKETS:
        if sock.exists():
            try:
                _admin_sql(_provision_sql(settings, "root"), sock, "root")
                return
            except DevstackError:
                continue


def check(settings: Settings, timeout: float = 5.0) -> str:
    """The health check that matters to the app: `SELECT VERSION()` as the DSN user over TCP."""
    import asyncmy

    url = _dsn(settings)
    host, port = address(settings)

    async def probe() -> str:
        conn = await asyncmy.connect(
            host=host,
            port=port,
            user=url.username or "",
            password=url.password or "",
            db=url.database or "",
            connect_timeout=timeout,
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT VERSION()")
                row = await cur.fetchone()
        finally:
            await conn.ensure_closed()  # sends COM_QUIT; close() alone logs "Aborted connection"
        return f"MariaDB/MySQL {row[0]}, db {url.database} as {url.username}"

    return run_async(probe)
