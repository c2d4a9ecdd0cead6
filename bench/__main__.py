"""``python -m bench``: memagent against stock langgraph, every measurement in one run.

Creates a fresh database, measures turn latency, memory operations and storage
against thread length, throughput with many threads and the chat's cold start, checks
the ``DeltaChannel`` prototype against the forget/rewind contract, then prints a table
and writes ``bench/results/latest.json`` and ``latest.png``. See ``bench/README.md``.
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
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from agent.checkpointer import open_saver
from bench.coldstart import cold_start
from bench.db import BenchDatabase, fresh_database
from bench.delta import contract_checks
from bench.report import plot, render, write_json
from bench.workloads import bench_settings, length_sweep, open_contenders, throughput, warm_up

RESULTS_DIR = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` swaps in sizes that finish in about a minute."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--lengths", type=_ints, help="thread lengths (default 10,100,1000)")
    parser.add_argument("--samples", type=int, help="timed turns per length (default 30)")
    parser.add_argument("--op-rounds", type=int, help="forget/rewind/timeline rounds (30)")
    parser.add_argument("--message-chars", type=int, default=200, help="user message size")
    parser.add_argument("--threads", type=int, default=50, help="concurrent threads")
    parser.add_argument("--turns-per-thread", type=int, help="throughput turns each (10)")
    parser.add_argument("--cold-runs", type=int, help="cold start launches per case (5)")
    parser.add_argument(
        "--delta-frequency", type=_ints, default=[500], help="DeltaChannel snapshot frequencies"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or None,
        help="server to create the run's database on (default: DATABASE_URL, else embedded)",
    )
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold start")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--render", type=Path, help="only print the table of a saved JSON")
    args = parser.parse_args(argv)
    quick = args.quick
    args.lengths = args.lengths or ([10, 50, 200] if quick else [10, 100, 1000])
    args.samples = args.samples or (10 if quick else 30)
    args.op_rounds = args.op_rounds or (5 if quick else 30)
    args.turns_per_thread = args.turns_per_thread or (3 if quick else 10)
    args.cold_runs = args.cold_runs or (2 if quick else 5)
    return args


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def progress(message: str) -> None:
    """One line on stderr, so a long run shows where it is."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def measure(db: BenchDatabase, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Sections 1-4 and the prototype's contract checks, on one event loop."""
    results: dict[str, Any] = {}
    async with open_contenders(db.url, home, delta_frequencies=args.delta_frequency) as contenders:
        results["labels"] = {c.key: c.label for c in contenders}
        progress(f"warming up {len(contenders)} contenders")
        await warm_up(contenders)
        progress(f"length sweep {args.lengths}, {args.samples} samples per length")
        sweep = await length_sweep(
            contenders,
            args.lengths,
            samples=args.samples,
            chars=args.message_chars,
            op_rounds=args.op_rounds,
            progress=progress,
        )
        results["sweep"] = asdict(sweep)
        results["throughput"] = {}
        for contender in contenders:
            progress(f"throughput: {contender.label}")
            results["throughput"][contender.key] = await throughput(
                contender,
                threads=args.threads,
                turns_each=args.turns_per_thread,
                chars=args.message_chars,
            )
    progress("DeltaChannel prototype: forget/rewind contract checks")
    async with open_saver(bench_settings(db.url, home), database_url=db.url) as saver:
        results["delta_checks"] = await contract_checks(saver)
    return results


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


def run_meta(db: BenchDatabase, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """Where and how the numbers were taken."""
    packages = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres", "psycopg")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "postgres": db.server_label + (" (embedded)" if db.embedded else ""),
        "versions": {name: metadata.version(name) for name in packages},
        "message_chars": args.message_chars,
        "samples": args.samples,
        "lengths": args.lengths,
        "op_rounds": args.op_rounds,
        "quick": args.quick,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    """Runs everything (or renders a saved run) and writes the results."""
    args = parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    started = time.perf_counter()
    with (
        fresh_database(args.database_url) as db,
        tempfile.TemporaryDirectory(prefix="memagent-bench-") as home,
    ):
        progress(f"database: {db.server_label}{' (embedded)' if db.embedded else ''}")
        results = asyncio.run(measure(db, Path(home), args))
        if not args.no_cold_start:
            progress("cold start")
            results["cold_start"] = cold_start(db.url, args.cold_runs)
        results["meta"] = run_meta(db, args, time.perf_counter() - started)
    name = "quick" if args.quick else "latest"
    write_json(results, args.out / f"{name}.json")
    plotted = plot(results, args.out / f"{name}.png")
    print(render(results))
    print(f"\nwrote {args.out / f'{name}.json'}" + (f" and {name}.png" if plotted else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
