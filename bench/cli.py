"""`python -m bench` (`make bench`): every benchmark against its baseline in one run, a table and a JSON file.

The devstack services must be up (`make bench` runs `eventshop devstack up` and the migrations first). The
bench starts the eventshop components it measures itself, in-process or as subprocesses on free loopback
ports, against `<db>_bench` databases and topics of its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from rich.console import Console

from bench import latency, pipeline, projector, reads, relay, scale, workers, write_scale, writes
from bench.env import RESULTS, BenchEnv
from bench.report import print_report, write_json
from bench.stats import Figure
from shared.logging import configure_logging
from shared.settings import mask_dsn

Benchmark = Callable[[BenchEnv, float], Awaitable[list[Figure]]]

# In this order: the write and relay benchmarks need no read model; the latency run comes last because
# its `eventshop all` process is the heaviest.
BENCHMARKS: dict[str, Benchmark] = {
    "writes": lambda env, scale: writes.run(env, orders=int(240 * scale)),
    "relay": lambda env, scale: relay.run(env, rows=int(20_000 * scale)),
    "projector": lambda env, scale: projector.run(env, scale=scale),
    "reads": lambda env, scale: reads.run(env, seconds=3.0 * min(1.0, scale)),
    "workers": lambda env, scale: workers.run(env, seconds=3.0 * min(1.0, scale)),
    "latency": lambda env, scale: latency.run(env, light=int(60 * scale), per_client=int(25 * scale)),
    "pipeline": lambda env, scale: pipeline.run(env, seconds=60.0 * scale),
    "scale": lambda env, factor: scale.run(env, scale=factor),
    "write-scale": lambda env, factor: write_scale.run(env, scale=factor),
}
# Run only when named (`--only scale`, `make bench-scale`): it grows a read model to 100k orders (~12 minutes).
OPT_IN = frozenset({"scale"})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        help=f"run only these (repeatable); {', '.join(sorted(OPT_IN))} only when named here",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count (0.2 for a smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, console: Console) -> int:
    env = BenchEnv()
    s = env.settings
    console.print(
        f"[bold]eventshop bench[/] run {env.run_id} on {os.cpu_count()} CPUs: MySQL {mask_dsn(s.mysql_dsn)}, "
        f"MongoDB {mask_dsn(s.mongo_uri)}, Kafka {s.kafka_brokers} (topics {s.kafka_topic_prefix}*)"
    )
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    failed: list[str] = []
    try:
        await env.reset_write_model()
        await env.create_topics(s)
        for name in args.only or [name for name in BENCHMARKS if name not in OPT_IN]:
            t0 = time.perf_counter()
            console.print(f"[cyan]{name}[/] ...")
            try:
                figures += await BENCHMARKS[name](env, args.scale)
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                failed.append(name)
                console.print_exception(max_frames=8)
                figures.append(Figure(name, f"{name}: FAILED", "", None, note=f"{type(exc).__name__}: {exc}"[:300]))
            timings[name] = time.perf_counter() - t0
            console.print(f"[cyan]{name}[/] done in {timings[name]:.1f} s")
    finally:
        deleted = await env.delete_topics()
        console.print(f"deleted the run's {deleted} topics")
    seconds = time.perf_counter() - started
    print_report(console, figures, run_id=env.run_id, seconds=seconds)
    write_json(
        args.output,
        figures,
        run_id=env.run_id,
        seconds=seconds,
        meta={
            "scale": args.scale,
            "benchmark_seconds": timings,
            "kafka_topic_prefix": s.kafka_topic_prefix,
            "load_average_at_start": load_at_start,
            "failed": failed,
        },
    )
    console.print(f"wrote {args.output}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("WARNING")
    # aiokafka logs at ERROR while a just-created topic's metadata propagates (it retries and succeeds).
    for noisy in ("aiokafka", "asyncmy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    # uvloop, as `eventshop` itself runs: in-process components measure the same.
    return uvloop.run(run(args, Console(width=None if sys.stdout.isatty() else 160)))
