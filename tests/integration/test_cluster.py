"""A three-broker Kafka cluster under faults: replicated topics, brokers killed and restarted while customers shop,
and consumer groups of several processes that lose one of each.

The module brings up its own KRaft cluster with devstack (DEVSTACK_KAFKA_BROKERS=3, a state dir and loopback ports
of its own, beside the single broker of the other tests) and stops it at the end. Each scenario runs the relay,
projector and stock worker as real `eventshop` processes on a lab of the cluster's (database, read model, topics
with the cluster's defaults: 12 partitions, replication factor 3, min ISR 2), keeps customers shopping while a
broker goes away and comes back, then checks what test_faults checks (every acknowledged order decided, the read
model equal to the write model, the stock exact), plus: no event of an aggregate overtook an earlier one in its
partition, and nothing went to a DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from structlog.testing import capture_logs

from devstack import down, start_service, status, stop_service, up
from devstack.kafka import brokers
from eventshop.ops.topics import OffsetRange, partitions, read_range, reader
from shared.events import ALL_TOPICS, dlq_topic, parse_event
from shared.kafka.topics import describe_topics, warn_about_topic_settings
from shared.settings import Settings
from tests.conftest import TEST_JWT_SECRET, eventually
from tests.integration.access import Live, admin_token
from tests.integration.test_faults import Components, FaultLab, Shop, Window
from tests.labs import EVENTSHOP, ROOT, consumer_group, kafka_admin, lab_of, process_env, scenario_rng

pytestmark = pytest.mark.slow

BROKERS = 3


def _free_pair(rng: random.Random) -> int:
    """A loopback port whose next port is free too (a broker's controller listens on port + 1)."""
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)  # below the ephemeral ports outgoing connections take
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of loopback ports")


@dataclass
class Cluster:
    """The module's three brokers, run by devstack in a state dir of their own."""

    settings: Settings

    @property
    def names(self) -> list[str]:
        return [b.name for b in brokers(self.settings)]

    async def kill(self, name: str) -> None:
        assert await asyncio.to_thread(stop_service, self.settings, name, True), f"{name} is not devstack's"

    async def stop(self, name: str) -> None:
        """SIGTERM: the broker's controlled shutdown moves its leaderships first."""
        assert await asyncio.to_thread(stop_service, self.settings, name), f"{name} is not devstack's"

    async def start(self, name: str) -> None:
        await asyncio.to_thread(start_service, self.settings, name)

    async def in_sync(self, timeout: float = 90.0) -> None:
        """Every broker back in every partition's in-sync replicas (the next fault starts from a whole cluster)."""

        async def whole() -> bool:
            report = await describe_topics(self.settings)
            return report.brokers == BROKERS and not any(t.under_replicated or t.leaderless for t in report.topics)

        await eventually(whole, timeout=timeout, interval=0.5)


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    rng = random.Random()
    ports = []
    while len(ports) < BROKERS:
        port = _free_pair(rng)
        if all(abs(port - p) > 1 for p in ports):
            ports.append(port)
    state = tmp_path_factory.mktemp("kafka-cluster")
    own = settings.model_copy(
        update={
            "state_dir": state,
            "devstack_kafka_brokers": BROKERS,
            "kafka_brokers": ",".join(f"127.0.0.1:{p}" for p in ports),
        }
    )
    names = [b.name for b in brokers(own)]
    try:
        up(own, echo=print, only=names)
        yield Cluster(own)
    finally:
        down(own, echo=print, only=names)
        for name in names:  # the logs stay for a failure's post-mortem, the data goes
            shutil.rmtree(state / name / "data", ignore_errors=True)


@dataclass
class ClusterLab(FaultLab):
    cluster: Cluster

    async def dead_lettered(self) -> int:
        tps = await partitions(self.settings, [dlq_topic(self.settings.topic(t)) for t in ALL_TOPICS])
        async with reader(self.settings) as consumer:
            return sum((await consumer.end_offsets(tps)).values()) if tps else 0

    async def busiest_leader(self) -> str:
        """The broker that leads the partitions holding the most events of this lab."""
        topics = [self.settings.topic(t) for t in ALL_TOPICS]
        async with kafka_admin(self.settings) as admin:
            described = await admin.describe_topics(topics)
        leaders = {TopicPartition(d["topic"], p["partition"]): p["leader"] for d in described for p in d["partitions"]}
        async with reader(self.settings) as consumer:
            ends = await consumer.end_offsets(list(leaders))
        load: Counter[int] = Counter()
        for tp, end in ends.items():
            load[leaders[tp]] += end
        node, _ = load.most_common(1)[0]
        return self.cluster.names[node - 1]

    async def in_partition_order(self) -> None:
        """In every partition, each aggregate's events come in version order: a version lower than one already
        read is only ever a repeat of one read before (a re-send), never an event that overtook an earlier one."""
        tps = await partitions(self.settings, [self.settings.topic(t) for t in ALL_TOPICS if t != "views.changed"])
        overtaken: list[str] = []
        async with reader(self.settings) as consumer:
            offsets = OffsetRange(await consumer.beginning_offsets(tps), await consumer.end_offsets(tps))
            seen: dict[tuple[TopicPartition, str], set[int]] = {}
            async for batch in read_range(consumer, offsets):
                for tp, records in batch.items():
                    for record in records:
                        event = parse_event(record.value)
                        versions = seen.setdefault((tp, str(event.aggregate_id)), set())
                        version = event.aggregate_version
                        if versions and version < max(versions) and version not in versions:
                            overtaken.append(f"{tp.topic}[{tp.partition}] {event.aggregate_id} v{version}")
                        versions.add(version)
        assert not overtaken, overtaken[:20]


@pytest.fixture(scope="module")
async def lab(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterLab]:
    retries = {"consumer_retries": 5, "consumer_retry_initial": 0.2, "consumer_retry_max": 2.0}
    async with lab_of(cluster.settings, "cluster", **retries) as lab:
        components = Components(process_env(lab.settings), tmp_path_factory.mktemp("cluster-logs"))
        for name in ("relay", "projector", "stock-worker"):
            components.start(name)
        try:
            yield ClusterLab(lab.settings, lab.write_db, lab.mongo, components, cluster)
        finally:
            components.stop_all()


@pytest.fixture
def rng() -> random.Random:
    return scenario_rng("cluster")


async def under_load(
    lab: ClusterLab,
    rng: random.Random,
    fault: Callable[[Shop], Awaitable[None]],
    *,
    clients: int = 8,
    before: int = 20,
    after: int = 20,
) -> Shop:
    """`clients` customers shop; `fault(shop)` breaks something while a command is in flight; they shop on until
    `after` orders were placed after it. Then: every acknowledged order decided, views equal to the write model,
    stock exact, per-aggregate order kept in every partition, no DLQ message, the cluster whole again."""
    shop = Shop(lab.write_db)
    await shop.open()
    closing = asyncio.Event()
    trading = [asyncio.create_task(shop.trade(random.Random(rng.random()), closing)) for _ in range(clients)]

    async def until(enough: Callable[[], bool]) -> None:
        async def reached() -> bool:
            for task in trading:
                if task.done():
                    task.result()
                    raise AssertionError("the trading stopped")
            return enough()

        await eventually(reached, timeout=180, interval=0.02)

    try:
        await until(lambda: len(shop.orders) >= before)
        await eventually(lambda: decided(lab, shop.orders[:before]), timeout=90, interval=0.2)  # the pipeline flows
        await until(shop.busy.is_set)
        began = time.monotonic()
        await fault(shop)
        window = Window(began, time.monotonic())
        await until(lambda: len(shop.placed_after(window.ended)) >= after)
    finally:
        closing.set()
        await asyncio.gather(*trading)
    shop.assert_hit_by(window, mysql_down=False)  # no command failed: the write side needs MySQL only
    shop.assert_trading_went_on_after(window)
    await lab.settled(shop, timeout=180)
    await lab.projected(shop.placed_after(window.ended))
    await lab.in_partition_order()
    assert await lab.dead_lettered() == 0
    await lab.cluster.in_sync()
    return shop


async def decided(lab: ClusterLab, orders: list[int]) -> bool:
    """Every one of these orders left CREATED (the stock worker decided it from its published event)."""
    if not orders:
        return False
    marks = ",".join(["%s"] * len(orders))
    rows = await lab.rows(f"SELECT COUNT(*) FROM orders WHERE status = 'CREATED' AND id IN ({marks})", *orders)
    return rows[0][0] == 0


async def test_the_cluster_s_topics_are_replicated_and_checked_against_the_settings(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Created with the cluster's defaults; `eventshop topics check` describes them from the cluster, and names
    what differs when the settings ask for another layout (the topics themselves are left as they are)."""
    report = await describe_topics(cluster.settings)
    assert report.brokers == BROKERS
    assert {(t.partitions, t.replication_factor, t.min_insync_replicas) for t in report.topics} == {(12, 3, 2)}
    env = {**process_env(cluster.settings), "COLUMNS": "250"}
    ok = await _eventshop(env, "topics", "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 broker(s); settings: 12 partitions, replication factor 3, min.insync.replicas 2" in ok.stdout
    other = {**env, "KAFKA_TOPIC_PARTITIONS": "24", "KAFKA_MIN_INSYNC_REPLICAS": "3"}
    differ = await _eventshop(other, "topics", "check")
    assert differ.returncode == 1
    assert "partitions 12 (settings: 24); min.insync.replicas 2 (settings: 3)" in differ.stdout
    assert f"{len(ALL_TOPICS)} topic(s) differ from the settings" in differ.stderr
    assert {t.partitions for t in (await describe_topics(cluster.settings)).topics} == {12}  # not altered
    with capture_logs() as logs:
        await warn_about_topic_settings(cluster.settings.model_copy(update={"kafka_topic_partitions": 24}))
    warned = [e for e in logs if e["event"] == "kafka.topic_settings_differ"]
    assert {e["topic"] for e in warned} == {cluster.settings.topic(t) for t in ALL_TOPICS}
    assert all(e["log_level"] == "warning" and e["differences"] == ["partitions 12 (settings: 24)"] for e in warned)
    with capture_logs() as logs:
        await warn_about_topic_settings(cluster.settings)
    assert not [e for e in logs if e["event"] == "kafka.topic_settings_differ"]


async def test_topics_create_makes_the_missing_topics_as_the_settings_say_or_refuses_and_makes_none(
    cluster: Cluster,
) -> None:
    fresh = cluster.settings.model_copy(update={"kafka_topic_prefix": f"{cluster.settings.kafka_topic_prefix}create."})
    wanted = {fresh.topic(t) for t in ALL_TOPICS}
    env = {**process_env(fresh), "COLUMNS": "250"}
    try:
        refused = await _eventshop({**env, "KAFKA_REPLICATION_FACTOR": "4"}, "topics", "create")
        assert refused.returncode == 1 and "topics not created" in refused.stderr, refused.stderr
        async with kafka_admin(fresh) as admin:
            assert wanted.isdisjoint(await admin.list_topics())
        created = await _eventshop({**env, "KAFKA_TOPIC_PARTITIONS": "6"}, "topics", "create")
        assert created.returncode == 0, created.stdout + created.stderr
        report = await describe_topics(fresh.model_copy(update={"kafka_topic_partitions": 6}))
        assert {(t.partitions, t.replication_factor, t.min_insync_replicas) for t in report.topics} == {(6, 3, 2)}
    finally:
        async with kafka_admin(fresh) as admin:
            await admin.delete_topics(sorted(wanted & set(await admin.list_topics())))


async def test_devstack_lists_each_broker_and_brings_a_killed_one_back(cluster: Cluster) -> None:
    victim = cluster.names[1]
    await cluster.kill(victim)
    others = sorted(set(cluster.names) - {victim})

    async def deregistered() -> dict[str, str] | None:
        """Once the controller let the killed broker's session expire (4 s), the others answer without it."""
        lines = await asyncio.to_thread(status, cluster.settings)
        return lines if all("2 of 3 registered" in lines[name] for name in others) else None

    try:
        lines = await eventually(deregistered, timeout=30, interval=1.0)
        assert lines[victim].startswith("stopped; not answering"), lines[victim]
        for name in others:
            assert lines[name].startswith("devstack pid ") and "; answering at " in lines[name], lines[name]
    finally:
        await asyncio.to_thread(up, cluster.settings, print, cluster.names)  # starts the missing one only
    env = {**process_env(cluster.settings), "STATE_DIR": str(cluster.settings.state_dir), "DEVSTACK_KAFKA_BROKERS": "3"}
    shown = await _eventshop(env, "devstack", "status")
    for name in cluster.names:
        (line,) = [row for row in shown.stdout.splitlines() if row.startswith(f"{name}: ")]
        assert line.startswith(f"{name}: devstack pid ") and "3 of 3 registered" in line, shown.stdout
    await cluster.in_sync()


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_the_broker_leading_the_busiest_partitions_goes_down_under_load_and_comes_back(
    lab: ClusterLab, rng: random.Random, how: str
) -> None:
    """`kill`: SIGKILL of the busiest leader: its partitions get new leaders among the in-sync replicas, the
    relay's unacked sends are retried there, orders go on being decided while it is down, and it rejoins.
    `stop`: a controlled shutdown (SIGTERM) moves the broker's leaderships away before it stops, then it comes
    back."""

    async def fault(shop: Shop) -> None:
        victim = await lab.busiest_leader()
        await (lab.cluster.kill if how == "kill" else lab.cluster.stop)(victim)
        down = time.monotonic()
        try:
            await eventually(lambda: decided(lab, shop.placed_after(down)[:10]), timeout=90, interval=0.2)
        finally:
            await lab.cluster.start(victim)

    await under_load(lab, rng, fault)


async def test_two_of_three_brokers_down_writes_go_on_and_the_relay_waits(lab: ClusterLab, rng: random.Random) -> None:
    """With one broker left, no partition has its two in-sync replicas (and the controllers no quorum): nothing
    can be acked. Orders keep being accepted into MySQL, the outbox grows, the relay waits without skipping a
    row, and no consumer dead-letters anything; with a second broker back everything flows."""

    async def fault(shop: Shop) -> None:
        first, second = lab.cluster.names[:2]
        await lab.cluster.kill(first)
        await lab.cluster.kill(second)
        down_since = time.monotonic()
        try:

            async def outbox_growing() -> bool:
                waiting = (await lab.rows("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL"))[0][0]
                return len(shop.placed_after(down_since)) >= 10 and waiting >= 10

            await eventually(outbox_growing, timeout=90, interval=0.2)
            failed_before = lab.components.log("relay", chars=None).count("relay.error")

            async def relay_gave_up_a_batch() -> bool:  # its acks outwaited (30 s): the batch is sent again
                return lab.components.log("relay", chars=None).count("relay.error") > failed_before

            await eventually(relay_gave_up_a_batch, timeout=90, interval=0.5)
            lab.components.alive()
            await lab.cluster.start(first)
            back = time.monotonic()
            await eventually(lambda: decided(lab, shop.placed_after(back)[:10]), timeout=120, interval=0.2)
        finally:
            await lab.cluster.start(first)
            await lab.cluster.start(second)

    await under_load(lab, rng, fault)


VIEWED = """subscription { orderUpdates { id status version } }"""


@dataclass
class Watcher:
    """A gateway's subscription to every order's changes: the newest version seen of each order."""

    live: Live
    newest: dict[int, int]

    async def watch(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                result = await self.live.next(timeout=300)
                order = result["data"]["orderUpdates"]
                self.newest[int(order["id"])] = max(self.newest.get(int(order["id"]), 0), order["version"])


async def test_two_stock_workers_and_two_projectors_lose_one_each_under_load(
    lab: ClusterLab, rng: random.Random, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two of each consumer on 12 partitions; one of each SIGKILLed mid-load: the groups rebalance onto the
    survivors, and nothing is lost or applied twice. Two gateways serve subscriptions to every order throughout:
    both send the same changes, and every order placed after the fault reaches its last version on both.

    (An order the killed projector had written but not yet announced may show its last version only with its next
    change: the event, delivered again, finds its view written and announces nothing. The count is printed.)"""
    lab.components.start("stock-worker", instance="stock-worker-2")
    lab.components.start("projector", instance="projector-2")
    groups = (lab.settings.stock_worker_group, lab.settings.projector_group)

    async def members(count: int) -> bool:
        """Each group has `count` members, each assigned partitions (a group being formed may have no coordinator
        yet)."""
        try:
            described = [await consumer_group(lab.settings, g) for g in groups]
        except (KafkaError, AssertionError):  # not coordinator (yet): asked again
            return False
        return all(len(g.members) == count and all(g.members.values()) for g in described)

    await eventually(lambda: members(2), timeout=90, interval=0.5)
    env = process_env(lab.settings, ENV="test", JWT_SECRET=TEST_JWT_SECRET, CONSUMER_OFFSET_RESET="latest")
    logs = tmp_path_factory.mktemp("cluster-gateways")
    gateways = [_gateway(env, logs / f"gateway-{i}.log") for i in (1, 2)]
    watchers: list[Watcher] = []
    try:
        for _, port in gateways:
            await eventually(lambda port=port: _ready(port), timeout=60, interval=0.2)  # type: ignore[misc]
            live = await Live(f"http://127.0.0.1:{port}", VIEWED, {}, admin_token()).__aenter__()
            watchers.append(Watcher(live, {}))
        watching = [asyncio.create_task(w.watch()) for w in watchers]

        repaired: list[float] = []

        async def fault(shop: Shop) -> None:
            for name in ("stock-worker", "projector"):  # the second of each goes on alone under the first's name
                lab.components.kill(name)
                lab.components.procs[name] = lab.components.procs.pop(f"{name}-2")
            await eventually(lambda: members(1), timeout=60, interval=0.5)
            repaired.append(time.monotonic())

        shop = await under_load(lab, rng, fault, after=30)
        marks = ",".join(["%s"] * len(shop.orders))
        written = dict(await lab.rows(f"SELECT id, version FROM orders WHERE id IN ({marks})", *shop.orders))
        after = shop.placed_after(repaired[0])
        assert after

        async def both_gateways_sent_every_later_change() -> bool:
            first, second = ({o: w.newest.get(o) for o in written} for w in watchers)
            return first == second and all(first[o] == written[o] for o in after)

        await eventually(both_gateways_sent_every_later_change, timeout=60, interval=0.5)
        behind = [o for o, v in written.items() if watchers[0].newest.get(o) != v]
        print(f"orders {len(written)}, placed after the fault {len(after)}, last version not announced {behind}")
        for task in watching:
            task.cancel()
    finally:
        for watcher in watchers:
            await watcher.live.__aexit__()
        for proc, _ in gateways:
            proc.terminate()
            proc.wait(30)
        for extra in ("stock-worker-2", "projector-2"):  # if the fault never came
            if (proc := lab.components.procs.pop(extra, None)) is not None:
                proc.terminate()


async def _eventshop(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`eventshop <args>` run to its end, its output captured."""
    return await asyncio.to_thread(
        subprocess.run, [EVENTSHOP, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _gateway(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    from tests.labs import free_port

    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen([EVENTSHOP, "gateway", "--port", str(port)], env=env, cwd=ROOT, stdout=out, stderr=out)
    return proc, port


async def _ready(port: int) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{port}/readyz", timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False
