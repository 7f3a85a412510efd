"""The result table (rich) and bench/results/latest.json."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.stats import Figure


def _number(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _ratio(figure: Figure) -> str:
    ratio = figure.ratio
    if ratio is None:
        return "-"
    good = ratio >= 1 if figure.higher_is_better else ratio <= 1
    colour = "green" if good else ("yellow" if (0.5 <= ratio <= 2) else "red")
    return f"[{colour}]{ratio:.2f}x[/]"


def table(figures: Sequence[Figure], title: str) -> Table:
    out = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    out.add_column("figure", overflow="fold", max_width=58)
    out.add_column("eventshop", justify="right")
    out.add_column("baseline", justify="right")
    out.add_column("ratio", justify="right")
    out.add_column("baseline is / goal / note", overflow="fold", max_width=60)
    group = None
    for f in figures:
        if group is not None and f.group != group:
            out.add_section()
        group = f.group
        value = f.display or _number(f.eventshop, f.unit)
        notes = [n for n in (f.baseline_name, f.goal, f.note) if n]
        if f.goal_met is not None:
            notes.insert(0, "[green]goal met[/]" if f.goal_met else "[red]goal NOT met[/]")
        out.add_row(
            f.name, value, _number(f.baseline, f.unit) if f.baseline is not None else "-", _ratio(f), "; ".join(notes)
        )
    return out


def print_report(console: Console, figures: Sequence[Figure], *, run_id: str, seconds: float) -> None:
    console.print()
    console.print(table(figures, f"eventshop bench, run {run_id} ({seconds:.0f} s)"))
    console.print(
        "ratio = eventshop / baseline, both measured in this run. Rates: below 1x is slower than the baseline. "
        "Counts: above 1x is more work."
    )


def write_json(path: Path, figures: Sequence[Figure], *, run_id: str, seconds: float, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "run_id": run_id,
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": seconds,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        **meta,
        "figures": [f.as_json() for f in figures],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
