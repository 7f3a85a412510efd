"""`eventshop gateway --workers 2`: two processes behind one port, each a whole gateway with its own feed, and one
/metrics that adds up over both, whichever of them a scrape reaches."""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually
from tests.e2e.conftest import Client, Process, Subscription, order_of, pay, place, shop
from tests.e2e.test_subscriptions import ORDER_STATUS
from tests.integration.access import admin_token
from tests.labs import free_port

WORKERS = 2
OPEN_SUBSCRIPTIONS = ("eventshop_subscriptions_active", "")
SERIES = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$", re.MULTILINE)


def start_workers(process_env: dict[str, str], log: Path) -> Process:
    port = free_port()
    process = Process(["gateway", "--workers", str(WORKERS), "--port", str(port)], process_env, port, log)
    process.wait_ready()
    return process


@pytest.fixture(scope="module")
def workers(
    eventshop_all: Process, process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    """Two gateway workers on one port; `eventshop all` runs the relay and the projector behind them."""
    log = tmp_path_factory.mktemp("logs") / "gateway-workers.log"
    process = start_workers(process_env, log)
    try:
        yield process
    finally:
        code = process.stop()
    assert code == 0, log.read_text()[-3000:]


async def scrape(url: str) -> dict[tuple[str, str], float]:
    """One /metrics answer, on a connection of its own (so any worker may answer): (name, labels) -> value."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return {(m["name"], m["labels"] or ""): float(m["value"]) for m in SERIES.finditer(response.text)}


def requests_by_worker(metrics: dict[tuple[str, str], float]) -> dict[int, float]:
    """pid -> GraphQL requests it answered, from eventshop_gateway_worker_requests{pid="..."}."""
    return {
        int(re.fullmatch(r'pid="(\d+)"', labels).group(1)): value  # type: ignore[union-attr]
        for (name, labels), value in metrics.items()
        if name == "eventshop_gateway_worker_requests"
    }


async def every_worker_ready(url: str) -> None:
    """/readyz answers for the worker it reaches: ready on many fresh connections in a row, and both workers
    known to /metrics, before a test relies on either's feed."""

    async def ready() -> bool:
        if len(requests_by_worker(await scrape(url))) < WORKERS:
            return False
        for _ in range(20):
            async with httpx.AsyncClient(base_url=url, timeout=5) as http:
                if (await http.get("/readyz")).status_code != 200:
                    return False
        return True

    await eventually(ready, timeout=60)


async def probe(url: str, operation: str) -> None:
    """One named GraphQL query on a connection of its own: the kernel picks the worker that accepts it."""
    headers = {"Authorization": f"Bearer {admin_token()}"}
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as http:
        body = (await http.post("/graphql", json={"query": f"query {operation} {{ __typename }}"})).json()
    assert body == {"data": {"__typename": "Query"}}, body


async def test_requests_are_served_by_both_servingand_counted_once_in_every_scrape(workers: Process) -> None:
    await every_worker_ready(workers.url)
    operation = f"Probe{uuid.uuid4().hex[:8]}"
    before = requests_by_worker(await scrape(workers.url))
    sent = 0

    async def both_served() -> bool:
        nonlocal sent
        await probe(workers.url, operation)
        sent += 1
        served = requests_by_worker(await scrape(workers.url))
        return sum(1 for pid, count in served.items() if count > before.get(pid, 0)) == WORKERS

    await eventually(both_served, timeout=30)
    labels = f'operation_name="{operation}",operation_type="query"'
    counted = ("eventshop_graphql_request_duration_seconds_count", labels)
    for _ in range(10):  # any worker may answer each scrape: every answer has both workers' requests
        metrics = await scrape(workers.url)
        assert metrics[counted] == sent
        served = requests_by_worker(metrics)
        assert sum(served.values()) - sum(before.values()) == sent
        assert len(served) == WORKERS


async def test_subscriptions_work_through_the_servingand_are_counted_over_both(
    client: Client, workers: Process
) -> None:
    await every_worker_ready(workers.url)
    user_id, product_id = await shop(client)
    first, second = await place(client, user_id, product_id), await place(client, user_id, product_id)
    async with (
        Subscription(workers.url, ORDER_STATUS, {"id": first["id"]}) as watching_first,
        Subscription(workers.url, ORDER_STATUS, {"id": second["id"]}) as watching_second,
    ):
        for sub, order in ((watching_first, first), (watching_second, second)):
            seen = order_of(await sub.next())
            while seen["status"] != "RESERVED":
                seen = order_of(await sub.next())
            assert seen["id"] == order["id"]
        # Two connections, on one worker or on both: the sum is 2 whichever worker answers the scrape.
        await eventually(lambda: shows(workers.url, OPEN_SUBSCRIPTIONS, 2.0))
        await pay(client, first["id"])
        await pay(client, second["id"])
        assert order_of(await watching_first.next())["status"] == "PAID"
        assert order_of(await watching_second.next())["status"] == "PAID"
    await eventually(lambda: shows(workers.url, OPEN_SUBSCRIPTIONS, 0.0))


@asynccontextmanager
async def workers_to_end(
    process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, name: str
) -> AsyncIterator[tuple[Process, list[int]]]:
    """Workers of one test's own, for it to stop or kill, with the pids /metrics shows serving once every worker is
    ready; a supervisor the test left running is killed at the end."""
    process = start_workers(process_env, tmp_path_factory.mktemp("logs") / f"{name}.log")
    try:
        await every_worker_ready(process.url)
        yield process, sorted(requests_by_worker(await scrape(process.url)))
    finally:
        if process.proc.poll() is None:
            process.proc.kill()


async def shows(url: str, series: tuple[str, str], value: float) -> bool:
    return (await scrape(url)).get(series) == value


async def test_sigterm_stops_every_worker(
    eventshop_all: Process, process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    async with workers_to_end(process_env, tmp_path_factory, "gateway-workers-stopped") as (process, serving):
        started = descendants(process.proc.pid)
        assert len(serving) == WORKERS and set(serving) <= started
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(60) == 0, process.log.read_text()[-3000:]
    assert not {pid for pid in serving if alive(pid)}  # the supervisor waited for its workers before exiting
    await eventually(lambda: _none_alive(started))  # nor is any other process it started left behind
    with pytest.raises(httpx.ConnectError):
        await scrape(process.url)


def descendants(pid: int) -> set[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children} | {d for c in children for d in descendants(int(c))}


def alive(pid: int) -> bool:
    """Running (a zombie has ended: it only waits to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _none_alive(pids: set[int]) -> bool:
    return not any(alive(pid) for pid in pids)


async def test_a_worker_that_dies_takes_the_others_down_and_the_gateway_exits_1(
    eventshop_all: Process, process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Not a gateway quietly running on half its workers: whatever supervises it sees it stop, and restarts it."""
    async with workers_to_end(process_env, tmp_path_factory, "gateway-workers-killed") as (process, serving):
        killed, survivor = serving
        os.kill(killed, signal.SIGKILL)
        assert process.proc.wait(60) == 1, process.log.read_text()[-3000:]
    assert not alive(survivor)
    assert "supervisor.child_ended" in process.log.read_text()


async def test_a_killed_supervisor_takes_its_workers_with_it(
    eventshop_all: Process, process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGKILL runs no handler: the workers hear of their supervisor's end from the kernel and stop, so no
    orphan keeps the port (a restarted gateway would otherwise share it with them)."""
    async with workers_to_end(process_env, tmp_path_factory, "gateway-supervisor-killed") as (process, serving):
        process.proc.kill()
        process.proc.wait(10)
    assert len(serving) == WORKERS
    await eventually(lambda: _none_alive(set(serving)), timeout=45)
