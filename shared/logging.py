"""structlog set-up shared by every process: key/value in a terminal, JSON when asked."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import structlog

# aiokafka's group coordinator logs this at ERROR while Kafka is still electing the group's coordinator (a fresh
# broker, a new group) and retries by itself.
COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"
COORDINATOR_NOT_AVAILABLE = "CoordinatorNotAvailable"


class CoordinatorElection(logging.Filter):
    """The expected "coordinator not available" while Kafka elects a coordinator: the first of a run is logged
    at INFO, the rest of the run not at all, unless the run lasts longer than `patience` seconds: from then on
    each is the ERROR it was (Kafka is not electing, it is failing). A quiet `patience` ends a run."""

    def __init__(self, patience: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.patience = patience
        self.clock = clock
        self.started = 0.0
        self.last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or COORDINATOR_NOT_AVAILABLE not in record.getMessage():
            return True
        now = self.clock()
        first = self.last is None or now - self.last > self.patience
        if first:
            self.started = now
        self.last = now
        if first:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = (
                "waiting for Kafka to elect the group coordinator (retried): %s",
                (record.getMessage(),),
            )
            return True
        return now - self.started > self.patience


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s %(message)s")
    for noisy in ("aiokafka", "kafka", "pymongo", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    coordinator = logging.getLogger(COORDINATOR_LOGGER)
    if not any(isinstance(f, CoordinatorElection) for f in coordinator.filters):
        coordinator.addFilter(CoordinatorElection())


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
