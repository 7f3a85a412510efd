"""A real `eventshop gateway` process with OTEL_ENABLED: it sets tracing up at start and, on SIGTERM, exports the
spans its batch processor still holds (the console exporter writes them to the process's output)."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from pathlib import Path

import httpx

from tests.e2e.conftest import Process, free_port
from tests.integration.access import admin_token


def exported_spans(output: str) -> list[dict[str, object]]:
    """The JSON objects the console exporter printed, among the log lines."""
    spans, decoder = [], json.JSONDecoder()
    for match in re.finditer(r"^\{$", output, re.MULTILINE):
        span, _ = decoder.raw_decode(output, match.start())
        spans.append(span)
    return spans


async def test_the_gateway_process_exports_its_spans_when_it_stops(process_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        **process_env,
        "OTEL_ENABLED": "true",
        "OTEL_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves before the shutdown flush
    }
    port = free_port()
    log = tmp_path / "gateway.log"
    gateway = Process(["gateway", "--port", str(port)], env, port, log)
    trace_id = secrets.token_hex(16)
    try:
        gateway.wait_ready()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            response = await http.post(
                "/graphql",
                json={
                    "query": 'mutation TracedByProcess($e: String!) { createUser(input: {name: "Otel", email: $e}) '
                    "{ id } }",
                    "variables": {"e": f"otel-{uuid.uuid4().hex[:8]}@example.com"},
                },
                headers={
                    "Authorization": f"Bearer {admin_token()}",
                    "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                },
            )
        assert "errors" not in response.json(), response.text
        assert not [s for s in exported_spans(log.read_text()) if s.get("name") == "mutation TracedByProcess"]
    finally:
        code = gateway.stop()
    assert code == 0, log.read_text()[-3000:]
    (span,) = [s for s in exported_spans(log.read_text()) if s.get("name") == "mutation TracedByProcess"]
    assert span["kind"] == "SpanKind.SERVER"
    assert span["context"]["trace_id"] == f"0x{trace_id}"  # type: ignore[index]
    assert span["resource"]["attributes"]["service.name"] == "gateway"  # type: ignore[index]
