"""A relay, stock worker or projector process serves its metrics on METRICS_PORT (the gateway on its own
/metrics); off by default, and never a second server beside the gateway."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from eventshop.runtime import Component, MetricsEndpoint
from shared.settings import Settings
from tests.labs import free_port


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, host="127.0.0.1", **values)  # type: ignore[arg-type]


def test_a_worker_process_serves_every_eventshop_metric_and_stops_serving_when_stopped() -> None:
    port = free_port()
    endpoint = MetricsEndpoint.start(settings(metrics_port=port), [Component.RELAY])
    try:
        assert endpoint.port == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
            text = response.read().decode()
    finally:
        endpoint.stop()
    for family in ("eventshop_outbox_backlog", "eventshop_relay_published_total", "eventshop_consumer_lag"):
        assert f"# TYPE {family.removesuffix('_total')}" in text
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.mark.parametrize(
    ("metrics_port", "components"),
    [(0, [Component.PROJECTOR]), (9100, [Component.GATEWAY]), (9100, list(Component))],
    ids=["off by default", "the gateway serves its own", "eventshop all: the gateway's"],
)
def test_no_metrics_server_is_started(metrics_port: int, components: list[Component]) -> None:
    endpoint = MetricsEndpoint.start(settings(metrics_port=metrics_port), components)
    assert endpoint.port is None
    endpoint.stop()


def test_metrics_port_is_off_unless_set() -> None:
    assert Settings.model_fields["metrics_port"].default == 0
