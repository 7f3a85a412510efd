"""FerretDB (the MongoDB side): a MongoDB wire-protocol server on PostgreSQL, built from source with Go.

A plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@<v>` binary panics at start-up
("Invalid build/version/version.txt"): the release's version file is generated and not part of the
module. So provisioning copies the module source (`go mod download`), writes that file, applies our
patch and runs `go build`; the result is cached per version and patch as `<cache>/bin/ferretdb-<version>-<patch>`.

The patch (`devstack/patches/ferretdb-<version>-eventshop.patch`, measured in docs/benchmarks.md):
- `--test-scalar-pushdown`: filters on top-level scalar fields (equality, ranges, `$in`, `$ne`, anchored
  prefix regexes, `$and`/`$or`) become SQL on the expressions FerretDB's indexes are built on, with the BSON
  type checked; when the whole filter is SQL, the sort, the limit and `count` go to PostgreSQL too. Upstream
  1.24 pushes only equality down, in a form no index serves, and reads, sorts and counts every other row in
  Go, so each read cost grew with the collection.
- update and findAndModify hold a per-document lock between reading and writing the document, so two
  concurrent version-gated writes can no longer lose one of them (upstream applies an update as a read then
  a write without a lock). The lock is per FerretDB process: run one FerretDB per PostgreSQL database.
- an `update` command with several updates runs them all when it is unordered, and reports a duplicate key as
  that update's write error with its index, beside `n`, `nModified` and `upserted` (with each upsert's index), as
  MongoDB does. Upstream stops at the first error and reports it alone, as index 0, with no counts (pymongo's bulk
  API then fails with a KeyError). The projector writes a poll's views in one such command: a round trip per
  document was a third of its CPU (py-spy, pipeline bench).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import tempfile
from pathlib import Path

from devstack.process import DevstackError, log_path, run, service_dir
from shared.settings import Settings

NAME = "ferretdb"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
MODULE = "github.com/FerretDB/FerretDB"


def address(settings: Settings) -> tuple[str, int]:
    from pymongo.uri_parser import parse_uri

    host, port = parse_uri(settings.mongo_uri)["nodelist"][0]
    return host, int(port)


PATCHES = Path(__file__).parent / "patches"


def patch_file(settings: Settings) -> Path:
    return PATCHES / f"ferretdb-{settings.ferretdb_version}-eventshop.patch"


def binary(settings: Settings) -> Path:
    digest = hashlib.sha256(patch_file(settings).read_bytes()).hexdigest()[:12]
    return settings.cache_dir.expanduser() / "bin" / f"ferretdb-{settings.ferretdb_version}-{digest}"


def provision(settings: Settings) -> None:
    """Build the FerretDB binary for settings.ferretdb_version unless it is already cached."""
    target = binary(settings)
    if target.exists():
        return
    if not shutil.which("go"):
        raise DevstackError("ferretdb: go is not on PATH (needed once to build FerretDB)")
    version = settings.ferretdb_version
    log = log_path(settings, "provision-ferretdb")
    env = {"GOFLAGS": "-buildvcs=false"}
    cache = settings.cache_dir.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    info = json.loads(
        run(
            ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
            what="ferretdb: go mod download",
            env=env,
            cwd=cache,
            log=log,
        )
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="ferretdb-build-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(info["Dir"], src)  # the module cache is read-only
        for path in [src, *src.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        (src / "build" / "version" / "version.txt").write_text(f"{version}\n")
        run(
            ["git", "apply", "--verbose", str(patch_file(settings))],
            what="ferretdb: apply the eventshop patch",
            cwd=src,
            log=log,
        )
        out = Path(tmp) / "ferretdb"
        run(
            ["go", "build", "-trimpath", "-o", str(out), "./cmd/ferretdb"],
            what="ferretdb: go build",
            env=env,
            cwd=src,
            log=log,
        )
        reported = run([str(out), "--version"], what="ferretdb: --version")
        if f"version: {version}" not in reported:
            raise DevstackError(f"ferretdb: built binary reports {reported!r}, expected {version}")
        shutil.move(str(out), target)


def prepare(settings: Settings) -> list[str]:
    """Return the ferretdb command line: PostgreSQL (devstack/postgresql.py) holds the data, the state dir
    FerretDB's state.json."""
    root = service_dir(settings, NAME)
    root.mkdir(parents=True, exist_ok=True)
    _, port = address(settings)
    return [
        str(binary(settings)),
        "--handler=postgresql",
        f"--postgresql-url={pool_url(settings.ferretdb_postgresql_url)}",
        "--test-scalar-pushdown",
        f"--state-dir={root}",
        f"--listen-addr=127.0.0.1:{port}",
        "--debug-addr=-",  # no debug/metrics HTTP listener (default would take 127.0.0.1:8088)
        "--telemetry=disable",
        "--log-level=WARN",
        "--log-format=text",
    ]


def pool_url(url: str, max_connections: int = 40) -> str:
    """The URL with a connection pool large enough for concurrent projector writes (pgx's default is 4)."""
    if "pool_max_conns=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}pool_max_conns={max_connections}"


def check(settings: Settings, timeout: float = 5.0) -> str:
    """`ping` plus `buildInfo` through pymongo, exactly as the app will connect."""
    from pymongo import MongoClient

    ms = int(timeout * 1000)
    client: MongoClient = MongoClient(
        settings.mongo_uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
    )
    try:
        client.admin.command("ping")
        info = client.admin.command("buildInfo")
    finally:
        client.close()
    ferret = info.get("ferretdbVersion")
    return f"FerretDB {ferret}" if ferret else f"MongoDB {info.get('version')}"


def ready(settings: Settings) -> None:
    check(settings, timeout=2.0)


def ensure(settings: Settings, *, ours: bool) -> None:
    """Nothing to create: MongoDB databases and collections appear on first write."""
