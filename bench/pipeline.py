"""Pipeline capacity: from an accepted createOrder to a decided order (RESERVED or REJECTED) in the read model.

CLIENTS closed-loop clients place 1-3 line orders over USERS customers and PRODUCTS products as fast as the
gateway answers, for a fixed time, through the real gateway, on each layout:
- one process: `eventshop all`;
- gateway and workers: `eventshop gateway` and `eventshop workers` (relay, stock worker and projector), the two
  processes of `eventshop all --processes 2`, which `make run` starts since this bench chose it;
- per component: `eventshop gateway`, `relay`, `stock-worker` and `projector`, four processes.
An order is decided when the projector announces (`views.changed`, read from its end) the order's view in a
decided status; its Kafka timestamp, stamped by the projector after the write, is when the read model had it.
Reported per layout: accepted/s, decided/s during the load and decided/accepted, the catch-up after the load
(until every accepted order is decided), response -> decided p50/p99, and the CPU time per accepted order of
every process on the machine that takes part, read from /proc: the eventshop processes and each backing service
(MariaDB, Kafka, FerretDB, PostgreSQL, all of whose processes count), and the bench's own client apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from bench.chart import bar_chart
from bench.env import RESULTS, BenchEnv, Process, free_port
from bench.latency import CREATE_ORDER, seed_customers
from bench.stats import Figure, latency_summary
from gateway.auth import Role
from shared.events import Topic, decode_view_change
from shared.settings import Settings

CLIENTS = 8
USERS = 100
PRODUCTS = 100
CATCH_UP_LIMIT = 180.0  # seconds after the load before undecided orders count as lost
DECIDED = frozenset({"RESERVED", "REJECTED", "PAID", "PROCESSING", "SHIPPED", "DELIVERED", "CANCELED", "EXPIRED"})
LAYOUTS: dict[str, list[list[str]]] = {
    "one process": [["all"]],
    "gateway and workers": [["gateway"], ["workers"]],
    "per component": [["gateway"], ["relay"], ["stock-worker"], ["projector"]],
}
PROGRAMS = {"mariadbd": "MariaDB", "mysqld": "MariaDB", "ferretdb": "FerretDB", "postgres": "PostgreSQL"}
"""A backing service's processes by their program's name (every PostgreSQL backend is a process of its own)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (threads included), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _role(command: str) -> str | None:
    """The backing service a command line belongs to: Kafka by its main class (its program is java), the others
    by their program."""
    if "kafka.Kafka" in command:
        return "Kafka"
    program = os.path.basename(command.split(" ", 1)[0])
    return next((role for prefix, role in PROGRAMS.items() if program.startswith(prefix)), None)


def _services() -> Iterator[tuple[int, str]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (role := _role(_cmdline(int(entry)))) is not None:
            yield int(entry), role


@dataclass
class CpuMeter:
    """CPU seconds per role over an interval: the named processes and every backing service's processes
    (those that started during the interval count whole)."""

    roles: dict[int, str]
    start: dict[int, float] = field(default_factory=dict)

    @classmethod
    def begin(cls, processes: dict[int, str]) -> CpuMeter:
        roles = {**dict(_services()), **processes, os.getpid(): "bench client"}
        meter = cls(roles)
        meter.start = {pid: _cpu_seconds(pid) for pid in roles}
        return meter

    def spent(self) -> dict[str, float]:
        roles = {**dict(_services()), **self.roles}
        spent: dict[str, float] = {}
        for pid, role in roles.items():
            spent[role] = spent.get(role, 0.0) + _cpu_seconds(pid) - self.start.get(pid, 0.0)
        return spent


@dataclass
class Decisions:
    """The first decided announcement of each order on `views.changed`: order id -> Kafka timestamp (s)."""

    topic: str
    brokers: list[str]
    decided: dict[int, float] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, ready: asyncio.Event, stopping: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.brokers, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            ready.set()
            while not stopping.is_set():
                for records in (await consumer.getmany(timeout_ms=100, max_records=5000)).values():
                    for record in records:
                        message = decode_view_change(record.value or b"")
                        if message["kind"] == "order" and message["document"]["status"] in DECIDED:
                            self.decided.setdefault(int(message["id"]), record.timestamp / 1000)
                self.arrived.set()
        finally:
            await consumer.stop()

    async def until(self, orders: list[int], timeout: float) -> float:
        """Seconds until every one of `orders` is decided (bounded by `timeout`)."""
        t0 = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while any(o not in self.decided for o in orders):
                    self.arrived.clear()
                    await self.arrived.wait()
        return time.perf_counter() - t0


@dataclass
class Accepted:
    order_id: int
    responded: float  # wall clock when the response arrived
    took: float  # request -> response, seconds


async def client(
    url: str, token: str, users: list[int], products: list[int], seed: int, until: float
) -> list[Accepted]:
    """Orders one after the other as fast as the gateway answers, until the monotonic deadline `until`."""
    rng = random.Random(seed)
    accepted: list[Accepted] = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        while time.monotonic() < until:
            items = [
                {"productId": str(p), "quantity": rng.randint(1, 3)} for p in rng.sample(products, rng.randint(1, 3))
            ]
            variables = {"i": {"userId": str(rng.choice(users)), "items": items}}
            t0 = time.perf_counter()
            body = (await http.post("/graphql", json={"query": CREATE_ORDER, "variables": variables})).json()
            if body.get("errors"):
                raise RuntimeError(f"createOrder failed: {body['errors']}")
            accepted.append(Accepted(int(body["data"]["createOrder"]["id"]), time.time(), time.perf_counter() - t0))
    return accepted


@contextlib.asynccontextmanager
async def layout(
    env: BenchEnv, settings: Settings, name: str, commands: list[list[str]]
) -> AsyncIterator[list[Process]]:
    """The layout's processes on `settings` (the gateway, or `all`, first and ready)."""
    process_env = env.process_env(settings, CONSUMER_OFFSET_RESET="earliest")  # fresh topics: nothing is missed
    slug = name.replace(" ", "-")
    processes = [
        Process.eventshop(
            command,
            {**process_env, "METRICS_PORT": str(free_port())},
            env.log_dir / f"pipeline-{slug}-{command[0]}.log",
        )
        for command in commands
    ]
    try:
        await processes[0].wait_ready()
        yield processes
    finally:
        for process in processes:
            process.stop()


@dataclass
class Load:
    """The orders CLIENTS accepted from `began` to `ended` (wall clock), how many were decided by then, how long the
    rest took to be decided, and the CPU each role spent meanwhile."""

    accepted: list[Accepted]
    began: float
    ended: float
    decided_during: int
    catch_up: float
    cpu: dict[str, float]


async def measure(env: BenchEnv, name: str, commands: list[list[str]], seconds: float) -> dict[str, Any]:
    settings = env.namespace(f"pipeline-{name.replace(' ', '-')}")
    await env.reset_write_model()
    client_, _ = await env.reset_read_model()
    await client_.close()
    await env.create_topics(settings)
    decisions = Decisions(settings.topic(Topic.VIEWS_CHANGED), settings.kafka_bootstrap)
    stopping, ready = asyncio.Event(), asyncio.Event()
    tail = asyncio.create_task(decisions.run(ready, stopping))
    try:
        await ready.wait()
        async with layout(env, settings, name, commands) as processes:
            load = await under_load(env, name, decisions, processes, commands, seconds)
    finally:
        stopping.set()
        await asyncio.gather(tail, return_exceptions=True)
    return summary(name, load, decisions)


async def under_load(
    env: BenchEnv,
    name: str,
    decisions: Decisions,
    processes: list[Process],
    commands: list[list[str]],
    seconds: float,
) -> Load:
    """CLIENTS in a closed loop on the layout's gateway for `seconds`, after a warm-up in which every component has
    joined and decided an order (consumers assigned, caches filled); then until every order is decided."""
    gateway = processes[0]
    users, products = await seed_customers(gateway.url, env.headers(Role.ADMIN), USERS, PRODUCTS)
    token = env.token(Role.ADMIN)
    warm = await client(gateway.url, token, users, products, seed=-1, until=time.monotonic() + 2.0)
    if await decisions.until([a.order_id for a in warm], 60.0) >= 60.0:
        raise RuntimeError(f"{name}: the warm-up orders were not decided within 60 s")
    meter = CpuMeter.begin({p.proc.pid: command[0] for p, command in zip(processes, commands, strict=True)})
    began = time.time()
    deadline = time.monotonic() + seconds
    runs = await asyncio.gather(
        *(client(gateway.url, token, users, products, seed=n, until=deadline) for n in range(CLIENTS))
    )
    ended = time.time()
    accepted = [a for run in runs for a in run]
    ids = [a.order_id for a in accepted]
    during = sum(1 for o in ids if decisions.decided.get(o, float("inf")) <= ended)
    catch_up = await decisions.until(ids, CATCH_UP_LIMIT)
    return Load(accepted, began, ended, during, catch_up, meter.spent())


def summary(name: str, load: Load, decisions: Decisions) -> dict[str, Any]:
    accepted, during, load_end = load.accepted, load.decided_during, load.ended
    undecided = sum(1 for a in accepted if a.order_id not in decisions.decided)
    elapsed = load_end - load.began
    to_decided = [
        decisions.decided[a.order_id] - a.responded
        for a in accepted
        if a.order_id in decisions.decided and decisions.decided[a.order_id] <= load_end
    ]
    n = len(accepted)
    return {
        "layout": name,
        "seconds": elapsed,
        "accepted": n,
        "accepted_per_s": n / elapsed,
        "decided_during_load": during,
        "decided_per_s": during / elapsed,
        "decided_over_accepted": during / n if n else 0.0,
        "undecided_after_catch_up": undecided,
        "catch_up_s": load.catch_up,
        "response_to_decided_ms": latency_summary(to_decided),
        "create_order_ms": latency_summary([a.took for a in accepted]),
        "cpu_ms_per_order": {role: 1000 * s / n for role, s in sorted(load.cpu.items())} if n else {},
    }


def _write(output: Path, data: dict[str, Any]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2))


def figures_of(result: dict[str, Any]) -> list[Figure]:
    name = result["layout"]
    cpu = result["cpu_ms_per_order"]
    total = sum(ms for role, ms in cpu.items() if role != "bench client")
    decided = result["response_to_decided_ms"]
    return [
        Figure(
            "pipeline",
            f"{name}: accepted / decided orders per second",
            "orders/s",
            result["decided_per_s"],
            display=f"{result['accepted_per_s']:.0f} / {result['decided_per_s']:.0f}",
            goal=">= 120 decided/s, decided/accepted >= 0.9",
            goal_met=result["decided_per_s"] >= 120 and result["decided_over_accepted"] >= 0.9,
            note=f"{CLIENTS} clients for {result['seconds']:.0f} s; decided/accepted "
            f"{result['decided_over_accepted']:.2f}; {result['undecided_after_catch_up']} never decided",
        ),
        Figure(
            "pipeline",
            f"{name}: catch-up after the load",
            "s",
            result["catch_up_s"],
            higher_is_better=False,
            goal="<= 3 s",
            goal_met=result["catch_up_s"] <= 3.0,
        ),
        Figure(
            "pipeline",
            f"{name}: response -> decided in the read model (p50 / p99)",
            "ms",
            decided["p50"],
            display=f"{decided['p50']:.0f} / {decided['p99']:.0f} ms",
            higher_is_better=False,
            goal="p99 <= 2000 ms",
            goal_met=decided["p99"] <= 2000,
            details=decided,
        ),
        Figure(
            "pipeline",
            f"{name}: CPU per accepted order, every process",
            "ms",
            total,
            higher_is_better=False,
            display=f"{total:.1f} ms",
            goal="<= 13 ms",
            goal_met=total <= 13.0,
            note=", ".join(f"{role} {ms:.1f}" for role, ms in cpu.items()),
            details=cpu,
        ),
    ]


async def run(env: BenchEnv, seconds: float = 60.0, output: Path = RESULTS / "pipeline.json") -> list[Figure]:
    results = [await measure(env, name, commands, seconds) for name, commands in LAYOUTS.items()]
    _write(output, {"measured": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "layouts": results})
    roles = sorted({role for r in results for role in r["cpu_ms_per_order"]})
    output.with_suffix(".svg").write_text(
        bar_chart(
            f"CPU ms per accepted order ({CLIENTS} clients, {seconds:.0f} s)",
            [r["layout"] for r in results],
            {role: [r["cpu_ms_per_order"].get(role, 0.0) for r in results] for role in roles},
        )
    )
    return [f for r in results for f in figures_of(r)]
