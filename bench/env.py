"""The bench's own world on the devstack services: `<db>_bench` databases, per-run topics, tokens, processes.

Nothing here touches the development or test data: the MySQL and MongoDB databases end in `_bench`, every
topic starts with `bench.<run id>.` (deleted again at the end of the run) and consumer groups are new per run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import httpx
from alembic import command as alembic_command
from alembic.config import Config
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.auth import Role, issue_token
from projection.store import Doc, connect_read_model
from shared.kafka.topics import ensure_topics
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EVENTSHOP = str(Path(sys.executable).parent / "eventshop")
SUFFIX = "_bench"
UNLIMITED_RATE = 1_000_000  # the mutation rate limiter would otherwise cap every throughput figure


def _suffixed(name: str) -> str:
    return name if name.endswith(SUFFIX) else f"{name}{SUFFIX}"


def with_database(uri: str, database: str) -> str:
    """The MongoDB URI with its database replaced (hosts and options kept)."""
    scheme, rest = uri.split("://", 1)
    hosts, _, path = rest.partition("/")
    _, has_query, query = path.partition("?")
    return f"{scheme}://{hosts}/{database}" + (f"?{query}" if has_query else "")


def bench_settings(run_id: str) -> Settings:
    """The environment's settings pointed at the bench databases and this run's topics, auth on."""
    base = Settings()
    url = make_url(base.mysql_dsn)
    return base.model_copy(
        update={
            "mysql_dsn": url.set(database=_suffixed(url.database or "eventshop")).render_as_string(hide_password=False),
            "mongo_uri": with_database(base.mongo_uri, _suffixed(base.mongo_database)),
            "kafka_topic_prefix": f"{base.kafka_topic_prefix}bench.{run_id}.",
            "env": "bench",
            "auth_enabled": True,
            "jwt_secret": SecretStr(secrets.token_hex(32)),
            "jwt_public_key_file": None,
            "jwt_jwks_file": None,
            "jwt_algorithms": "HS256",
            "mutation_rate": float(UNLIMITED_RATE),
            "mutation_burst": UNLIMITED_RATE,
            "consumer_retries": 2,
            "consumer_retry_initial": 0.05,
            "consumer_retry_max": 0.2,
            "log_level": "WARNING",
        }
    )


class BenchEnv:
    """One run: its settings, its topic namespaces, its tokens, and the cleanup at the end."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.settings = bench_settings(self.run_id)
        self.log_dir = RESULTS / "logs"

    def namespace(self, name: str) -> Settings:
        """Settings whose topics live under `bench.<run>.<name>.` (a benchmark that needs empty topics)."""
        return self.settings.model_copy(update={"kafka_topic_prefix": f"{self.settings.kafka_topic_prefix}{name}."})

    def token(self, role: Role = Role.ADMIN, user_id: int | None = None) -> str:
        subject = "bench-admin" if role is Role.ADMIN else str(user_id)
        return issue_token(self.settings, role, subject, 3600)

    def headers(self, role: Role = Role.ADMIN, user_id: int | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, user_id)}"}

    # --- databases ---------------------------------------------------------------------------------

    async def reset_write_model(self) -> None:
        """Drop and recreate `<db>_bench`, then run the Alembic migrations (as tests/conftest.py does)."""
        url = make_url(self.settings.mysql_dsn)
        server = create_async_engine(url.set(database="").render_as_string(hide_password=False))
        try:
            async with server.begin() as conn:
                await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{url.database}`")
                await conn.exec_driver_sql(
                    f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        finally:
            await server.dispose()
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("script_location", str(ROOT / "migrations"))
        config.set_main_option("sqlalchemy.url", self.settings.mysql_dsn.replace("%", "%%"))
        await asyncio.to_thread(alembic_command.upgrade, config, "head")

    async def reset_read_model(self) -> tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc]]:
        """Drop `<mongo db>_bench` and reconnect, which recreates the view indexes."""
        name = self.settings.mongo_database
        client: AsyncMongoClient[Doc] = AsyncMongoClient(self.settings.mongo_uri, serverSelectionTimeoutMS=5000)
        try:
            await client.drop_database(name)
        finally:
            await client.close()
        return await connect_read_model(self.settings.mongo_uri, name)

    # --- Kafka -------------------------------------------------------------------------------------

    async def create_topics(self, settings: Settings, extra: Iterable[str] = ()) -> None:
        """The catalog topics of `settings` (and `extra` names, unprefixed) with 3 partitions each."""
        await ensure_topics(settings)
        names = [settings.topic(name) for name in extra]
        if names:
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                missing = [NewTopic(name=n, num_partitions=3, replication_factor=1) for n in names if n not in existing]
                if missing:
                    await admin.create_topics(missing)
            finally:
                await admin.close()

    async def delete_topics(self) -> int:
        """Delete every topic of this run (best effort; the data of a bench run is not kept)."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            ours = [t for t in await admin.list_topics() if t.startswith(self.settings.kafka_topic_prefix)]
            if ours:
                await admin.delete_topics(ours)
            return len(ours)
        finally:
            await admin.close()

    # --- processes ---------------------------------------------------------------------------------

    def process_env(self, settings: Settings, **extra: str) -> dict[str, str]:
        """The environment of an eventshop process on the bench databases and topics."""
        ours = ("MYSQL_", "MONGO_", "KAFKA_", "JWT_", "AUTH_", "MUTATION_", "PROJECTOR_", "STOCK_", "CONSUMER_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        assert settings.jwt_secret is not None
        env.update(
            MYSQL_DSN=settings.mysql_dsn,
            MONGO_URI=settings.mongo_uri,
            KAFKA_BROKERS=settings.kafka_brokers,
            KAFKA_TOPIC_PREFIX=settings.kafka_topic_prefix,
            ENV=settings.env,
            AUTH_ENABLED="true",
            JWT_SECRET=settings.jwt_secret.get_secret_value(),
            JWT_ALGORITHMS=settings.jwt_algorithms,
            MUTATION_RATE=str(settings.mutation_rate),
            MUTATION_BURST=str(settings.mutation_burst),
            PROJECTOR_GROUP=f"bench-projector-{self.run_id}",
            STOCK_WORKER_GROUP=f"bench-stock-{self.run_id}",
            CONSUMER_OFFSET_RESET="latest",  # ready (/readyz) means assigned: nothing published later is missed
            LOG_LEVEL="WARNING",
        )
        env.update(extra)
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A server subprocess on a free loopback port, with its log kept under bench/results/logs/."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log_file, stderr=subprocess.STDOUT)

    @classmethod
    def eventshop(cls, command: list[str], env: dict[str, str], log: Path) -> Process:
        port = free_port()
        argv = [EVENTSHOP, *command]
        if profile_dir := os.environ.get("BENCH_PROFILE_DIR"):  # python -m bench.profile all: under pyinstrument
            out = Path(profile_dir) / f"{log.stem}.pyisession"
            argv = [
                sys.executable,
                "-m",
                "pyinstrument",
                "-r",
                "pyisession",
                "-o",
                str(out),
                "-m",
                "eventshop.cli",
                *command,
            ]
        return cls(argv, {**env, "PORT": str(port), "HOST": "127.0.0.1"}, log, port)

    async def wait_ready(self, path: str = "/readyz", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.log.name}: exited with {self.proc.returncode}:\n{self.tail()}")
                try:
                    if (await http.get(self.url + path)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.log.name}: not ready within {timeout:g}s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful shutdown, as an orchestrator would), SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode
