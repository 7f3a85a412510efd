"""The operators' pictures stay true: every metric the Grafana dashboard asks Prometheus for is one the code
exports (or, for the stores, one of an exporter docker-compose.yml runs and Prometheus scrapes), every metric the
code exports has a panel, and Prometheus and Grafana are wired to what docker-compose.yml runs (no Docker needed:
the files are read as data)."""

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
from pymongo.uri_parser import parse_uri

import shared.metrics  # noqa: F401 - registers the metrics of the relay, consumers, projector and GraphQL
from shared.metrics import gateway_registry
from tests.unit.test_compose import (
    EXPORTERS,
    LONG_RUNNING,
    SERVICES,
    command_tokens,
    container_ports,
    environment,
    kafka_listeners,
)

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
# The exporters of docker-compose.yml, by the prefix of every series each makes (mysql_up, mongodb_ss_opcounters,
# kafka_consumergroup_lag, ...), and the store each reads. No exporter runs here, so a panel's exporter metric is
# followed to its exporter (in the stack, scraped where it listens, reading its store), not checked name by name.
EXPORTER_PREFIXES = {"mysql_": "mysql-exporter", "mongodb_": "mongodb-exporter", "kafka_": "kafka-exporter"}
STORES = {"mysql-exporter": "mysql", "mongodb-exporter": "mongo", "kafka-exporter": "kafka"}


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


def flag_values(service: str, name: str) -> list[str]:
    """The values of a service's `--name=value` command flags."""
    return [token.partition("=")[2] for token in command_tokens(service) if token.startswith(f"--{name}=")]


def scrape_targets() -> dict[str, int]:
    """Compose service -> the port Prometheus scrapes its /metrics on (the jobs name their targets by service)."""
    scraped = {}
    for job in PROMETHEUS["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics", job["job_name"]
        assert job.get("dns_sd_configs") or job.get("static_configs"), f"{job['job_name']}: no targets"
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                scraped[name] = sd["port"]
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                scraped[host] = int(port)
    return scraped


def listen_port(exporter: str) -> int:
    """The port an exporter serves /metrics on: its --web.listen-address, which docker-compose.yml spells out (an
    image's default port is nothing the file shows, so nothing a test could check the scrape job against)."""
    addresses = flag_values(exporter, "web.listen-address")
    assert len(addresses) == 1, f"{exporter}: give one --web.listen-address, so its scrape port can be checked"
    host, _, port = addresses[0].rpartition(":")
    assert host in ("", "0.0.0.0"), f"{exporter}: listen on every interface, for the prometheus container"
    return int(port)


def exporter_of(name: str) -> str | None:
    return next((exporter for prefix, exporter in EXPORTER_PREFIXES.items() if name.startswith(prefix)), None)


def unexplained(names: set[str], scraped: dict[str, int] | None = None) -> set[str]:
    """The metric names nothing in the stack makes: not a series the code exports (which every eventshop_* name must
    be), not one Prometheus makes itself, and not under the prefix of an exporter that docker-compose.yml runs and
    Prometheus scrapes (`scraped`, by default prometheus.yml's targets) at the port it listens on."""
    scraped = scrape_targets() if scraped is None else scraped
    left = set()
    for name in names - set(exported_series()) - PROMETHEUS_OWN:
        exporter = None if name.startswith("eventshop_") else exporter_of(name)
        if exporter is None or exporter not in SERVICES or scraped.get(exporter) != listen_port(exporter):
            left.add(name)
    return left


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
def test_every_metric_the_dashboard_names_is_exported_by_the_code_or_a_scraped_exporter(title: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{title}: no metric in {expr!r}"
    unknown = unexplained(names)
    assert not unknown, f"{title}: {sorted(unknown)} is neither a metric the code exports nor one of a scraped exporter"


def test_a_metric_the_code_does_not_export_is_caught() -> None:
    """The check above is not vacuous: a renamed or misspelt metric is not among the exported series."""
    series = exported_series()
    assert "eventshop_relay_published_total" in series and "eventshop_relay_published" not in series
    assert "eventshop_outbox_backlog_total" not in series and "eventshop_projection_lag_seconds" not in series
    assert unexplained({"eventshop_relay_published", "eventshop_outbox_backlog"}) == {"eventshop_relay_published"}


def test_the_exporter_prefixes_are_no_blanket_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """A made-up name under no exporter's prefix is caught, an eventshop_ name must be the code's whatever it
    contains, and an exporter's names count only while the stack runs that exporter and Prometheus scrapes it
    where it listens."""
    shown = {"mysql_global_status_queries", "mongodb_ss_opcounters", "kafka_consumergroup_lag"}
    assert unexplained(shown) == set()
    made_up = {"redis_connected_clients", "mysqld_up", "pg_up", "eventshop_kafka_lag", "eventshop_mysql_queries_total"}
    assert unexplained(shown | made_up) == made_up
    scraped = scrape_targets()
    assert unexplained(shown, {k: v for k, v in scraped.items() if k != "kafka-exporter"}) == {
        "kafka_consumergroup_lag"
    }
    elsewhere = {**scraped, "mongodb-exporter": listen_port("mongodb-exporter") + 1}
    assert unexplained(shown, elsewhere) == {"mongodb_ss_opcounters"}
    monkeypatch.delitem(SERVICES, "mysql-exporter")
    assert unexplained(shown) == {"mysql_global_status_queries"}


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
    scraped = scrape_targets()
    assert set(scraped) == {*LONG_RUNNING, *EXPORTERS}, "Prometheus scrapes the eventshop processes and exporters only"
    assert scraped["gateway"] == int(environment("gateway")["PORT"])
    for worker in set(LONG_RUNNING) - {"gateway"}:
        env = environment(worker)
        assert int(env["METRICS_PORT"]) == scraped[worker], worker
        assert env["HOST"] == "0.0.0.0", f"{worker}: /metrics must be reachable from the prometheus container"
        assert not SERVICES[worker].get("ports"), f"{worker}: /metrics stays on the compose network"


def test_every_exporter_has_a_prefix_and_a_store() -> None:
    assert set(EXPORTER_PREFIXES.values()) == set(STORES) == set(EXPORTERS)


@pytest.mark.parametrize(
    "exporter",
    [name for name, svc in SERVICES.items() if "exporter" in name or "exporter" in str(svc.get("image", ""))],
)
def test_prometheus_scrapes_every_exporter_where_it_listens(exporter: str) -> None:
    assert exporter in EXPORTERS, f"{exporter}: an exporter the tests do not know (EXPORTERS, EXPORTER_PREFIXES)"
    assert scrape_targets().get(exporter) == listen_port(exporter), f"{exporter}: not scraped where it listens"
    assert not SERVICES[exporter].get("ports"), f"{exporter}: /metrics stays on the compose network"


def test_each_exporter_reads_its_store_once_it_answers() -> None:
    for exporter, store in STORES.items():
        assert SERVICES[exporter]["depends_on"][store]["condition"] == "service_healthy", exporter
    # mysqld-exporter (v0.15 on): --mysqld.address and --mysqld.username, the password in MYSQLD_EXPORTER_PASSWORD.
    (address,) = flag_values("mysql-exporter", "mysqld.address")
    host, _, port = address.rpartition(":")
    assert host == "mysql" and int(port) in container_ports("mysql")
    (user,) = flag_values("mysql-exporter", "mysqld.username")
    mysql = environment("mysql")
    accounts = {"root": mysql["MYSQL_ROOT_PASSWORD"], mysql["MYSQL_USER"]: mysql["MYSQL_PASSWORD"]}
    assert user in accounts, f"mysql-exporter: {user!r} is no account docker-compose.yml creates"
    assert environment("mysql-exporter")["MYSQLD_EXPORTER_PASSWORD"] == accounts[user]
    (uri,) = flag_values("mongodb-exporter", "mongodb.uri")
    assert parse_uri(uri)["nodelist"] == [("mongo", 27017)] and 27017 in container_ports("mongo")
    listeners, advertised = kafka_listeners("KAFKA_LISTENERS"), kafka_listeners("KAFKA_ADVERTISED_LISTENERS")
    servers = flag_values("kafka-exporter", "kafka.server")
    assert servers, "kafka-exporter: no --kafka.server (its default is no promise)"
    for server in servers:
        host, _, port = server.rpartition(":")
        names = [name for name, address in advertised.items() if address == (host, int(port))]
        assert host == "kafka" and names, f"kafka-exporter: kafka advertises no listener at {server}"
        assert listeners[names[0]][1] == int(port), f"kafka listens for {names[0]} on another port"


def test_the_mongodb_exporter_collects_what_the_panels_show() -> None:
    """mongodb_ss_* (serverStatus) come from the getDiagnosticData collector; mongodb_indexstats_* from the $indexStats
    one, for the collections listed or, in discovering mode, all of them. Without --collect-all, both are off."""
    tokens = command_tokens("mongodb-exporter")
    shown = {name for _, expr in expressions() for name in metric_names(expr) if name.startswith("mongodb_")}
    if "--collect-all" in tokens:
        return
    if any(name.startswith("mongodb_ss_") for name in shown):
        assert "--collector.diagnosticdata" in tokens
    if any(name.startswith("mongodb_indexstats_") for name in shown):
        assert "--collector.indexstats" in tokens
        assert "--discovering-mode" in tokens or flag_values("mongodb-exporter", "mongodb.indexstats-colls")


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
