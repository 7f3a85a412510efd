"""The real `eventshop relay` process with METRICS_PORT set: Prometheus can scrape it (as docker-compose's
does), and SIGTERM stops it cleanly with the port closed."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import httpx

from command.db import WriteDatabase
from shared.settings import Settings
from tests.conftest import eventually
from tests.labs import EVENTSHOP, ROOT, free_port, process_env


async def test_a_relay_process_serves_its_metrics_on_metrics_port(
    relay_settings: Settings, relay_db: WriteDatabase, tmp_path: Path
) -> None:
    """On the relay tests' database (empty outbox), so nothing is published and no other relay is disturbed."""
    port = free_port()
    env = process_env(relay_settings, HOST="127.0.0.1", METRICS_PORT=str(port))
    log = (tmp_path / "relay.log").open("wb")
    relay = await asyncio.create_subprocess_exec(EVENTSHOP, "relay", env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def scraped() -> str | None:
                assert relay.returncode is None, (tmp_path / "relay.log").read_text()[-3000:]
                try:
                    text = (await http.get("/metrics")).text
                except httpx.TransportError:
                    return None  # not listening yet
                return text if "\neventshop_outbox_backlog " in text else None

            text = await eventually(scraped, timeout=60)
        assert "eventshop_relay_published_total" in text and "eventshop_outbox_oldest_age_seconds" in text
    finally:
        relay.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(relay.wait(), 30)
        log.close()
    assert code == 0, (tmp_path / "relay.log").read_text()[-3000:]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the metrics port outlived the process"
