"""FerretDB (the MongoDB side): a MongoDB wire-protocol server on SQLite, built from source with Go.

A plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@<v>` binary panics at start-up
("Invalid build/version/version.txt"): the release's version file is generated and not part of the
module. So provisioning copies the module source (`go mod download`), writes that file and runs
`go build`; the result is cached per version as `<cache>/bin/ferretdb-<version>`.
"""

from __future__ import annotations

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


def binary(settings: Settings) -> Path:
    return settings.cache_dir.expanduser() / "bin" / f"ferretdb-{settings.ferretdb_version}"


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
    """Return the ferretdb command line; SQLite files and state.json live in the state dir."""
    root = service_dir(settings, NAME)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    _, port = address(settings)
    return [
        str(binary(settings)),
        "--handler=sqlite",
        f"--sqlite-url=file:{data}/",
        f"--state-dir={root}",
        f"--listen-addr=127.0.0.1:{port}",
        "--debug-addr=-",  # no debug/metrics HTTP listener (default would take 127.0.0.1:8088)
        "--telemetry=disable",
        "--log-level=WARN",
        "--log-format=text",
    ]


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
