"""docker-compose.yml and the Dockerfile agree with the code: settings, CLI commands, ports, versions.

No Docker is needed (or available in CI): the files are read as data and checked against the
Settings model, the typer app and each other, so a renamed setting or command breaks here, not
on someone's `docker compose up`.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pymongo.uri_parser import parse_uri
from sqlalchemy.engine import make_url

from eventshop.cli import app
from shared.kafka.topics import SINGLE_BROKER_PARTITIONS, TopicSpec
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
CLUSTER_ENV = dict(
    line.split("=", 1)
    for line in (ROOT / "ops" / "kafka-cluster.env").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)


def interpolated(variables: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml as Compose reads it with these variables set (`${NAME:-default}`)."""
    return yaml.safe_load(VARIABLE.sub(lambda m: variables.get(m[1], m[2] or ""), COMPOSE_TEXT))  # type: ignore[no-any-return]


COMPOSE = interpolated({})
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CLUSTER: dict[str, dict[str, Any]] = interpolated(CLUSTER_ENV)["services"]
CLUSTER_BROKERS = ("kafka", "kafka-2", "kafka-3")
DOCKERFILE = (ROOT / "Dockerfile").read_text()

BACKING = ("mysql", "mongo", "kafka", "kafka-ui", "mongo-express")
MONITORING = ("prometheus", "grafana")  # their configuration: tests/unit/test_dashboard.py
# The stores' exporters (their scrape jobs and panels: tests/unit/test_dashboard.py). No healthcheck, as nothing
# waits for them (and percona/mongodb_exporter is built FROM scratch: no shell or wget to run one with).
EXPORTERS = ("mysql-exporter", "mongodb-exporter", "kafka-exporter")
EVENTSHOP = ("migrate", "init", "gateway", "relay", "stock-worker", "projector")
LONG_RUNNING = ("gateway", "relay", "stock-worker", "projector")
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def environment(service: str, services: dict[str, dict[str, Any]] = SERVICES) -> dict[str, str]:
    env = services[service].get("environment") or {}
    if isinstance(env, list):  # the `- KEY=value` form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def published(service: str, services: dict[str, dict[str, Any]] = SERVICES) -> list[tuple[str, int, int]]:
    """(host_ip, host_port, container_port) for each published port of a service."""
    result = []
    for port in services[service].get("ports", []):
        if isinstance(port, dict):
            result.append((str(port.get("host_ip", "")), int(port["published"]), int(port["target"])))
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) != 3:
            pytest.fail(f"{service}: port {port!r} does not name a host IP (binds every interface)")
        host_ip, host_port, container_port = parts
        result.append((host_ip, int(host_port), int(container_port)))
    return result


def container_ports(service: str) -> set[int]:
    return {target for _, _, target in published(service)}


def command_tokens(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    return shlex.split(command) if isinstance(command, str) else [str(token) for token in command]


def kafka_listeners(
    variable: str, broker: str = "kafka", services: dict[str, dict[str, Any]] = SERVICES
) -> dict[str, tuple[str, int]]:
    """KAFKA_LISTENERS / KAFKA_ADVERTISED_LISTENERS as {listener name: (host, port)}."""
    result = {}
    for item in environment(broker, services)[variable].split(","):
        match = re.fullmatch(r"(\w+)://([^:]*):(\d+)", item.strip())
        assert match, f"kafka: cannot parse {variable} entry {item!r}"
        result[match[1]] = (match[2], int(match[3]))
    return result


def dockerfile_instruction(name: str) -> list[str]:
    """Arguments of every instruction `name`, with backslash-continued lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [m[1].strip() for m in re.finditer(rf"^{name}\s+(.+)$", text, re.MULTILINE | re.IGNORECASE)]


def test_every_service_of_the_stack_is_defined() -> None:
    missing = [name for name in (*BACKING, *MONITORING, *EXPORTERS, *EVENTSHOP) if name not in SERVICES]
    assert not missing, f"docker-compose.yml lacks services {missing}"


def test_eventshop_services_share_one_definition_built_from_this_repository() -> None:
    assert "x-eventshop" in COMPOSE, "the shared eventshop definition (x-eventshop anchor) is gone"
    built = {name for name, svc in SERVICES.items() if "build" in svc}
    assert built == set(EVENTSHOP)
    assert len({SERVICES[name]["image"] for name in EVENTSHOP}) == 1, "every process should run the same image"


def test_backing_services_run_the_versions_the_code_expects() -> None:
    assert SERVICES["mysql"]["image"] == "mysql:8.4"
    assert re.fullmatch(r"mongo:7(\.\d+)*", SERVICES["mongo"]["image"])
    # The devstack default, not Settings(): a KAFKA_VERSION override in someone's environment
    # must not make this test disagree with the pinned image.
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{Settings.model_fields['kafka_version'].default}"
    assert SERVICES["kafka-ui"]["image"].startswith("provectuslabs/kafka-ui:")
    assert SERVICES["mongo-express"]["image"].startswith("mongo-express:")
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:v")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    assert SERVICES["mysql-exporter"]["image"].startswith("prom/mysqld-exporter:v")
    assert SERVICES["mongodb-exporter"]["image"].startswith("percona/mongodb_exporter:")
    assert SERVICES["kafka-exporter"]["image"].startswith("danielqsj/kafka-exporter:v")
    for name in (*BACKING, *MONITORING, *EXPORTERS):
        tag = SERVICES[name]["image"].rpartition(":")[2]
        assert tag and tag != "latest", f"{name}: pin an image tag"


def test_every_published_port_binds_loopback_only() -> None:
    for name, svc in SERVICES.items():
        assert svc.get("network_mode") != "host", f"{name}: host networking publishes every port"
        for host_ip, host_port, _ in published(name):
            assert host_ip == "127.0.0.1", f"{name}: port {host_port} is published on {host_ip or 'every interface'}"


def test_no_two_services_publish_the_same_host_port() -> None:
    seen: dict[int, str] = {}
    for name in SERVICES:
        for _, host_port, _ in published(name):
            assert host_port not in seen, f"{name} and {seen[host_port]} both publish {host_port}"
            seen[host_port] = name


@pytest.mark.parametrize("service", EVENTSHOP)
def test_eventshop_environment_is_made_of_real_settings(service: str) -> None:
    env = environment(service)
    unknown = sorted(set(env) - SETTING_NAMES)
    assert not unknown, f"{service}: {unknown} are not fields of shared.settings.Settings"
    assert {"MYSQL_DSN", "MONGO_URI", "KAFKA_BROKERS"} <= set(env)
    Settings.model_validate({key.lower(): value for key, value in env.items()})  # values parse too


@pytest.mark.parametrize("service", EVENTSHOP)
def test_mysql_dsn_points_at_the_mysql_service(service: str) -> None:
    url = make_url(environment(service)["MYSQL_DSN"])
    mysql = environment("mysql")
    assert url.drivername == "mysql+asyncmy"
    assert url.host == "mysql"
    assert (url.port or 3306) in container_ports("mysql")
    assert url.database == mysql["MYSQL_DATABASE"]
    assert (url.username, url.password) == (mysql["MYSQL_USER"], mysql["MYSQL_PASSWORD"])


@pytest.mark.parametrize("service", EVENTSHOP)
def test_mongo_uri_points_at_the_mongo_service(service: str) -> None:
    parsed = parse_uri(environment(service)["MONGO_URI"])
    assert [(host, port) for host, port in parsed["nodelist"]] == [("mongo", 27017)]
    assert 27017 in container_ports("mongo")
    assert parsed["database"] == "eventshop"


@pytest.mark.parametrize("service", EVENTSHOP)
def test_kafka_brokers_are_the_listener_advertised_to_containers(service: str) -> None:
    listeners, advertised = kafka_listeners("KAFKA_LISTENERS"), kafka_listeners("KAFKA_ADVERTISED_LISTENERS")
    for broker in environment(service)["KAFKA_BROKERS"].split(","):
        host, _, port = broker.strip().rpartition(":")
        assert host == "kafka", f"{service}: KAFKA_BROKERS {broker!r} is not the kafka service"
        names = [name for name, address in advertised.items() if address == (host, int(port))]
        assert names, f"{service}: kafka advertises no listener at {broker}"
        assert listeners[names[0]][1] == int(port), f"kafka listens for {names[0]} on another port"


def test_kafka_host_listener_advertises_the_published_address() -> None:
    """A client on the host is redirected to the advertised address, so it must be the published one."""
    listeners, advertised = kafka_listeners("KAFKA_LISTENERS"), kafka_listeners("KAFKA_ADVERTISED_LISTENERS")
    by_port = {port: name for name, (_, port) in listeners.items()}
    assert published("kafka"), "kafka should be reachable from the host"
    for host_ip, host_port, container_port in published("kafka"):
        name = by_port.get(container_port)
        assert name, f"kafka publishes container port {container_port} but no listener uses it"
        assert advertised[name] == (host_ip, host_port)


def test_kafka_is_a_single_kraft_node_like_the_devstack() -> None:
    env = environment("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(env["KAFKA_NUM_PARTITIONS"]) == SINGLE_BROKER_PARTITIONS
    for key in (
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key


def test_the_second_and_third_brokers_run_only_in_the_cluster_profile() -> None:
    for name in CLUSTER_BROKERS[1:]:
        assert SERVICES[name]["profiles"] == ["cluster"]
    assert "profiles" not in SERVICES["kafka"]
    assert CLUSTER_ENV["COMPOSE_PROFILES"] == "cluster"


def test_every_compose_variable_has_a_default_and_the_cluster_file_sets_only_those() -> None:
    used = {m[1]: m[2] for m in VARIABLE.finditer(COMPOSE_TEXT)}
    assert all(default is not None for default in used.values()), used
    assert set(CLUSTER_ENV) - {"COMPOSE_PROFILES"} <= set(used), set(CLUSTER_ENV) - set(used)


def test_the_cluster_profile_is_three_kraft_brokers_of_one_quorum() -> None:
    envs = {name: environment(name, CLUSTER) for name in CLUSTER_BROKERS}
    node_of = {int(env["KAFKA_NODE_ID"]): name for name, env in envs.items()}
    assert sorted(node_of) == [1, 2, 3]
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    for env in envs.values():
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert len(voters) == 3, voters
        for voter in voters:
            node, _, address = voter.partition("@")
            host, _, port = address.rpartition(":")
            assert host == node_of[int(node)], voter
            assert kafka_listeners("KAFKA_LISTENERS", host, CLUSTER)["CONTROLLER"][1] == int(port), voter
    volumes = [CLUSTER[name]["volumes"][0].split(":")[0] for name in CLUSTER_BROKERS]
    assert len(set(volumes)) == 3, volumes


def test_the_cluster_profile_replicates_every_topic_as_the_settings_would() -> None:
    spec = TopicSpec.for_cluster(Settings(), len(CLUSTER_BROKERS))
    assert (spec.replication_factor, spec.min_insync_replicas) == (3, 2)
    for name in CLUSTER_BROKERS:
        env = environment(name, CLUSTER)
        assert int(env["KAFKA_NUM_PARTITIONS"]) == spec.partitions
        for key in (
            "DEFAULT_REPLICATION_FACTOR",
            "OFFSETS_TOPIC_REPLICATION_FACTOR",
            "TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        ):
            assert int(env[f"KAFKA_{key}"]) == spec.replication_factor, (name, key)
        for key in ("MIN_INSYNC_REPLICAS", "TRANSACTION_STATE_LOG_MIN_ISR"):
            assert int(env[f"KAFKA_{key}"]) == spec.min_insync_replicas, (name, key)


def test_in_the_cluster_every_broker_is_reachable_and_every_process_bootstraps_from_all() -> None:
    advertised = {name: kafka_listeners("KAFKA_ADVERTISED_LISTENERS", name, CLUSTER) for name in CLUSTER_BROKERS}
    for name in CLUSTER_BROKERS:
        by_port = {port: listener for listener, (_, port) in kafka_listeners("KAFKA_LISTENERS", name, CLUSTER).items()}
        ((host_ip, host_port, container_port),) = published(name, CLUSTER)
        assert advertised[name][by_port[container_port]] == (host_ip, host_port), name
    inside = {f"{host}:{port}" for a in advertised.values() for host, port in [a["PLAINTEXT"]]}
    for service in EVENTSHOP:
        assert set(environment(service, CLUSTER)["KAFKA_BROKERS"].split(",")) == inside, service
    for broker in CLUSTER_BROKERS:  # the topics are created once every broker answers
        assert CLUSTER["init"]["depends_on"][broker]["condition"] == "service_healthy"


def test_mysql_accounts_work_with_the_locked_driver() -> None:
    """asyncmy needs `cryptography` for caching_sha2_password over plain TCP; without it, native auth."""
    lock = (ROOT / "requirements.lock").read_text()
    if re.search(r"^cryptography==", lock, re.MULTILINE):
        pytest.skip("cryptography is locked; caching_sha2_password works")
    flags = command_tokens("mysql")
    assert "--mysql-native-password=ON" in flags
    assert any(re.fullmatch(r"--authentication-policy=\*?:?mysql_native_password.*", f) for f in flags)


@pytest.mark.parametrize("service", EVENTSHOP)
def test_each_process_runs_a_real_cli_command(service: str) -> None:
    assert "entrypoint" not in SERVICES[service], f"{service}: keep the image's `eventshop` entrypoint"
    # Duck-typed on `.commands`: typer may build its commands on a vendored click, not `click`.
    node: Any = typer.main.get_command(app)
    tokens = command_tokens(service)
    assert tokens, f"{service}: no command"
    for token in tokens:
        subcommands = getattr(node, "commands", None)
        if subcommands is None:
            break  # a leaf command: the remaining tokens are its arguments
        assert token in subcommands, f"{service}: `{token}` is not one of {sorted(subcommands)}"
        node = subcommands[token]
    assert getattr(node, "commands", None) is None, f"{service}: `{' '.join(tokens)}` names a group, not a command"


def test_the_roles_map_one_to_one_onto_processes() -> None:
    assert command_tokens("migrate") == ["migrate"]
    assert command_tokens("init") == ["devstack", "up"]
    for service in LONG_RUNNING:
        assert command_tokens(service) == [service]


def test_image_entrypoint_is_the_eventshop_cli() -> None:
    (entrypoint,) = dockerfile_instruction("ENTRYPOINT")
    assert json.loads(entrypoint) == ["eventshop"]


def test_gateway_listens_on_its_published_port_on_every_interface() -> None:
    env = environment("gateway")
    assert env["HOST"] == "0.0.0.0"
    assert container_ports("gateway") == {int(env["PORT"])}


def test_gateway_is_health_checked_on_healthz() -> None:
    check = SERVICES["gateway"].get("healthcheck") or {}
    assert not check.get("disable")
    assert "/healthz" in " ".join(check.get("test", []))
    assert any("/healthz" in arg for arg in dockerfile_instruction("HEALTHCHECK"))


@pytest.mark.parametrize("service", [s for s in EVENTSHOP if s != "gateway"])
def test_processes_without_http_do_not_inherit_the_gateway_healthcheck(service: str) -> None:
    assert (SERVICES[service].get("healthcheck") or {}).get("disable") is True


@pytest.mark.parametrize("service", [*BACKING, *MONITORING])
def test_backing_services_have_a_healthcheck(service: str) -> None:
    check = SERVICES[service].get("healthcheck") or {}
    assert check.get("test") and not check.get("disable")


def test_dependencies_wait_for_health_and_migrations() -> None:
    for name, svc in SERVICES.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert SERVICES[dep].get("healthcheck", {}).get("test"), f"{name} waits for {dep}, which has no check"
    for service in LONG_RUNNING:
        deps = SERVICES[service]["depends_on"]
        for backing in ("mysql", "mongo", "kafka"):
            assert deps[backing]["condition"] == "service_healthy"
        for one_shot in ("migrate", "init"):
            assert deps[one_shot]["condition"] == "service_completed_successfully"
    for one_shot in ("migrate", "init"):
        assert SERVICES[one_shot]["restart"] == "no"


def test_dockerfile_installs_the_hash_pinned_lock_as_a_non_root_user() -> None:
    assert dockerfile_instruction("FROM") == ["python:3.11-slim"]
    runs = " ".join(dockerfile_instruction("RUN"))
    assert re.search(r"pip install --require-hashes -r requirements\.lock", runs)
    assert "pip install --no-deps --no-build-isolation -e ." in runs
    users = dockerfile_instruction("USER")
    assert users and users[-1] not in ("root", "0"), "the processes must not run as root"


def test_dockerfile_copies_every_package_the_distribution_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {Path(src).name for args in dockerfile_instruction("COPY") for src in args.split()[:-1]}
    needed = packages | {"requirements.lock", "pyproject.toml", "README.md", "alembic.ini"}
    assert not needed - copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    ignored = {
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not needed & ignored, f".dockerignore hides {sorted(needed & ignored)} from the build"


def test_the_gateway_can_verify_tokens() -> None:
    assert environment("gateway")["JWT_SECRET"].strip()
