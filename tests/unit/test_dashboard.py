"""The operators' pictures stay true: every metric the Grafana dashboard asks Prometheus for is one the code
exports, every metric the code exports has a panel, and Prometheus and Grafana are wired to what
docker-compose.yml runs (no Docker needed: the files are read as data)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import shared.metrics  # noqa: F401 - registers the metrics of the relay, consumers, projector and GraphQL
from shared.metrics import gateway_registry
from tests.unit.test_compose import LONG_RUNNING, SERVICES, container_ports, environment

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "ops/grafana/dashboards/eventshop.json").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
DATASOURCES = yaml.safe_load((ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
PROVIDERS = yaml.safe_load((ROOT / "ops/grafana/provisioning/dashboards/eventshop.yml").read_text())

# Series Prometheus makes itself for every target; no process exports them.
PROMETHEUS_OWN = {"up"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}


def exported_series(*registries: CollectorRegistry) -> dict[str, str]:
    """Every series name the registries can expose, to the metric family it belongs to; by default what a
    gateway's /metrics shows: the process's registry and the app's own.

    From the families' types, not their current samples: a labelled metric shows no sample until its first
    child is made, and a dashboard may well ask for it before then.
    """
    series = {}
    for registry in registries or (REGISTRY, gateway_registry(lambda: 0)):
        for family in registry.collect():
            for suffix in SUFFIXES[family.type]:
                series[family.name + suffix] = family.name
    return series


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries, Grafana's $__rate_interval included
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        name, rest = match.group(), text[match.end() :]
        if rest.lstrip().startswith("(") or name in KEYWORDS:
            continue  # a function or aggregation, or an operator
        names.add(name)
    return names


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def expressions() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in panels(DASHBOARD["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("max(eventshop_outbox_backlog)", {"eventshop_outbox_backlog"}),
        ("sum by (group) (max by (group, topic, partition) (eventshop_consumer_lag))", {"eventshop_consumer_lag"}),
        (
            'histogram_quantile(0.95, sum by (le, topic) (rate(x_seconds_bucket{topic=~"a(b)|c"}[$__rate_interval])))',
            {"x_seconds_bucket"},
        ),
        ("sum(increase(a_total[24h])) or vector(0)", {"a_total"}),
        ("rate(a_total[5m]) / ignoring(instance) group_left(job) b_info offset 1h", {"a_total", "b_info"}),
        ('up{job=~"gateway|relay"} == bool 1', {"up"}),
        ("sum without (instance) (c) * 1e3", {"c"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_the_dashboard_has_queries() -> None:
    assert len(expressions()) >= 10


@pytest.mark.parametrize(("title", "expr"), expressions(), ids=[title for title, _ in expressions()])
def test_every_metric_the_dashboard_names_is_exported_by_the_code(title: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{title}: no metric in {expr!r}"
    unknown = names - set(exported_series()) - PROMETHEUS_OWN
    assert not unknown, f"{title}: {sorted(unknown)} is not a metric the code exports"


def test_a_metric_the_code_does_not_export_is_caught() -> None:
    """The check above is not vacuous: a renamed or misspelt metric is not among the exported series."""
    series = exported_series()
    assert "eventshop_relay_published_total" in series and "eventshop_relay_published" not in series
    assert "eventshop_outbox_backlog_total" not in series and "eventshop_projection_lag_seconds" not in series


def test_every_eventshop_metric_has_a_panel() -> None:
    series = exported_series()
    shown = {series[name] for _, expr in expressions() for name in metric_names(expr) if name in series}
    ours = {family for family in series.values() if family.startswith("eventshop_")}
    assert ours, "no eventshop metric is registered"
    assert ours - shown == set(), "metrics without a panel"


def test_every_panel_reads_the_provisioned_prometheus() -> None:
    (source,) = DATASOURCES["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]
    for panel in panels(DASHBOARD["panels"]):
        if panel["type"] == "row":
            continue
        for datasource in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]:
            assert datasource == {"type": "prometheus", "uid": source["uid"]}, panel["title"]


def test_the_datasource_points_at_the_prometheus_service() -> None:
    url = urlsplit(DATASOURCES["datasources"][0]["url"])
    assert url.hostname == "prometheus" and url.port in container_ports("prometheus")


def test_prometheus_scrapes_every_eventshop_process_where_it_serves_metrics() -> None:
    scraped = {}
    for job in PROMETHEUS["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                scraped[name] = sd["port"]
    assert set(scraped) == set(LONG_RUNNING)
    assert scraped["gateway"] == int(environment("gateway")["PORT"])
    for worker in set(LONG_RUNNING) - {"gateway"}:
        env = environment(worker)
        assert int(env["METRICS_PORT"]) == scraped[worker], worker
        assert env["HOST"] == "0.0.0.0", f"{worker}: /metrics must be reachable from the prometheus container"
        assert not SERVICES[worker].get("ports"), f"{worker}: /metrics stays on the compose network"


def mounts(service: str) -> dict[str, Path]:
    """Container path -> repository path of each bind mount of a service."""
    found = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def test_prometheus_and_grafana_read_their_files_from_this_repository() -> None:
    prometheus = mounts("prometheus")
    assert prometheus["/etc/prometheus/prometheus.yml"] == ROOT / "ops/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == ROOT / "ops/grafana/provisioning"
    (provider,) = PROVIDERS["providers"]
    dashboards = provider["options"]["path"]
    assert grafana[dashboards] == ROOT / "ops/grafana/dashboards"
    home = environment("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards}/eventshop.json"
    for path in (*prometheus.values(), *grafana.values()):
        assert path.exists(), path
