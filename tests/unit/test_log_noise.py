"""The expected noise of a fresh start stays quiet: Kafka electing a group coordinator is logged once, at INFO,
unless it lasts."""

from __future__ import annotations

import logging

from shared.logging import COORDINATOR_LOGGER, CoordinatorElection, configure_logging
from tests.doubles import Clock

NOT_AVAILABLE = "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"


def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(COORDINATOR_LOGGER, level, __file__, 1, message, None, None)


def test_a_coordinator_election_is_logged_once_at_info_unless_it_lasts() -> None:
    clock = Clock()
    election = CoordinatorElection(patience=30.0, clock=clock)
    first = record(NOT_AVAILABLE)
    assert election.filter(first) and first.levelno == logging.INFO and "elect" in first.getMessage()
    clock.now = 1.0
    assert not election.filter(record(NOT_AVAILABLE))  # the second of the run: not logged
    for second in range(2, 31, 2):
        clock.now = float(second)
        assert not election.filter(record(NOT_AVAILABLE))
    clock.now = 31.0
    lasting = record(NOT_AVAILABLE)
    assert election.filter(lasting) and lasting.levelno == logging.ERROR  # it lasts: a failure, as it was
    clock.now = 100.0  # quiet for longer than the patience: a new election, a new run
    again = record(NOT_AVAILABLE)
    assert election.filter(again) and again.levelno == logging.INFO


def test_other_errors_of_the_coordinator_pass_as_they_are() -> None:
    election = CoordinatorElection()
    other = record("Heartbeat failed: UnknownMemberIdError")
    assert election.filter(other) and other.levelno == logging.ERROR


def test_every_process_installs_the_filter_once() -> None:
    configure_logging()
    configure_logging()
    filters = logging.getLogger(COORDINATOR_LOGGER).filters
    assert sum(isinstance(f, CoordinatorElection) for f in filters) == 1
