"""Figures (one row of the result table) and the small statistics they need."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50": percentile(ms, 0.50),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": max(ms) if ms else math.nan,
        "n": float(len(ms)),
    }


@dataclass
class Figure:
    """One measured quantity, for eventshop and (when there is one) for its baseline in the same run.

    `ratio` is eventshop / baseline: for rates (`higher_is_better`) below 1 means slower than the baseline;
    for counts and times above 1 means more.
    """

    group: str
    name: str
    unit: str
    eventshop: float | None
    baseline: float | None = None
    baseline_name: str = ""
    higher_is_better: bool = True
    goal: str = ""
    goal_met: bool | None = None
    note: str = ""
    display: str = ""  # a custom rendering of the eventshop value (percentile triples)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.eventshop is None or not self.baseline:
            return None
        return self.eventshop / self.baseline

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return {k: _finite(v) for k, v in data.items()}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan
