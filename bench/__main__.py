"""``python -m bench`` (``make bench``): run every scenario several times, print one table.

It starts its own ``redis-server`` and HTTP sinks on free loopback ports, runs the
scenarios in rounds (every scenario once per round, so ratios compare runs made
under the same conditions), prints the table on stdout and progress on stderr,
writes every run to ``bench/results/latest.json`` and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.context import Context
from bench.plan import FULL, QUICK, Plan
from bench.procs import BenchError
from bench.results import Results, write_json
from bench.rows import render
from bench.scenarios import SCENARIOS, SLOW_SCENARIOS
from bench.sink import Sink, start_aiohttp, start_throughput_sink
from bench.table import build_rows
from producer.logs import configure as configure_logging
from producer.loop import run_event_loop
from producer.redis.clients import redis_client
from producer.settings import ProducerSettings
from worker.localredis import LocalRedis

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark delivery throughput, publishing and latency (bench/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs, 1 round (~1 min)")
    parser.add_argument("--runs", type=int, help="rounds (default 3, or 1 with --quick)")
    parser.add_argument(
        "--slow-runs",
        type=int,
        help=f"rounds of {', '.join(sorted(SLOW_SCENARIOS))} (default 1; 0 skips them)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        help="deliveries pending in the backlog scenario (default 200,000; 50,000 with --quick)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="requests in flight of the raw clients and the Node.js worker, and every"
        " worker's WORKER_CONCURRENCY (default 200, the worker's default)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SCENARIOS),
        help="run just this scenario (repeatable); ratios need their reference scenario too",
    )
    parser.add_argument(
        "--sink",
        choices=("auto", "nginx", "aiohttp"),
        default="auto",
        help="throughput sink: nginx when installed (auto), or aiohttp processes",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON record")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.slow_runs is not None and args.slow_runs < 0:
        parser.error("--slow-runs must be 0 or more")
    if args.backlog is not None and args.backlog < 1000:
        parser.error("--backlog must be at least 1000")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan of this invocation: --quick or the default, with the options' overrides."""
    plan = QUICK if args.quick else FULL
    overrides = {
        "runs": args.runs,
        "slow_runs": args.slow_runs,
        "backlog_size": args.backlog,
        "concurrency": args.concurrency,
    }
    return dataclasses.replace(plan, **{k: v for k, v in overrides.items() if v is not None})


def rounds_of(plan: Plan, name: str) -> int:
    """How many rounds scenario ``name`` runs in (the slow ones only in the first few)."""
    return plan.slow_runs if name in SLOW_SCENARIOS else plan.runs


def progress(text: str) -> None:
    """A progress line on stderr (stdout carries only the table)."""
    print(text, file=sys.stderr, flush=True)


def describe(run: dict[str, float]) -> str:
    """A run's metrics on one line."""
    return " ".join(f"{name}={value:,.3g}" for name, value in run.items())


def meta(plan: Plan, settings: ProducerSettings, sink: Sink, selected: list[str]) -> dict[str, Any]:
    """The conditions of this invocation, for the JSON record."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sink": sink.kind,
        "plan": dataclasses.asdict(plan),
        "batch_size": settings.batch_size,
        "scenarios": selected,
    }


async def measure(
    args: argparse.Namespace, plan: Plan, selected: list[str], workdir: Path
) -> tuple[Results, dict[str, Any]]:
    """Start Redis and the sinks, run the rounds, stop everything; the runs and conditions."""
    results = Results(selected)
    async with AsyncExitStack() as stack:
        local = LocalRedis()
        await local.start()
        stack.push_async_callback(local.stop)
        sink = await start_throughput_sink(args.sink, workdir)
        stack.push_async_callback(sink.stop)
        recorder = await start_aiohttp(workdir, 1, record=True)
        stack.push_async_callback(recorder.stop)
        admin = redis_client(local.url)
        stack.push_async_callback(admin.aclose)
        assert isinstance(admin, aioredis.Redis)  # the bench's Redis is one local server
        # The caller's settings (BATCH_SIZE, KEY_PREFIX...) apply, but never its Redis.
        # Its receivers run on 127.0.0.1, where the workers deliver too (bench/workers.py).
        settings = ProducerSettings.from_env(
            {**os.environ, "REDIS_URL": local.url, "ALLOW_PRIVATE_DESTINATIONS": "1"}
        )
        ctx = Context(plan, admin, local.url, settings, sink, recorder, workdir)
        progress(f"bench: redis {local.url}, sink {sink.kind} {sink.url}, work dir {workdir}")
        total = max(rounds_of(plan, name) for name in selected)
        for round_ in range(total):
            for name in (n for n in selected if round_ < rounds_of(plan, n)):
                try:
                    run = await SCENARIOS[name](ctx)
                except BenchError as exc:
                    results.fail(name, round_, str(exc))
                    progress(f"[{round_ + 1}/{total}] {name}: FAILED {exc}")
                else:
                    results.add(name, round_, run)
                    progress(f"[{round_ + 1}/{total}] {name}: {describe(run)}")
        return results, meta(plan, settings, sink, selected)


async def bench(args: argparse.Namespace) -> int:
    """Measure, print the table, write the JSON; 0 when every run was measured, else 1."""
    plan = make_plan(args)
    selected = [
        name
        for name in SCENARIOS
        if (not args.only or name in args.only) and rounds_of(plan, name) > 0
    ]
    if not selected:
        progress("bench: nothing to run (--slow-runs 0 and only slow scenarios selected)")
        return 2
    started = time.monotonic()
    # SIGTERM unwinds like Ctrl-C does (asyncio turns SIGINT into a cancellation), so
    # every process started so far is stopped.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    workdir = Path(tempfile.mkdtemp(prefix="cliq-bench-"))
    try:
        results, conditions = await measure(args, plan, selected, workdir)
    except (asyncio.CancelledError, KeyboardInterrupt):
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    rows = build_rows(results)
    print(render(rows))
    conditions["seconds"] = round(time.monotonic() - started, 1)
    write_json(args.output, conditions, results, [row.to_dict() for row in rows])
    progress(f"bench: results in {args.output} ({conditions['seconds']} s)")
    if results.failed:
        progress(f"bench: {results.failed} run(s) failed; worker logs kept in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench``."""
    args = parse_args(argv)
    # Log lines of the parts it runs in-process (the hot-path log writer's partitions)
    # go to stderr, with the progress: stdout carries only the table.
    configure_logging("console", "warning")
    try:
        return run_event_loop(bench(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("bench: interrupted; everything it started is stopped")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
