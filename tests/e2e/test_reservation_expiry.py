"""Black-box, with a short payment window: the gateway, relay, projector and stock worker as separate processes on
a lab of their own. A customer who never pays watches the order go RESERVED, then EXPIRED once the payment
window has closed, although the stock worker (where the expirer runs) was killed with SIGKILL before the deadline
and started again only after it; the kettles come back, paying is refused, the order paid in time keeps its
kettle, and `eventshop verify` finds the models equal.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from tests import labs
from tests.conftest import eventually
from tests.e2e.conftest import Client, Process, Subscription, authenticated_env, order_of, pay, shop
from tests.integration.shop import CREATE_ORDER, PAY_ORDER, order_input
from tests.labs import EVENTSHOP, ROOT, free_port, lab_of

TTL_SECONDS = 6  # long enough for the subscriber to see RESERVED and the kill to come before the deadline
ORDER_STATUS = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status version reservedUntil } }"
ORDER_UPDATES = "subscription($u: ID) { orderUpdates(userId: $u) { id status version } }"
READ_ORDER = "query($id: ID!) { order(id: $id) { id status version reservedUntil } }"
READ_STOCK = "query($id: ID!) { product(id: $id) { stock } }"


@dataclass
class Stack:
    """The four processes of the shop; the workers each killable and startable again."""

    env: dict[str, str]
    logs: Path
    gateway: Process
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("a")
        self.workers[name] = subprocess.Popen([EVENTSHOP, name], env=self.env, cwd=ROOT, stdout=log, stderr=log)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown runs, as when the machine dies."""
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait()

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.terminate()
        for worker in self.workers.values():
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.gateway.stop()


@pytest.fixture(scope="module")
async def lab(settings: Settings) -> AsyncIterator[labs.Lab]:
    async with lab_of(settings, "e2eexpiry") as lab:
        yield lab


@pytest.fixture(scope="module")
def stack(lab: labs.Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = authenticated_env(
        lab.settings,
        ORDER_RESERVATION_TTL_SECONDS=str(TTL_SECONDS),
        ORDER_EXPIRY_POLL_INTERVAL="0.2",
        LOG_LEVEL="INFO",
    )
    logs = tmp_path_factory.mktemp("expiry-logs")
    port = free_port()
    gateway = Process(["gateway"], {**env, "PORT": str(port)}, port, logs / "gateway.log")
    stack = Stack(env, logs, gateway)
    try:
        for name in ("relay", "projector", "stock-worker"):
            stack.start(name)
        gateway.wait_ready()
        yield stack
    finally:
        stack.stop()


async def next_of(sub: Subscription, order_id: str, status: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The results of an orderUpdates subscription until `order_id` shows `status`."""
    seen = [order_of(await sub.next(timeout), "orderUpdates")]
    while (seen[-1]["id"], seen[-1]["status"]) != (order_id, status):
        seen.append(order_of(await sub.next(timeout), "orderUpdates"))
    return seen


async def test_an_unpaid_order_expires_across_a_killed_stock_worker_and_its_kettles_come_back(
    stack: Stack, lab: labs.Lab
) -> None:
    client = Client(stack.gateway.url)
    try:
        user_id, kettle = await shop(client, stock=10)

        # Live pays for one kettle in time.
        paid = (await client.data(CREATE_ORDER, input=order_input(user_id, (kettle, 1))))["createOrder"]
        await eventually(lambda: _status_is(client, paid["id"], "RESERVED"), timeout=60)
        await pay(client, paid["id"])

        # Then puts three more in the cart and never pays, watching the order and all of Live's orders.
        async with Subscription(stack.gateway.url, ORDER_UPDATES, {"u": user_id}) as updates:
            unpaid = (await client.data(CREATE_ORDER, input=order_input(user_id, (kettle, 3))))["createOrder"]
            async with Subscription(stack.gateway.url, ORDER_STATUS, {"id": unpaid["id"]}) as watch:
                seen = [order_of(await watch.next(60))]
                while seen[-1]["status"] != "RESERVED":
                    seen.append(order_of(await watch.next(60)))
                deadline = datetime.fromisoformat(seen[-1]["reservedUntil"]).astimezone(UTC)

                # The stock worker, and the expirer in it, dies before the deadline and stays down past it.
                stack.kill("stock-worker")
                assert datetime.now(UTC) < deadline, "the order was reserved too late to kill before its deadline"
                await eventually(lambda: _after(deadline + timedelta(seconds=1)), timeout=TTL_SECONDS + 5)
                waiting = (await client.data(READ_ORDER, id=unpaid["id"]))["order"]
                assert (waiting["status"], waiting["version"]) == ("RESERVED", 2)  # nothing ran to expire it

                # Started again, it applies the deadline that passed while nothing ran.
                stack.start("stock-worker")
                seen.append(order_of(await watch.next(60)))
            assert [s["status"] for s in seen][-2:] == ["RESERVED", "EXPIRED"]
            assert seen[-1]["version"] == 3 and seen[-1]["reservedUntil"] is None
            feed = await next_of(updates, unpaid["id"], "EXPIRED")
            mine = [s["status"] for s in feed if s["id"] == unpaid["id"]]
            assert mine[-2:] == ["RESERVED", "EXPIRED"], feed

        # The three kettles are back on the shelf; the one paid for stays sold.
        await eventually(lambda: _stock_is(client, kettle, 9), timeout=60)
        assert await client.error_code(PAY_ORDER, id=unpaid["id"], method="PIX") == "INVALID_STATE"
        kept = (await client.data(READ_ORDER, id=paid["id"]))["order"]
        assert (kept["status"], kept["version"], kept["reservedUntil"]) == ("PAID", 3, None)

        verified = await labs.invoke(lab.settings, "verify", "--settle", "10")
        assert verified.exit_code == 0, verified.output
    finally:
        await client.http.aclose()


async def _status_is(client: Client, order_id: str, status: str) -> bool:
    order = (await client.data(READ_ORDER, id=order_id))["order"]
    return order is not None and order["status"] == status


async def _stock_is(client: Client, product_id: str, stock: int) -> bool:
    return bool((await client.data(READ_STOCK, id=product_id))["product"]["stock"] == stock)


async def _after(moment: datetime) -> bool:
    return datetime.now(UTC) > moment
