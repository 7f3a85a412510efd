"""A standby relay is quiet while another session holds the lock, and says so when no one does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog
from sqlalchemy.ext.asyncio import create_async_engine
from structlog.testing import capture_logs

from command.relay import leadership as module
from command.relay.leadership import Leadership
from tests.doubles import Clock


def standby(clock: Clock) -> Leadership:
    engine = create_async_engine("mysql+asyncmy://relay@127.0.0.1/never_connected")  # no connection is made
    return Leadership(engine, "eventshop.outbox_relay.test", leaderless_warning=30, clock=clock)


@contextmanager
def relay_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The module's log lines; a fresh logger, since the module's own may be cached by an earlier test."""
    with capture_logs() as logs:
        monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))
        yield logs


def test_a_relay_refused_a_free_lock_warns_after_a_while_and_again_as_often(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(1000.0)
    leadership = standby(clock)
    with relay_logs(monkeypatch) as logs:
        for _ in range(100):  # 100 s of polls, one a second, the lock free each time
            leadership._note_standby(None)
            clock.now += 1
    warnings = [e for e in logs if e["event"] == "relay.cannot_lead"]
    assert [round(e["waited_seconds"]) for e in warnings] == [30, 60, 90]
    assert [e["log_level"] for e in warnings] == ["warning"] * 3


def test_a_standby_behind_a_live_leader_stays_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(1000.0)
    leadership = standby(clock)
    with relay_logs(monkeypatch) as logs:
        for _ in range(100):
            leadership._note_standby(42)  # the leader's connection id
            clock.now += 1
    assert [e["event"] for e in logs] == ["relay.standby"]
