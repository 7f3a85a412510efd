"""Stand-ins a unit test hands to the code it tests in place of the real thing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import DomainError


class Clock:
    """A clock that stands still until the test moves it (`clock.now += 1`)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refused(move: Callable[[], object], **expected: Any) -> dict[str, Any]:
    """The move fails with a rule's error of these extensions (code, field, ...) and nothing else."""
    with pytest.raises(DomainError) as failure:
        move()
    assert failure.value.extensions == expected
    return failure.value.extensions
