"""Kafka: the broker jars fetched with Maven, run on the machine's Java as KRaft nodes.

No Kafka distribution tarball is needed: `mvn dependency:copy-dependencies` on a generated pom pulls
`kafka_2.13` and its runtime dependencies into the cache, and each broker is started directly with
`java -cp '<libs>/*' kafka.Kafka server.properties` (combined broker + controller, no ZooKeeper).

One broker (service `kafka`) by default; with DEVSTACK_KAFKA_BROKERS=N, N brokers `kafka-1`..`kafka-N`, one per
KAFKA_BROKERS address, each its own process, data, log and pid, voting in one controller quorum: a cluster on
loopback for the fault tests. A broker's controller listens on its port + 1.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from devstack.process import (
    DevstackError,
    log_path,
    port_open,
    run,
    run_async,
    service_dir,
    service_lock,
    wait_for,
)
from shared.kafka.topics import TopicSpec, describe_topics, ensure_topics
from shared.settings import Settings

NAME = "kafka"
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
log4j.logger.kafka.server.ReplicaFetcherManager=WARN
log4j.logger.kafka.server.ReplicaFetcherThread=WARN
log4j.logger.kafka.server.metadata.BrokerMetadataPublisher=WARN
"""


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


@dataclass(frozen=True)
class Broker:
    """One KRaft node (broker and controller) of the devstack's Kafka: the devstack service interface of
    mariadb.py and the others, for broker `node_id` of `count`."""

    node_id: int
    count: int
    START_TIMEOUT = 120.0
    STOP_TIMEOUT = 60.0

    @property
    def name(self) -> str:
        return NAME if self.count == 1 else f"{NAME}-{self.node_id}"

    def address(self, settings: Settings) -> tuple[str, int]:
        return _address(_broker_addresses(settings)[self.node_id - 1])

    def controller(self, settings: Settings) -> str:
        host, port = self.address(settings)
        return f"{host}:{port + 1}"

    def provision(self, settings: Settings) -> None:
        provision(settings)

    def prepare(self, settings: Settings) -> list[str]:
        """Write server.properties/log4j.properties, format the KRaft storage once, return the java command."""
        root = service_dir(settings, self.name)
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
        props, log4j = root / "server.properties", root / "log4j.properties"
        props.write_text(self._server_properties(settings, data))
        log4j.write_text(LOG4J)
        jvm = ["java", f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs_dir(settings)}/*"]
        if not (data / "meta.properties").exists():
            storage = ["kafka.tools.StorageTool", "format", "-t", _cluster_id(settings), "-c", str(props)]
            run([*jvm, *storage, "--ignore-formatted"], what="kafka: storage format", log=log_path(settings, self.name))
        # Three brokers share two cores with the databases: smaller heaps than the single broker's.
        heap = ["-Xmx512m", "-Xms256m"] if self.count == 1 else ["-Xmx384m", "-Xms128m"]
        return ["java", *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true", *jvm[1:], "kafka.Kafka", str(props)]

    def _server_properties(self, settings: Settings, data: Path) -> str:
        host, port = self.address(settings)
        voters = ",".join(f"{b.node_id}@{b.controller(settings)}" for b in brokers(settings))
        # The internal topics as safe as the catalog's: the settings' spec for a cluster of this size.
        spec = TopicSpec.for_cluster(settings, self.count)
        props = {
            "node.id": str(self.node_id),
            "process.roles": "broker,controller",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{self.controller(settings)}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "controller.quorum.voters": voters,
            "log.dirs": str(data),
            "num.partitions": str(spec.partitions),
            "default.replication.factor": str(spec.replication_factor),
            "min.insync.replicas": str(spec.min_insync_replicas),
            "offsets.topic.replication.factor": str(spec.replication_factor),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(spec.replication_factor),
            "transaction.state.log.min.isr": str(spec.min_insync_replicas),
            "transaction.state.log.num.partitions": "10",
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash (SIGKILL in fault tests) the restarted broker waits for its old session to
            # expire before it is unfenced; the 9 s default made restarts take ~14 s. On a cluster the same
            # session decides how soon a killed broker's partitions get new leaders.
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "4000",
            "auto.create.topics.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "4" if self.count == 1 else "2",
            "log.retention.hours": "168",
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def ready(self, settings: Settings, timeout: float = 5.0) -> None:
        """The broker answers metadata and the cluster lists it (registered with the controller, unfenced); a single
        broker may be any cluster's (Docker, a managed service): one registered broker is enough there."""

        async def registered(admin: Any) -> None:
            found = await _registered(admin)
            if not found or (self.count > 1 and self.node_id not in found):
                raise DevstackError(f"{self.name}: not registered with the controller yet")

        run_async(lambda: self._with_admin(settings, timeout, registered))

    def ensure(self, settings: Settings, *, ours: bool) -> None:
        """Create every catalog topic of this environment that is missing, once every broker is registered: topics
        created while one is still starting would get too few replicas."""

        async def everyone(admin: Any) -> bool:
            return len(await _registered(admin)) >= self.count

        def create() -> None:
            if run_async(lambda: self._with_admin(settings, 10.0, everyone)):
                run_async(lambda: ensure_topics(self._laid_out(settings)))

        # A broker killed a moment ago is still listed until its session expires: the requests sent to it fail
        # until then, so failures are tried again for a while.
        wait_for(create, what="kafka: topics", timeout=60, log=log_path(settings, self.name))

    def _laid_out(self, settings: Settings) -> Settings:
        """The settings with the layout for the cluster devstack runs, whatever the brokers' metadata says now."""
        if self.count == 1:
            return settings  # also used for a cluster that something else runs, as its brokers describe it
        spec = TopicSpec.for_cluster(settings, self.count)
        layout = {
            "kafka_topic_partitions": spec.partitions,
            "kafka_replication_factor": spec.replication_factor,
            "kafka_min_insync_replicas": spec.min_insync_replicas,
        }
        return settings.model_copy(update=layout)

    def check(self, settings: Settings, timeout: float = 5.0) -> str:
        """Registered; with every broker registered, every topic exists and every partition has a leader."""
        self.ready(settings, timeout)
        report = run_async(lambda: describe_topics(settings))
        missing = [t.name for t in report.topics if not t.partitions]
        if report.brokers >= self.count and missing:
            raise DevstackError(f"kafka: topics missing: {missing}")
        leaderless = [t.name for t in report.topics if t.leaderless]
        if report.brokers >= self.count and leaderless:
            raise DevstackError(f"kafka: partitions without leader: {leaderless}")
        ready = f"{len(report.topics) - len(missing)} topics ready"
        if self.count == 1:
            return ready
        lagging = sum(t.under_replicated for t in report.topics)
        return (
            f"broker {self.node_id}, {report.brokers} of {self.count} registered; {ready}, {lagging} under-replicated"
        )

    async def _with_admin(self, settings: Settings, timeout: float, fn: Callable[[Any], Awaitable[T]]) -> T:
        """An admin client of this broker alone (its own answer, not the cluster's)."""
        from aiokafka.admin import AIOKafkaAdminClient

        host, port = self.address(settings)
        if not port_open(host, port):  # cheap first, and aiokafka would log every refused connection
            raise DevstackError(f"{self.name}: nothing listens on {host}:{port}")
        admin = AIOKafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=int(timeout * 1000))
        await admin.start()
        try:
            return await fn(admin)
        finally:
            await admin.close()


def brokers(settings: Settings) -> list[Broker]:
    """The brokers devstack runs: DEVSTACK_KAFKA_BROKERS of them (see `_broker_addresses`)."""
    count = settings.devstack_kafka_brokers
    ports = [_address(a)[1] for a in _broker_addresses(settings)]
    taken = ports + [p + 1 for p in ports]
    if len(set(taken)) != len(taken):
        raise DevstackError(f"kafka: a broker's port + 1 is its controller's: ports {ports} overlap")
    return [Broker(node_id, count) for node_id in range(1, count + 1)]


def _broker_addresses(settings: Settings) -> list[str]:
    """The first DEVSTACK_KAFKA_BROKERS addresses of KAFKA_BROKERS; one address alone is the first broker's, and the
    others take every second port after it (9092, 9094, 9096: each controller on its broker's port + 1)."""
    count = settings.devstack_kafka_brokers
    addresses = settings.kafka_bootstrap
    if len(addresses) == 1:
        host, port = _address(addresses[0])
        addresses = [f"{host}:{port + 2 * i}" for i in range(count)]
    if len(addresses) < count:
        raise DevstackError(f"kafka: DEVSTACK_KAFKA_BROKERS={count} needs as many KAFKA_BROKERS addresses: {addresses}")
    return addresses[:count]


def _address(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.rpartition(":")
    return host or "127.0.0.1", int(port or 9092)


def _cluster_id(settings: Settings) -> str:
    """One id for every broker of the cluster, made once (Kafka's Uuid format: 16 random bytes, URL-safe base64)."""
    id_file = service_dir(settings, NAME) / "cluster.id"
    with service_lock(settings, "kafka-cluster-id"):  # the brokers are prepared at once, in threads
        if not id_file.exists():
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())
        return id_file.read_text().strip()


async def _registered(admin: Any) -> set[int]:
    return {b["node_id"] for b in (await admin.describe_cluster()).get("brokers") or ()}
