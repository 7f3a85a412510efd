"""`eventshop all --processes 2` (what `make run` starts): the gateway in one process, relay, stock worker and
projector in another, on an environment of their own; an order goes through both, one /metrics shows both, and
the two stop together."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests import labs
from tests.conftest import eventually
from tests.e2e.conftest import Client, Process, authenticated_env, place, shop
from tests.e2e.test_gateway_workers import alive, descendants, scrape
from tests.labs import free_port, lab_of

READ_ORDER = "query($id: ID!) { order(id: $id) { id status } }"


@pytest.fixture(scope="module")
async def lab(settings: Settings) -> AsyncIterator[labs.Lab]:
    async with lab_of(settings, "twoprocesses") as lab:
        yield lab


@contextmanager
def two_processes(lab: labs.Lab, logs: Path) -> Iterator[tuple[Process, set[int]]]:
    """`eventshop all --processes 2` ready, with the pids of its children; killed at the end if a test left it
    running."""
    env = authenticated_env(
        lab.settings,
        CONSUMER_OFFSET_RESET="earliest",  # topics of its own: nothing published before the start is missed
    )
    port = free_port()
    process = Process(["all", "--processes", "2"], {**env, "PORT": str(port)}, port, logs / "all-two.log")
    try:
        process.wait_ready()
        yield process, descendants(process.proc.pid)
    finally:
        if process.proc.poll() is None:
            process.proc.kill()


async def status_of(client: Client, order_id: str) -> str | None:
    order: dict[str, Any] | None = (await client.data(READ_ORDER, id=order_id))["order"]
    return None if order is None else str(order["status"])


async def test_an_order_is_decided_across_both_processes_and_they_stop_together(
    lab: labs.Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with two_processes(lab, tmp_path_factory.mktemp("two-processes")) as (process, children):
        assert len(children) >= 2  # the gateway's process and the workers' (and nothing of theirs runs here)
        client = Client(process.url)
        user_id, kettle = await shop(client, stock=5)
        order = await place(client, user_id, kettle)
        # The stock worker and the projector of the other process decided it, the relay published it.
        await eventually(lambda: _is(client, order["id"], "RESERVED"), timeout=60)
        metrics = await scrape(process.url)  # the gateway's /metrics adds up both processes
        assert metrics.get(("eventshop_relay_published_total", ""), 0) >= 3
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(60) == 0, process.log.read_text()[-3000:]
        await eventually(lambda: _none_alive(children), timeout=30)
        with pytest.raises(httpx.ConnectError):
            await scrape(process.url)


async def test_when_one_process_dies_the_other_is_stopped_and_all_exits_1(
    lab: labs.Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Not a gateway accepting orders that nothing decides: whatever supervises `all` sees it stop."""
    with two_processes(lab, tmp_path_factory.mktemp("two-processes-killed")) as (process, children):
        started = re.search(r"'workers': (\d+)", process.log.read_text())
        assert started is not None, process.log.read_text()[-3000:]
        os.kill(int(started.group(1)), signal.SIGKILL)
        assert process.proc.wait(60) == 1, process.log.read_text()[-3000:]
        await eventually(lambda: _none_alive(children), timeout=30)
        assert "supervisor.child_ended" in process.log.read_text()


async def _is(client: Client, order_id: str, status: str) -> bool:
    return await status_of(client, order_id) == status


async def _none_alive(pids: set[int]) -> bool:
    return not any(alive(pid) for pid in pids)
