"""KAFKA_TOPIC_PREFIX isolates an environment on its own: the consumer groups follow it unless named."""

from __future__ import annotations

import pytest

from shared.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_group_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_TOPIC_PREFIX", "PROJECTOR_GROUP", "STOCK_WORKER_GROUP"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_prefix_the_groups_keep_their_old_names() -> None:
    plain = settings()
    assert (plain.projector_group, plain.stock_worker_group) == ("eventshop-projector", "eventshop-stock-worker")


def test_the_groups_follow_the_prefix_unless_named() -> None:
    staging = settings(kafka_topic_prefix="staging.")
    assert (staging.projector_group, staging.stock_worker_group) == (
        "staging.eventshop-projector",
        "staging.eventshop-stock-worker",
    )
    named = settings(kafka_topic_prefix="staging.", projector_group="legacy-projector")
    assert (named.projector_group, named.stock_worker_group) == ("legacy-projector", "staging.eventshop-stock-worker")
    assert settings(kafka_topic_prefix="qa.", stock_worker_group=" ").stock_worker_group == "qa.eventshop-stock-worker"


def test_environment_variables_decide_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", "ci-42.")
    monkeypatch.setenv("PROJECTOR_GROUP", "")
    monkeypatch.setenv("STOCK_WORKER_GROUP", "pinned-stock")
    loaded = settings()
    assert (loaded.projector_group, loaded.stock_worker_group) == ("ci-42.eventshop-projector", "pinned-stock")


def test_a_copy_with_another_prefix_renames_derived_groups_and_keeps_named_ones() -> None:
    """Tests and tools make environments with model_copy, which runs no validator."""
    base = settings(stock_worker_group="pinned-stock")
    copy = base.model_copy(update={"kafka_topic_prefix": "test."})
    assert (copy.projector_group, copy.stock_worker_group) == ("test.eventshop-projector", "pinned-stock")
    again = copy.model_copy(update={"kafka_topic_prefix": "bench.1."})
    assert again.projector_group == "bench.1.eventshop-projector"
    named = copy.model_copy(update={"projector_group": "chosen"})
    assert named.model_copy(update={"kafka_topic_prefix": "x."}).projector_group == "chosen"
