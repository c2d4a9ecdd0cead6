"""``python -m bench``: memagent against stock langgraph, every measurement, several runs.

Each run gives every contender a fresh database, measures turn latency, memory
operations and storage against thread length, where a long thread's turn spends its
time, throughput with many threads, the chat's cold start and a long chat under a
context budget (compaction), and drops the databases. Then it prints the tables
(median over the runs and their range) and writes ``bench/results/latest.json`` and
``latest.png`` (``--compaction-only``: ``compaction.json``). See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.coldstart import cold_start
from bench.compaction import COMPACTION_BUDGET, compaction_sweep, open_chatters
from bench.db import BenchServer, bench_server
from bench.report import plot, render, write_json
from bench.workloads import (
    length_sweep,
    open_contenders,
    round_trips,
    throughput,
    turn_phases,
    warm_up,
)

RESULTS_DIR = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` swaps in sizes that finish in well under a minute."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes and one run")
    parser.add_argument("--runs", type=int, help="repetitions of everything (default 3)")
    parser.add_argument("--lengths", type=_ints, help="thread lengths (default 10,100,1000)")
    parser.add_argument("--samples", type=int, help="timed turns per length (default 30)")
    parser.add_argument("--op-rounds", type=int, help="forget/rewind/timeline rounds (30)")
    parser.add_argument("--redact-rounds", type=int, help="redacts per length (5)")
    parser.add_argument("--message-chars", type=int, default=200, help="user message size")
    parser.add_argument("--threads", type=int, default=50, help="concurrent threads")
    parser.add_argument("--turns-per-thread", type=int, default=5, help="throughput turns each")
    parser.add_argument("--cold-runs", type=int, help="cold start launches per case (5)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or None,
        help="server to create the run's databases on (default: DATABASE_URL, else embedded)",
    )
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold start")
    parser.add_argument("--no-compaction", action="store_true", help="skip the compaction chat")
    parser.add_argument(
        "--compaction-only", action="store_true", help="only the compaction chat (issue 18)"
    )
    parser.add_argument(
        "--context-tokens",
        type=int,
        default=COMPACTION_BUDGET,
        help=f"the compaction chat's context budget (default {COMPACTION_BUDGET})",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--render", type=Path, help="only print the tables of a saved JSON")
    args = parser.parse_args(argv)
    if args.no_compaction and args.compaction_only:
        parser.error("--no-compaction and --compaction-only exclude each other")
    if args.context_tokens < 1:
        parser.error("--context-tokens must be a positive whole number")
    quick = args.quick
    args.runs = args.runs or (1 if quick else 3)
    args.lengths = args.lengths or ([10, 100] if quick else [10, 100, 1000])
    args.samples = args.samples or (5 if quick else 30)
    args.op_rounds = args.op_rounds or (3 if quick else 30)
    args.redact_rounds = args.redact_rounds or (2 if quick else 5)
    args.cold_runs = args.cold_runs or (1 if quick else 5)
    return args


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def progress(message: str) -> None:
    """One line on stderr, so a long run shows where it is."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def measure_run(
    server: BenchServer, home: Path, args: argparse.Namespace
) -> tuple[dict[str, str], dict[str, Any]]:
    """One run of every measurement, on one event loop, each contender in its database.

    Returns:
        The contenders' labels by key, and the run's measurements.
    """
    run: dict[str, Any] = {}
    labels: dict[str, str] = {}
    if not args.compaction_only:
        labels = await checkpointer_workloads(server, home, args, run)
    if not args.no_compaction:
        progress(f"compaction chat {args.lengths}, budget {args.context_tokens} tokens")
        async with open_chatters(server, home / "compaction", args.context_tokens) as chatters:
            compaction = await compaction_sweep(
                chatters,
                args.lengths,
                samples=args.samples,
                chars=args.message_chars,
                progress=progress,
            )
        run["compaction"] = asdict(compaction)
    return labels, run


async def checkpointer_workloads(
    server: BenchServer, home: Path, args: argparse.Namespace, run: dict[str, Any]
) -> dict[str, str]:
    """Every measurement of issue 11 and 13 into ``run``; the contenders' labels by key."""
    async with open_contenders(server, home) as contenders:
        labels = {c.key: c.label for c in contenders}
        progress(f"warming up {len(contenders)} contenders")
        await warm_up(contenders)
        progress(f"length sweep {args.lengths}, {args.samples} samples per length")
        threads = {c.key: f"{c.key}-main-{uuid.uuid4()}" for c in contenders}
        sweep = await length_sweep(
            contenders,
            threads,
            args.lengths,
            samples=args.samples,
            chars=args.message_chars,
            op_rounds=args.op_rounds,
            redact_rounds=args.redact_rounds,
            progress=progress,
        )
        run["sweep"] = asdict(sweep)
        progress(f"where a turn's time goes at {sweep.turns_done} turns")
        memagent = next(c for c in contenders if c.saver is not None)
        run["phases"] = await turn_phases(
            memagent, threads[memagent.key], sweep.turns_done, args.samples, args.message_chars
        )
        progress("round trips per operation")
        run["round_trips"] = await round_trips(
            contenders, home, grow=10, turns=args.samples, chars=args.message_chars
        )
        run["throughput"] = {}
        for contender in contenders:
            progress(f"throughput: {contender.label}")
            run["throughput"][contender.key] = await throughput(
                contender,
                threads=args.threads,
                turns_each=args.turns_per_thread,
                chars=args.message_chars,
            )
    if not args.no_cold_start:
        progress("cold start")
        async with server.database("coldstart") as url:
            run["cold_start"] = await asyncio.to_thread(cold_start, url, args.cold_runs)
    return labels


def machine() -> str:
    """CPU, core count, OS and Python, for the report's header."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def run_meta(server: BenchServer, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """Where and how the numbers were taken."""
    packages = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres", "psycopg")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "postgres": server.label + (" (embedded)" if server.embedded else ""),
        "databases": server.created,
        "versions": {name: metadata.version(name) for name in packages},
        "message_chars": args.message_chars,
        "samples": args.samples,
        "lengths": args.lengths,
        "op_rounds": args.op_rounds,
        "redact_rounds": args.redact_rounds,
        "runs": args.runs,
        "quick": args.quick,
        "compaction_only": args.compaction_only,
        "context_tokens": None if args.no_compaction else args.context_tokens,
        "seconds": seconds,
    }


def results_name(args: argparse.Namespace) -> str:
    """The results' file name: a quick or partial run never overwrites the full one."""
    if args.compaction_only:
        return "compaction-quick" if args.quick else "compaction"
    return "quick" if args.quick else "latest"


def main(argv: list[str] | None = None) -> int:
    """Runs everything (or renders a saved run) and writes the results."""
    args = parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    with (
        bench_server(args.database_url) as server,
        tempfile.TemporaryDirectory(prefix="memagent-bench-") as home,
    ):
        progress(f"server: {server.label}{' (embedded)' if server.embedded else ''}")
        for number in range(args.runs):
            progress(f"run {number + 1} of {args.runs}")
            labels, run = asyncio.run(measure_run(server, Path(home) / f"run{number}", args))
            runs.append(run)
        results = {
            "labels": labels,
            "runs": runs,
            "meta": run_meta(server, args, time.perf_counter() - started),
        }
    name = results_name(args)
    write_json(results, args.out / f"{name}.json")
    plotted = plot(results, args.out / f"{name}.png")
    print(render(results))
    print(f"\nwrote {args.out / f'{name}.json'}" + (f" and {name}.png" if plotted else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
