"""Kafka: the broker jars fetched with Maven, run on the machine's Java as a single KRaft node.

No Kafka distribution tarball is needed: `mvn dependency:copy-dependencies` on a generated pom pulls
`kafka_2.13` and its runtime dependencies into the cache, and the broker is started directly with
`java -cp '<libs>/*' kafka.Kafka server.properties` (combined broker + controller, no ZooKeeper).
"""

from __future__ import annotations

import base64
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from devstack.process import DevstackError, log_path, port_open, run, run_async, service_dir
from shared.events import ALL_TOPICS
from shared.kafka.topics import ensure_topics
from shared.settings import Settings

NAME = "kafka"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
PARTITIONS = 3
SLF4J_VERSION = "1.7.36"
T = TypeVar("T")

POM = """<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>eventshop.devstack</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
log4j.logger.kafka.log=WARN
log4j.logger.kafka.cluster.Partition=WARN
log4j.logger.org.apache.kafka.controller.ReplicationControlManager=WARN
"""


def address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap[0].rpartition(":")
    return host or "127.0.0.1", int(port or 9092)


def libs_dir(settings: Settings) -> Path:
    return settings.cache_dir.expanduser() / "kafka" / "libs"


def _has_libs(libs: Path, version: str) -> bool:
    return (libs / f"kafka_2.13-{version}.jar").exists() and (libs / f"kafka-clients-{version}.jar").exists()


def provision(settings: Settings) -> None:
    """Fetch the broker jars for settings.kafka_version unless the cache already holds them."""
    if not shutil.which("java"):
        raise DevstackError("kafka: java (17+) is not on PATH")
    libs = libs_dir(settings)
    version = settings.kafka_version
    if _has_libs(libs, version):
        return
    if not shutil.which("mvn"):
        raise DevstackError("kafka: mvn is not on PATH (needed once to fetch the Kafka jars)")
    base = libs.parent
    base.mkdir(parents=True, exist_ok=True)
    (base / "pom.xml").write_text(POM.format(kafka=version, slf4j=SLF4J_VERSION))
    staging = base / "libs.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(base / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        what=f"kafka: mvn fetch of kafka_2.13:{version}",
        cwd=base,
        log=log_path(settings, "provision-kafka"),
    )
    if not _has_libs(staging, version):
        raise DevstackError(f"kafka: mvn finished but {staging} lacks kafka_2.13-{version}.jar")
    shutil.rmtree(libs, ignore_errors=True)  # jars of another version must not share the classpath
    staging.rename(libs)


def _server_properties(settings: Settings, data: Path) -> str:
    _, port = address(settings)
    controller = port + 1
    props = {
        "node.id": "1",
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "log.dirs": str(data),
        "num.partitions": str(PARTITIONS),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "group.initial.rebalance.delay.ms": "0",
        # After a crash (SIGKILL in fault tests) the restarted broker waits for its old session to
        # expire before it is unfenced; the 9 s default made restarts take ~14 s.
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
        "auto.create.topics.enable": "false",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.retention.hours": "168",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def prepare(settings: Settings) -> list[str]:
    """Write server.properties/log4j.properties, format the KRaft storage once, return the java command."""
    root = service_dir(settings, NAME)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    props, log4j = root / "server.properties", root / "log4j.properties"
    props.write_text(_server_properties(settings, data))
    log4j.write_text(LOG4J)
    classpath = f"{libs_dir(settings)}/*"
    jvm = ["java", f"-Dlog4j.configuration=file:{log4j}", "-cp", classpath]
    if not (data / "meta.properties").exists():
        id_file = root / "cluster.id"
        if not id_file.exists():
            # Kafka's Uuid format: 16 random bytes, URL-safe base64 without padding.
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())
        run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                id_file.read_text().strip(),
                "-c",
                str(props),
                "--ignore-formatted",
            ],
            what="kafka: storage format",
            log=log_path(settings, NAME),
        )
    return [
        "java",
        "-Xmx512m",
        "-Xms256m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        *jvm[1:],
        "kafka.Kafka",
        str(props),
    ]


async def _with_admin(settings: Settings, timeout: float, fn: Callable[[Any], Awaitable[T]]) -> T:
    from aiokafka.admin import AIOKafkaAdminClient

    host, port = address(settings)
    if not port_open(host, port):  # cheap first, and aiokafka would log every refused connection
        raise DevstackError(f"kafka: nothing listens on {host}:{port}")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        return await fn(admin)
    finally:
        await admin.close()


def ready(settings: Settings, timeout: float = 5.0) -> None:
    """The broker is ready when it answers metadata with at least one registered broker."""

    async def brokers(admin: Any) -> None:
        cluster = await admin.describe_cluster()
        if not cluster.get("brokers"):
            raise DevstackError("kafka: metadata lists no brokers yet")

    run_async(lambda: _with_admin(settings, timeout, brokers))


def ensure(settings: Settings, *, ours: bool) -> None:
    """Create every catalog topic of this environment that is missing (3 partitions, replication 1)."""
    try:
        run_async(lambda: ensure_topics(settings, PARTITIONS))
    except RuntimeError as exc:
        raise DevstackError(f"kafka: {exc}") from exc


def check(settings: Settings, timeout: float = 5.0) -> str:
    """Metadata answers, every topic exists and every partition has a leader (usable right away)."""

    async def probe(admin: Any) -> str:
        wanted = [settings.topic(t) for t in ALL_TOPICS]
        topics = {t["topic"]: t for t in await admin.describe_topics(wanted)}
        missing = [t for t in wanted if t not in topics or topics[t]["error_code"] != 0]
        if missing:
            raise DevstackError(f"kafka: topics missing: {missing}")
        leaderless = [t for t, d in topics.items() if any(p["leader"] < 0 for p in d["partitions"])]
        if leaderless:
            raise DevstackError(f"kafka: partitions without leader: {leaderless}")
        return f"{len(ALL_TOPICS)} topics ready"

    return run_async(lambda: _with_admin(settings, timeout, probe))
