"""Gateway throughput with 1 and 2 worker processes on one port (`eventshop gateway --workers N`).

Real processes on the bench databases: `eventshop gateway --workers 1`, then `--workers 2`, each started on a free
port (bench/env.py) and driven by bench/reads.py's closed loop (CONCURRENCY keep-alive connections for a fixed
time) with two workloads:
- read-heavy: `order(id)` (as admin) and `products(first: 20)`, one or the other at random, on the documents
  bench/reads.py seeds;
- writes: createOrder with two lines (as admin: no rate limit), written to MySQL by the gateway's handler; no
  relay runs, so the outbox only grows (as in bench/writes.py).
Each figure is 2 workers against 1 worker, measured in the same run, in turns. How the connections spread over the
workers is read from `eventshop_gateway_worker_requests` (per worker pid) after each workload.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bench.env import BenchEnv, Process
from bench.reads import CONCURRENCY, ORDER, PRODUCTS_PAGE, Request, answer, drive, seed
from bench.stats import Figure, latency_summary
from bench.writes import CREATE_ORDER

WORKER_COUNTS = (1, 2)  # the first is the baseline
ROUNDS = 2
# One series per worker pid with several; one without labels for a lone gateway.
_PER_WORKER = re.compile(r'^eventshop_gateway_worker_requests(?:\{pid="(\d+)"\})? (\S+)$', re.MULTILINE)


@dataclass
class Measured:
    """One workload on one gateway: requests/s, their latencies, and the requests each worker answered."""

    rate: float
    took: list[float]
    per_worker: list[float]


@dataclass
class Workloads:
    """The two request makers, on the seeded shop."""

    read: Callable[[], Request]
    write: Callable[[], Request]

    @classmethod
    async def on(cls, env: BenchEnv, owners: dict[int, int], url: str) -> Workloads:
        """`owners` (order id -> user id) as bench/reads.py seeded them; the products are read through `url`."""
        orders, users = sorted(owners), sorted(set(owners.values()))
        page = await answer(url, (PRODUCTS_PAGE, {}, env.headers()))
        products = [int(node["id"]) for node in page["data"]["products"]["nodes"]]
        admin = env.headers()
        rng = random.Random(13)

        def read() -> Request:
            if rng.random() < 0.5:
                return ORDER, {"id": str(rng.choice(orders))}, admin
            return PRODUCTS_PAGE, {}, admin

        def write() -> Request:
            items = [{"productId": str(p), "quantity": rng.randint(1, 3)} for p in rng.sample(products, 2)]
            return CREATE_ORDER, {"input": {"userId": str(rng.choice(users)), "items": items}, "key": None}, admin

        return cls(read, write)


async def requests_per_worker(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        text = (await http.get("/metrics")).text
    return {pid: float(count) for pid, count in _PER_WORKER.findall(text)}


async def measure(url: str, make: Callable[[], Request], seconds: float) -> Measured:
    before = await requests_per_worker(url)
    rate, took = await drive(url, make, seconds)
    after = await requests_per_worker(url)
    return Measured(rate, took, sorted((after[pid] - before.get(pid, 0.0) for pid in after), reverse=True))


def combined(rounds: list[Measured]) -> Measured:
    per_worker = [sum(shares) for shares in zip(*(r.per_worker for r in rounds), strict=True)]
    return Measured(sum(r.rate for r in rounds) / len(rounds), [t for r in rounds for t in r.took], per_worker)


async def run(env: BenchEnv, seconds: float = 3.0) -> list[Figure]:
    """Both gateways run side by side (an idle one costs no CPU) and take turns, ROUNDS times per workload, so
    that a change in the machine's load (the services share its cores) falls on both."""
    owners = await seed(env)
    gateways = {
        count: Process.eventshop(
            ["gateway", "--workers", str(count)], env.process_env(env.settings), env.log_dir / f"workers-{count}.log"
        )
        for count in WORKER_COUNTS
    }
    results: dict[int, dict[str, Measured]] = {count: {} for count in WORKER_COUNTS}
    try:
        await asyncio.gather(*(g.wait_ready() for g in gateways.values()))
        workloads = await Workloads.on(env, owners, gateways[WORKER_COUNTS[0]].url)
        for name, make in (("read", workloads.read), ("write", workloads.write)):
            rounds: dict[int, list[Measured]] = {count: [] for count in WORKER_COUNTS}
            for _ in range(ROUNDS):
                for count, gateway in gateways.items():
                    rounds[count].append(await measure(gateway.url, make, seconds))
            for count in WORKER_COUNTS:
                results[count][name] = combined(rounds[count])
    finally:
        codes = {count: gateway.stop() for count, gateway in gateways.items()}
    for count, code in codes.items():
        if code != 0:
            raise RuntimeError(f"eventshop gateway --workers {count} exited with {code}:\n{gateways[count].tail()}")
    return [_figure(name, label, unit, results) for name, label, unit in WORKLOADS]


WORKLOADS = (
    ("read", "read-heavy: order(id) and products(first: 20) at random", "req/s"),
    ("write", "createOrder", "orders/s"),
)


def _figure(workload: str, label: str, unit: str, results: dict[int, dict[str, Measured]]) -> Figure:
    base, many = WORKER_COUNTS[0], WORKER_COUNTS[-1]
    one, more = results[base][workload], results[many][workload]
    lat_one, lat_more = latency_summary(one.took), latency_summary(more.took)
    split = " / ".join(f"{share / sum(more.per_worker):.0%}" for share in more.per_worker)
    return Figure(
        "workers",
        f"gateway --workers {many}, {label}, {CONCURRENCY} clients",
        unit,
        more.rate,
        one.rate,
        f"--workers {base}, same workload, same run",
        note=f"p50 {lat_more['p50']:.1f} vs {lat_one['p50']:.1f} ms, p99 {lat_more['p99']:.1f} vs "
        f"{lat_one['p99']:.1f} ms; requests per worker {split}",
        details={
            f"workers_{count}": {
                "rate": results[count][workload].rate,
                "latency_ms": latency_summary(results[count][workload].took),
                "requests_per_worker": results[count][workload].per_worker,
            }
            for count in WORKER_COUNTS
        },
    )
