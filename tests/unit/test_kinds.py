"""The registry of aggregate kinds: every kind has its write side, its read side and its events, once."""

from __future__ import annotations

from command.kinds import TABLE_OF, WRITE_KINDS
from eventshop.kinds import KIND_OF, KINDS
from projection.kinds import PROJECTORS, VIEW_DOCUMENTS, VIEW_OF
from shared.events import DOMAIN_TOPICS, EVENT_TYPES, SNAPSHOT_OF, TOPICS_OF, AggregateType


def test_every_kind_has_one_entry_on_each_side() -> None:
    assert [kind.kind for kind in KINDS] == list(AggregateType)
    assert sorted(w.kind for w in WRITE_KINDS) == sorted(AggregateType)
    assert sorted(p.view_type.kind for p in PROJECTORS) == sorted(AggregateType)
    assert set(VIEW_OF) == set(AggregateType) and len(VIEW_DOCUMENTS) == len(AggregateType)
    assert len(TABLE_OF) == len(AggregateType)


def test_every_domain_topic_is_projected_by_the_projector_of_its_events_kind() -> None:
    projected = [topic for kind in KINDS for topic in kind.topics]
    assert sorted(projected) == sorted(DOMAIN_TOPICS)  # each exactly once
    for topic, event in EVENT_TYPES.items():
        assert topic in KIND_OF[event.aggregate].topics
    assert KIND_OF[AggregateType.PRODUCT].topics >= {"stock.reserved", "stock.released"}


def test_each_kind_agrees_on_its_snapshot_and_names() -> None:
    for kind in KINDS:
        assert kind.view.kind is kind.kind
        assert kind.view.snapshot_type is SNAPSHOT_OF[kind.kind] is kind.snapshot
        assert kind.projector.view_type is kind.view
        assert TABLE_OF[kind.write.aggregate] is kind.write.table
        assert set(kind.topics) == TOPICS_OF[kind.kind]
