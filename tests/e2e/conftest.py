"""The running processes, black-box: `eventshop all` (and a second gateway) over HTTP and WebSocket."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests import labs
from tests.conftest import TEST_JWT_SECRET, GraphQLClient
from tests.integration.access import Live, admin_token
from tests.integration.shop import CREATE_ORDER, PAY_ORDER, order_input, register_customer, stock_product
from tests.labs import EVENTSHOP, ROOT, free_port


class Process:
    """An eventshop process on its own port, with its log kept for failures."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = subprocess.Popen(
            [EVENTSHOP, *args], env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as an orchestrator would; returns the exit code of the graceful shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"no clean shutdown within {timeout}s:\n{self.log.read_text()[-3000:]}") from None
        return self.proc.returncode


def authenticated_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The processes' environment on `settings` with authentication on, as in production (clients send tokens
    signed with the test secret), and a mutation budget no story reaches (the limits have tests of their own)."""
    return labs.process_env(
        settings,
        ENV="test",
        AUTH_ENABLED="true",
        JWT_SECRET=TEST_JWT_SECRET,
        MUTATION_RATE="10000",
        MUTATION_BURST="10000",
        **extra,
    )


@pytest.fixture(scope="session")
def process_env(settings: Settings) -> dict[str, str]:
    run_id = uuid.uuid4().hex[:8]
    return authenticated_env(
        settings,
        PROJECTOR_GROUP=f"e2e-projector-{run_id}",
        STOCK_WORKER_GROUP=f"e2e-stock-{run_id}",
        CONSUMER_OFFSET_RESET="latest",  # ready (/readyz) means assigned: nothing later is missed
        LOG_LEVEL="INFO",
        GRAPHQL_INTROSPECTION="true",
        MAX_WS_CONNECTIONS_PER_CLIENT="1000",  # the 200-subscriber test connects from one address
    )


@pytest.fixture(scope="session")
def eventshop_all(process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "all.log"
    process = Process(["all"], {**process_env, "PORT": str(port)}, port, log)
    try:
        process.wait_ready()
        yield process
    finally:
        code = process.stop()
    assert code == 0, log.read_text()[-3000:]


@pytest.fixture(scope="session")
def second_gateway(process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "gateway2.log"
    process = Process(["gateway", "--port", str(port)], process_env, port, log)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


class Client(GraphQLClient):
    """A GraphQL client as any team would write one: JSON over HTTP (as an admin unless told otherwise)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token or admin_token()}"}
        super().__init__(httpx.AsyncClient(base_url=url, timeout=30, headers=headers))


@pytest.fixture
async def client(eventshop_all: Process) -> AsyncIterator[Client]:
    c = Client(eventshop_all.url)
    yield c
    await c.http.aclose()


class Subscription(Live):
    """A live subscription of the running processes, as an admin unless told otherwise."""

    def __init__(
        self,
        url: str,
        query: str,
        variables: dict[str, Any],
        protocol: str = "graphql-transport-ws",
        token: str | None = None,
    ) -> None:
        super().__init__(url, query, variables, token or admin_token(), protocol)


def order_of(result: dict[str, Any], field: str = "orderStatusChanged") -> dict[str, Any]:
    """The order a subscription result carries (a result with errors fails here)."""
    assert not result.get("errors") and result.get("data"), result
    return result["data"][field]  # type: ignore[no-any-return]


async def shop(client: Client, stock: int = 100) -> tuple[str, str]:
    """A customer named Live and kettles to sell: their ids."""
    customer = await register_customer(client, "Live")
    kettle = await stock_product(client, "Kettle", "30.00", stock)
    return customer["id"], kettle["id"]


async def place(client: Client, user_id: str, product_id: str) -> dict[str, Any]:
    """One of the product ordered: the order as created."""
    return (await client.data(CREATE_ORDER, input=order_input(user_id, (product_id, 1))))["createOrder"]  # type: ignore[no-any-return]


async def pay(client: Client, order_id: str) -> None:
    await client.data(PAY_ORDER, id=order_id, method="CREDIT_CARD")


async def subscriptions_open(process: Process) -> int:
    """eventshop_subscriptions_active on the process's /metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{process.url}/metrics")).text
    match = re.search(r"^eventshop_subscriptions_active (\S+)$", text, re.MULTILINE)
    assert match, "metric eventshop_subscriptions_active missing"
    return int(float(match.group(1)))
