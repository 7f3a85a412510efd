"""What a topic should look like on a cluster of a given size, how an existing one is compared with it, and the
brokers devstack runs for DEVSTACK_KAFKA_BROKERS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devstack.kafka import Broker, brokers
from devstack.process import DevstackError
from shared.kafka.topics import TopicReport, TopicSpec, TopicState
from shared.settings import Settings


def settings(**values: object) -> Settings:
    return Settings().model_copy(update=values)


@pytest.mark.parametrize(
    ("brokers_found", "expected"),
    [(1, TopicSpec(3, 1, 1)), (2, TopicSpec(12, 3, 2)), (3, TopicSpec(12, 3, 2)), (5, TopicSpec(12, 3, 2))],
)
def test_left_at_zero_the_layout_follows_the_cluster(brokers_found: int, expected: TopicSpec) -> None:
    """One broker is a development machine (3 partitions, as the pipeline bench measured); a cluster has each
    partition on three brokers and an ack from two, also while only two of its brokers answer (creating a topic
    then fails rather than leaving it with two replicas for ever)."""
    assert TopicSpec.for_cluster(settings(), brokers_found) == expected


def test_a_layout_set_is_kept_whatever_the_cluster() -> None:
    chosen = settings(kafka_topic_partitions=24, kafka_replication_factor=3, kafka_min_insync_replicas=3)
    assert TopicSpec.for_cluster(chosen, 1) == TopicSpec(24, 3, 3)
    assert TopicSpec.for_cluster(settings(kafka_replication_factor=2), 5) == TopicSpec(12, 2, 1)


def test_an_existing_topic_is_compared_setting_by_setting() -> None:
    spec = TopicSpec(12, 3, 2)
    assert TopicState("order.created", 12, 3, 2).differences(spec) == []
    assert TopicState("order.created", 3, 1, 1).differences(spec) == [
        "partitions 3 (settings: 12)",
        "replication factor 1 (settings: 3)",
        "min.insync.replicas 1 (settings: 2)",
    ]
    assert TopicState("order.created", 0, 0, None).differences(spec) == ["missing"]
    report = TopicReport(3, spec, [TopicState("a", 12, 3, 2, under_replicated=4), TopicState("b", 3, 3, 2)])
    assert report.differing == {"b": ["partitions 3 (settings: 12)"]}  # a broker catching up is not a difference


def test_devstack_runs_one_broker_named_kafka_by_default() -> None:
    (only,) = brokers(settings())
    assert (only.name, only.address(settings())) == ("kafka", ("127.0.0.1", 9092))


def test_a_devstack_cluster_has_a_broker_per_address_each_with_its_controller_on_the_next_port(tmp_path: Path) -> None:
    cluster = settings(
        devstack_kafka_brokers=3, kafka_brokers="127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096", state_dir=tmp_path
    )
    found = brokers(cluster)
    assert [b.name for b in found] == ["kafka-1", "kafka-2", "kafka-3"]
    assert [b.controller(cluster) for b in found] == ["127.0.0.1:19093", "127.0.0.1:19095", "127.0.0.1:19097"]
    props = dict(
        line.split("=", 1) for line in found[1]._server_properties(cluster, tmp_path / "data").splitlines() if line
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    replicated = ("default.replication.factor", "offsets.topic.replication.factor")
    assert [props[k] for k in (*replicated, "min.insync.replicas", "unclean.leader.election.enable")] == [
        "3",
        "3",
        "2",
        "false",
    ]


def test_one_address_is_the_first_broker_s_and_the_others_follow_it() -> None:
    cluster = settings(devstack_kafka_brokers=3, kafka_brokers="127.0.0.1:9092")
    assert [b.address(cluster)[1] for b in brokers(cluster)] == [9092, 9094, 9096]


@pytest.mark.parametrize(
    ("count", "addresses", "problem"),
    [
        (3, "127.0.0.1:19092,127.0.0.1:19094", "needs as many KAFKA_BROKERS addresses"),
        (2, "127.0.0.1:19092,127.0.0.1:19093", "ports [19092, 19093] overlap"),
    ],
)
def test_a_devstack_cluster_refuses_addresses_it_cannot_run(count: int, addresses: str, problem: str) -> None:
    with pytest.raises(DevstackError, match=re.escape(problem)):
        brokers(settings(devstack_kafka_brokers=count, kafka_brokers=addresses))


def test_a_broker_of_a_cluster_is_named_by_its_node() -> None:
    assert Broker(2, 3).name == "kafka-2"
    assert Broker(1, 1).name == "kafka"


def _report(*topics: TopicState) -> TopicReport:
    return TopicReport(3, TopicSpec(12, 3, 2), list(topics))


@pytest.mark.parametrize(
    ("answers", "expected", "asked"),
    [
        # A topic just created that the answering broker does not show yet: asked again until it does.
        ([TopicState("t", 0, 0, None), TopicState("t", 12, 3, 2)], {"t"}, 2),
        # Shown, but without its configuration yet: asked again.
        ([TopicState("t", 12, 3, None), TopicState("t", 12, 3, 2)], set(), 2),
        # Missing and not known to exist: that is the answer (`topics check` reports it missing).
        ([TopicState("t", 0, 0, None), TopicState("t", 12, 3, 2)], set(), 1),
    ],
)
async def test_a_topic_the_answering_broker_does_not_know_yet_is_asked_about_again(
    monkeypatch: pytest.MonkeyPatch, answers: list[TopicState], expected: set[str], asked: int
) -> None:
    from shared.kafka import topics

    calls: list[int] = []

    async def answer(_: Settings) -> TopicReport:
        calls.append(1)
        return _report(answers[min(len(calls), len(answers)) - 1])

    monkeypatch.setattr(topics, "_describe_topics", answer)
    report = await topics.describe_topics(settings(), expected=expected)
    assert len(calls) == asked and report.topics == [answers[asked - 1]]
