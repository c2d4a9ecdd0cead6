"""Turning the runs' measurements into the printed tables, the targets, JSON and a plot.

A result holds several runs of every measurement (``results["runs"]``). Every number
printed is the median over the runs of that run's number, followed by the smallest and
largest run in brackets when they differ at the printed precision. A ratio is taken
within each run (both sides measured on the same machine minutes apart) and then
summarised the same way.

Kept apart from the measuring so the tables can be re-rendered from a saved JSON file
(``python -m bench --render bench/results/latest.json``) without running anything.
"""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BASELINE = "inmemory"
"""The latency ratios' baseline."""
STOCK = "stock_pool"
"""The storage and throughput ratios' baseline: stock langgraph as users deploy it."""
MEMAGENT = "memagent"

TARGET_STORAGE_VS_STOCK = 1 / 20
TARGET_STORAGE_GROWTH = 11.0
TARGET_LATENCY_LONG = 1.0
TARGET_LATENCY_SHORT = 1.5
TARGET_OPS_GROWTH = 1.2
TARGET_TIMELINE_MS = 5.0
TARGET_THROUGHPUT_VS_STOCK = 1.5
TARGET_REDACT_MS = 1000.0
TARGET_REDACT_GROWTH = 2.0
TARGET_COLD_START_S = 2.0
TARGET_COMPACTION_LATENCY = 1.2
TARGET_COMPACTION_STORAGE = 1.1

COMPACTION_STOCK = "stock"
"""The compaction chat's contenders (``bench.compaction``): stock, whole thread sent;"""
COMPACTION_FULL = "memagent_full"
"""memagent's saver without compaction (the storage ratio's baseline);"""
COMPACTION_ON = "memagent_compact"
"""memagent's saver with compaction at the run's budget."""

TARGET_SHORT_VS_STOCK = 0.6
TARGET_SHORT_VS_INMEMORY = 2.0
TARGET_ROUND_TRIPS = 4.0
TARGET_THROUGHPUT_SECONDS_VS_STOCK = 0.6

OPS = (
    ("timeline", "timeline(20)"),
    ("forget", "forget"),
    ("rewind", "rewind, full head -> 5 turns back"),
    ("redact", "redact of one quote"),
)
PHASE_ROWS = (
    ("turn", "whole turn (ainvoke)"),
    ("read", "read: aget_tuple, decoding included"),
    ("decode", "  of which decode: serde.loads_typed"),
    ("write", "write: aput + aput_writes"),
    ("encode", "  of which encode: serde.dumps_typed"),
    ("other", "rest: graph, model, tools"),
)

Getter = Callable[[dict[str, Any]], float | None]


@dataclass(frozen=True, slots=True)
class Target:
    """One of the issues' targets, judged on the median over the runs."""

    name: str
    met: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Spread:
    """A number over the runs: the median of the runs' values, and their range."""

    median: float
    low: float
    high: float


def pick(data: Any, *path: Any) -> Any:
    """``data[path[0]][path[1]]...``, ``None`` if any step is missing.

    Thread lengths are int keys in a fresh result and string keys in a loaded JSON;
    both are tried.
    """
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key, data.get(str(key)))
        if data is None:
            return None
    return data


def over_runs(results: dict[str, Any], get: Getter) -> Spread | None:
    """``get`` applied to every run; ``None`` if no run has the value."""
    values = [v for run in results["runs"] if (v := get(run)) is not None]
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values))


def ratio_getter(top: Getter, bottom: Getter) -> Getter:
    """A per-run ratio of two per-run values."""

    def get(run: dict[str, Any]) -> float | None:
        a, b = top(run), bottom(run)
        return None if a is None or not b else a / b

    return get


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _bytes(value: float) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _x(value: float) -> str:
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"


def _plain(value: float) -> str:
    return f"{value:.1f}"


def show(spread: Spread | None, unit: Callable[[float], str] = _ms) -> str:
    """``median [low-high]``, the range left out when it shows nothing."""
    if spread is None:
        return "-"
    median, low, high = unit(spread.median), unit(spread.low), unit(spread.high)
    return median if low == high else f"{median} [{low}..{high}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns: the first left-aligned, numbers right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    top = line(header)
    return [top, "-" * len(top), *(line(row) for row in rows)]


def lengths_of(results: dict[str, Any], section: str) -> list[int]:
    """Every thread length a sweep section has, over all runs."""
    return sorted(
        {
            int(n)
            for run in results["runs"]
            for per_length in (pick(run, "sweep", section) or {}).values()
            for n in per_length
        }
    )


def keys_of(results: dict[str, Any], section: str) -> list[str]:
    """The contenders with values in a sweep section, in the labels' order."""
    present = {
        key
        for run in results["runs"]
        for key, per_length in (pick(run, "sweep", section) or {}).items()
        if per_length
    }
    return [key for key in results["labels"] if key in present]


def at(*path: Any) -> Getter:
    """The value at ``path`` in a run (see ``pick``)."""
    return lambda run: pick(run, *path)


def latency(key: str, n: int) -> Getter:
    return lambda run: pick(run, "sweep", "latency", key, n, "median_ms")


def stored(key: str, n: int) -> Getter:
    return lambda run: pick(run, "sweep", "storage", key, n, "stored")


def raw_bytes(n: int, what: str) -> Getter:
    """The conversation's own size at ``n`` turns (``text`` or ``serialized``)."""
    return lambda run: pick(run, "sweep", "storage", STOCK, n, "raw", what)


def op_ms(op: str, n: int) -> Getter:
    return lambda run: pick(run, "sweep", "ops", MEMAGENT, n, op, "median_ms")


def turns_per_s(key: str) -> Getter:
    return lambda run: pick(run, "throughput", key, "turns_per_s")


def latency_rows(results: dict[str, Any]) -> list[str]:
    """Turn latency per contender and length, and its ratios to both baselines."""
    labels, lengths = results["labels"], lengths_of(results, "latency")
    keys = keys_of(results, "latency")
    lines = _table(
        ["turn latency, ms (median)", *(f"{n} turns" for n in lengths)],
        [[labels[k], *(show(over_runs(results, latency(k, n))) for n in lengths)] for k in keys],
    )
    for base in (BASELINE, STOCK):
        rows = [
            [
                labels[k],
                *(
                    show(over_runs(results, ratio_getter(latency(k, n), latency(base, n))), _x)
                    for n in lengths
                ),
            ]
            for k in keys
            if k != base
        ]
        header = [f"turn latency ratio vs {labels[base]}", *(f"{n} turns" for n in lengths)]
        lines += ["", *_table(header, rows)]
    return lines


def phase_rows(results: dict[str, Any]) -> list[str]:
    """Where a memagent turn's time goes on the longest thread."""
    length = over_runs(results, at("phases", "length"))
    if length is None:
        return ["where a turn's time goes: not measured"]
    rows = []
    for phase, label in PHASE_ROWS:
        ms = over_runs(results, at("phases", phase, "median_ms"))
        share = over_runs(
            results,
            ratio_getter(
                at("phases", phase, "median_ms"),
                at("phases", "turn", "median_ms"),
            ),
        )
        calls = over_runs(results, at("phases", "calls", phase))
        rows.append(
            [
                label,
                show(ms),
                show(share, lambda v: f"{100 * v:.0f}%"),
                "" if calls is None else show(calls, lambda v: f"{v:.0f}"),
            ]
        )
    header = [
        f"{results['labels'][MEMAGENT]}: where a turn goes at ~{length.median:.0f} turns",
        "ms (median)",
        "share",
        "calls/turn",
    ]
    return _table(header, rows)


def ops_rows(results: dict[str, Any]) -> list[str]:
    """forget / rewind / timeline / redact latency by length, and their growth."""
    lengths = lengths_of(results, "ops")
    if not lengths:
        return ["memory operations: not measured"]
    last = lengths[-1]
    growth = sorted({lengths[0], lengths[-2]} if len(lengths) > 1 else set())
    rows = []
    for op, label in OPS:
        if over_runs(results, op_ms(op, last)) is None:  # a saved run without this operation
            continue
        rows.append(
            [
                label,
                *(show(over_runs(results, op_ms(op, n))) for n in lengths),
                *(
                    show(over_runs(results, ratio_getter(op_ms(op, last), op_ms(op, base))), _x)
                    for base in growth
                ),
            ]
        )
    header = [
        f"{results['labels'][MEMAGENT]} via tools.admin, ms (median)",
        *(f"{n} turns" for n in lengths),
        *(f"{last}/{base}" for base in growth),
    ]
    return _table(header, rows)


def storage_rows(results: dict[str, Any]) -> list[str]:
    """Bytes stored per thread, against stock langgraph's and the conversation's own."""
    labels, lengths = results["labels"], lengths_of(results, "storage")
    keys = keys_of(results, "storage")
    if not lengths:
        return ["storage: not measured"]
    last, prev = lengths[-1], lengths[-2] if len(lengths) > 1 else lengths[-1]
    rows = []
    for key in keys:
        cells = [labels[key]]
        for n in lengths:
            vs_stock = over_runs(results, ratio_getter(stored(key, n), stored(STOCK, n)))
            cells.append(
                f"{show(over_runs(results, stored(key, n)), _bytes)}  {show(vs_stock, _x)}"
            )
        growth = over_runs(results, ratio_getter(stored(key, last), stored(key, prev)))
        rows.append([*cells, show(growth, _x)])
    for what, label in (
        ("text", "message text itself"),
        ("serialized", "messages serialized once"),
    ):
        raw = [over_runs(results, raw_bytes(n, what)) for n in lengths]
        rows.append([label, *(show(value, _bytes) for value in raw), ""])
    header = [
        f"stored bytes per thread  (x {labels[STOCK]})",
        *(f"{n} turns" for n in lengths),
        f"{last}/{prev}",
    ]
    lines = _table(header, rows)
    per_table = []
    for key in keys:
        tables = pick(results["runs"][0], "sweep", "storage", key, last, "tables") or {}
        for table, size in tables.items():
            per_table.append([f"{labels[key]}: {table}", str(size["rows"]), _bytes(size["stored"])])
    if per_table:
        lines += [
            "",
            *_table([f"per table at {last} turns (first run)", "rows", "stored"], per_table),
        ]
    return lines


def throughput_rows(results: dict[str, Any]) -> list[str]:
    """Turns per second with many threads at once."""
    labels = results["labels"]
    first = pick(results["runs"][0], "throughput") or {}
    if not first:
        return ["throughput: not measured"]
    some = next(iter(first.values()))
    rows = []
    for key in labels:
        if key not in first:
            continue
        rows.append(
            [
                labels[key],
                show(over_runs(results, turns_per_s(key)), _plain),
                show(over_runs(results, ratio_getter(turns_per_s(key), turns_per_s(STOCK))), _x),
                show(over_runs(results, ratio_getter(turns_per_s(key), turns_per_s(BASELINE))), _x),
            ]
        )
    header = [
        f"throughput: {some['threads']} threads x {some['turns'] // some['threads']} turns",
        "turns/s",
        f"x {labels[STOCK]}",
        f"x {labels[BASELINE]}",
    ]
    return _table(header, rows)


def round_trip_rows(results: dict[str, Any]) -> list[str]:
    """SQL round trips per operation, counted on the wire (``bench.roundtrips``)."""
    labels = results["labels"]
    first = pick(results["runs"][0], "round_trips") or {}
    if not first:
        return ["round trips: not measured"]
    operations = list(dict.fromkeys(op for counts in first.values() for op in counts))
    rows = [
        [f"{labels[key]}: {op}", show(over_runs(results, at("round_trips", key, op)), _plain)]
        for key in labels
        if key in first
        for op in operations
        if op in first[key]
    ]
    return _table(["SQL round trips (on the wire)", "per operation"], rows)


def throughput_seconds(key: str) -> Getter:
    """The wall time of the throughput run (issue 22 compares it with stock's)."""
    return at("throughput", key, "seconds")


def cold_start_rows(results: dict[str, Any]) -> list[str]:
    """Time from launching the chat to its prompt."""
    command = next(
        (c for run in results["runs"] if (c := pick(run, "cold_start", "command"))), None
    )
    if command is None:
        return ["cold start: not measured"]
    rows = []
    for key, label in (
        ("server_running", "PostgreSQL running, database set up"),
        ("embedded_stopped", "embedded PostgreSQL, server stopped"),
    ):
        median = over_runs(results, at("cold_start", key, "median_s"))
        worst = over_runs(results, at("cold_start", key, "max_s"))
        if median is not None and worst is not None:
            rows.append([label, show(median, _s), _s(worst.high)])
    first = over_runs(results, at("cold_start", "embedded_first_launch_s"))
    if first is not None:
        rows.append(["embedded, very first launch (initdb)", show(first, _s), _s(first.high)])
    return _table([f"cold start: `{command}` to prompt", "median s", "max s"], rows)


def _s(value: float) -> str:
    return f"{value:.2f}"


def _tokens(value: float) -> str:
    return f"{value:,.0f}"


def compaction(*path: Any) -> Getter:
    """The value at ``path`` in a run's compaction chat."""
    return lambda run: pick(run, "compaction", *path)


def compaction_meta(results: dict[str, Any]) -> dict[str, Any] | None:
    """The first run's compaction chat (its labels and budget), ``None`` if not run."""
    return next((run["compaction"] for run in results["runs"] if "compaction" in run), None)


def compaction_lengths(results: dict[str, Any]) -> list[int]:
    """Every thread length the compaction chat measured, over all runs."""
    return sorted(
        {
            int(n)
            for run in results["runs"]
            for n in pick(run, "compaction", "tokens", COMPACTION_ON) or {}
        }
    )


def compaction_rows(results: dict[str, Any]) -> list[str]:
    """Tokens per call, turn latency and storage of the long chat under a budget."""
    first = compaction_meta(results)
    if first is None:
        return ["compaction chat: not measured"]
    labels, budget, lengths = first["labels"], first["budget"], compaction_lengths(results)
    low, high = lengths[0], lengths[-1]
    columns = [f"{n} turns" for n in lengths]
    lines = [
        f"compaction chat (issue 18): memagent's context budget {budget:,} tokens; user messages "
        f"~{results['meta']['message_chars']} chars, replies 500-1500 chars; the offline "
        "model's extractive summary",
        "",
    ]
    rows = [
        [
            labels[k],
            *(show(over_runs(results, compaction("tokens", k, n)), _tokens) for n in lengths),
        ]
        for k in labels
    ]
    rows.append(
        [
            f"{labels[COMPACTION_ON]} / stock",
            *(
                show(
                    over_runs(
                        results,
                        ratio_getter(
                            compaction("tokens", COMPACTION_ON, n),
                            compaction("tokens", COMPACTION_STOCK, n),
                        ),
                    ),
                    _x,
                )
                for n in lengths
            ),
        ]
    )
    lines += _table(["tokens the model received in turn N", *columns], rows)
    rows = [
        [
            labels[k],
            show(over_runs(results, compaction("calls", k, "calls")), _tokens),
            show(over_runs(results, compaction("calls", k, "max_tokens")), _tokens),
            show(over_runs(results, compaction("calls", k, "over_budget")), _tokens),
            show(over_runs(results, compaction("calls", k, "compactions")), _tokens),
        ]
        for k in labels
    ]
    header = ["every model call of the run", "calls", "most tokens", "over budget", "compactions"]
    lines += ["", *_table(header, rows)]
    rows = [
        [
            labels[k],
            *(show(over_runs(results, compaction("latency", k, n, "median_ms"))) for n in lengths),
            show(
                over_runs(
                    results,
                    ratio_getter(
                        compaction("latency", k, high, "median_ms"),
                        compaction("latency", k, low, "median_ms"),
                    ),
                ),
                _x,
            ),
            show(over_runs(results, compaction("latency", k, high, "p95_ms"))),
        ]
        for k in labels
    ]
    header = [
        "compaction chat: turn latency, ms (median)",
        *columns,
        f"{high}/{low}",
        f"p95 at {high}",
    ]
    lines += ["", *_table(header, rows)]
    rows = []
    for k in labels:
        cells = [labels[k]]
        for n in lengths:
            size = over_runs(results, compaction("storage", k, n, "stored"))
            vs_full = over_runs(
                results,
                ratio_getter(
                    compaction("storage", k, n, "stored"),
                    compaction("storage", COMPACTION_FULL, n, "stored"),
                ),
            )
            cells.append(f"{show(size, _bytes)}  {show(vs_full, _x)}")
        rows.append(cells)
    header = [f"compaction chat: stored bytes (x {labels[COMPACTION_FULL]})", *columns]
    lines += ["", *_table(header, rows)]
    per_table = []
    for k in (COMPACTION_FULL, COMPACTION_ON):
        tables = pick(first, "storage", k, high, "tables") or {}
        for table, size in tables.items():
            if size["rows"]:
                per_table.append(
                    [f"{labels[k]}: {table}", str(size["rows"]), _bytes(size["stored"])]
                )
    if per_table:
        header = [f"compaction chat: per table at {high} turns (first run)", "rows", "stored"]
        lines += ["", *_table(header, per_table)]
    return lines


def compaction_targets(results: dict[str, Any]) -> list[Target]:
    """Issue 18's targets: within the budget, flat latency, storage as without compaction."""
    first = compaction_meta(results)
    lengths = compaction_lengths(results)
    if first is None or not lengths:
        return []
    labels, budget = first["labels"], first["budget"]
    low, high = lengths[0], lengths[-1]
    targets = []
    most = over_runs(results, compaction("calls", COMPACTION_ON, "max_tokens"))
    at_high = over_runs(results, compaction("tokens", COMPACTION_ON, high))
    vs_stock = over_runs(
        results,
        ratio_getter(
            compaction("tokens", COMPACTION_ON, high), compaction("tokens", COMPACTION_STOCK, high)
        ),
    )
    if most is not None and at_high is not None:
        targets.append(
            Target(
                f"compaction: every call <= the budget ({budget:,} tokens)",
                most.high <= budget,
                f"most {show(most, _tokens)} in any call; {show(at_high, _tokens)} at {high} "
                f"turns, {show(vs_stock, _x)} {labels[COMPACTION_STOCK]}'s",
            )
        )
    for name, spread, limit in (
        (
            f"compaction: turn latency at {high} turns <= {TARGET_COMPACTION_LATENCY}x at {low}",
            over_runs(
                results,
                ratio_getter(
                    compaction("latency", COMPACTION_ON, high, "median_ms"),
                    compaction("latency", COMPACTION_ON, low, "median_ms"),
                ),
            ),
            TARGET_COMPACTION_LATENCY,
        ),
        (
            f"compaction: stored bytes at {high} turns <= {TARGET_COMPACTION_STORAGE}x "
            f"{labels[COMPACTION_FULL]}",
            over_runs(
                results,
                ratio_getter(
                    compaction("storage", COMPACTION_ON, high, "stored"),
                    compaction("storage", COMPACTION_FULL, high, "stored"),
                ),
            ),
            TARGET_COMPACTION_STORAGE,
        ),
    ):
        if spread is not None:
            targets.append(Target(name, spread.median <= limit, show(spread, _x)))
    return targets


def judge(results: dict[str, Any]) -> list[Target]:
    """The issues' targets, met or not, on the median over the runs."""
    targets: list[Target] = []
    labels = results["labels"]

    def add(
        name: str,
        spread: Spread | None,
        limit: float,
        unit: Callable[[float], str],
        suffix: str = "",
    ) -> None:
        if spread is not None:
            targets.append(Target(name, spread.median <= limit, show(spread, unit) + suffix))

    lengths = lengths_of(results, "storage")
    if lengths and MEMAGENT in results["labels"]:
        last, prev = lengths[-1], lengths[-2] if len(lengths) > 1 else lengths[-1]
        add(
            f"stored bytes at {last} turns <= 1/20 of {labels[STOCK]}'s",
            over_runs(results, ratio_getter(stored(MEMAGENT, last), stored(STOCK, last))),
            TARGET_STORAGE_VS_STOCK,
            _x,
        )
        if prev != last:
            add(
                f"storage growth {prev} -> {last} turns <= {TARGET_STORAGE_GROWTH:.0f}x",
                over_runs(results, ratio_getter(stored(MEMAGENT, last), stored(MEMAGENT, prev))),
                TARGET_STORAGE_GROWTH,
                _x,
            )
    lengths = lengths_of(results, "latency")
    if lengths:
        for n, limit in ((lengths[-1], TARGET_LATENCY_LONG), (lengths[0], TARGET_LATENCY_SHORT)):
            add(
                f"turn latency at {n} turns <= {limit}x {labels[BASELINE]}",
                over_runs(results, ratio_getter(latency(MEMAGENT, n), latency(BASELINE, n))),
                limit,
                _x,
            )
    if lengths:
        short = lengths[0]
        add(
            f"turn latency at {short} turns <= {TARGET_SHORT_VS_INMEMORY}x {labels[BASELINE]}",
            over_runs(results, ratio_getter(latency(MEMAGENT, short), latency(BASELINE, short))),
            TARGET_SHORT_VS_INMEMORY,
            _x,
        )
        add(
            f"turn latency at {short} turns <= {TARGET_SHORT_VS_STOCK}x {labels[STOCK]}",
            over_runs(results, ratio_getter(latency(MEMAGENT, short), latency(STOCK, short))),
            TARGET_SHORT_VS_STOCK,
            _x,
        )
    add(
        f"SQL round trips per plain turn <= {TARGET_ROUND_TRIPS:.0f}",
        over_runs(results, at("round_trips", MEMAGENT, "plain turn")),
        TARGET_ROUND_TRIPS,
        _plain,
    )
    lengths = lengths_of(results, "ops")
    if len(lengths) > 1:
        first, last, prev = lengths[0], lengths[-1], lengths[-2]
        for op in ("forget", "rewind"):
            add(
                f"{op} at {last} turns <= {TARGET_OPS_GROWTH}x at {first} turns",
                over_runs(results, ratio_getter(op_ms(op, last), op_ms(op, first))),
                TARGET_OPS_GROWTH,
                _x,
            )
        worst = over_runs(
            results,
            lambda run: max(
                (v for n in lengths if (v := op_ms("timeline", n)(run)) is not None), default=None
            ),
        )
        add(
            f"timeline(20) <= {TARGET_TIMELINE_MS:.0f} ms at every length",
            worst,
            TARGET_TIMELINE_MS,
            _ms,
            " ms",
        )
        add(
            f"redact at {last} turns <= 1 s",
            over_runs(results, op_ms("redact", last)),
            TARGET_REDACT_MS,
            _ms,
            " ms",
        )
        add(
            f"redact at {last} turns <= {TARGET_REDACT_GROWTH:.0f}x at {prev} turns",
            over_runs(results, ratio_getter(op_ms("redact", last), op_ms("redact", prev))),
            TARGET_REDACT_GROWTH,
            _x,
        )
    if pick(results["runs"][0], "throughput", MEMAGENT):
        spread = over_runs(results, ratio_getter(turns_per_s(MEMAGENT), turns_per_s(STOCK)))
        if spread is not None:
            targets.append(
                Target(
                    f"throughput >= {TARGET_THROUGHPUT_VS_STOCK}x {labels[STOCK]}",
                    spread.median >= TARGET_THROUGHPUT_VS_STOCK,
                    show(spread, _x),
                )
            )
        add(
            f"throughput run's wall time <= {TARGET_THROUGHPUT_SECONDS_VS_STOCK}x "
            f"{labels[STOCK]}'s",
            over_runs(
                results, ratio_getter(throughput_seconds(MEMAGENT), throughput_seconds(STOCK))
            ),
            TARGET_THROUGHPUT_SECONDS_VS_STOCK,
            _x,
        )
    for key in ("server_running", "embedded_stopped"):
        add(
            f"cold start <= {TARGET_COLD_START_S:.0f} s ({key.replace('_', ' ')})",
            over_runs(results, at("cold_start", key, "median_s")),
            TARGET_COLD_START_S,
            _s,
            " s",
        )
    return targets + compaction_targets(results)


def render(results: dict[str, Any]) -> str:
    """The whole printed report."""
    meta = results["meta"]
    runs = len(results["runs"])
    lines = [
        f"memagent benchmarks  {meta['date']}  {meta['machine']}",
        f"{meta['postgres']}; langgraph {meta['versions']['langgraph']}, "
        f"langgraph-checkpoint-postgres {meta['versions']['langgraph-checkpoint-postgres']}; "
        f"offline model, user messages ~{meta['message_chars']} chars; "
        f"{meta['samples']} samples per length; run took {meta['seconds']:.0f} s",
        f"{runs} run{'s' if runs > 1 else ''}: each number is the median over the runs "
        "[lowest..highest run] of that run's value (a latency: its median turn)",
        "",
    ]
    if any("sweep" in run for run in results["runs"]):
        for section in (
            latency_rows,
            phase_rows,
            ops_rows,
            storage_rows,
            throughput_rows,
            round_trip_rows,
            cold_start_rows,
        ):
            lines += [*section(results), ""]
    if compaction_meta(results) is not None:
        lines += [*compaction_rows(results), ""]
    lines.append("targets:")
    for target in judge(results):
        lines.append(f"  [{'met' if target.met else 'NOT MET'}] {target.name}: {target.detail}")
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    """All measurements, samples included, plus the judged targets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**results, "targets": [asdict(t) for t in judge(results)]}
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")


def plot(results: dict[str, Any], path: Path) -> bool:
    """Latency, memory operations and storage against thread length, as one PNG.

    Each point is the median over the runs; the bars span the lowest and highest run.

    Returns:
        Whether a plot was written (matplotlib is an optional dependency).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not any("sweep" in run for run in results["runs"]):
        return False  # a compaction-only run: its tables say it all
    labels = results["labels"]
    color = {key: f"C{i}" for i, key in enumerate(labels)}  # one colour per contender
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.2))

    def line(ax: Any, lengths: list[int], get: Callable[[int], Getter], **style: Any) -> None:
        points = [(n, s) for n in lengths if (s := over_runs(results, get(n))) is not None]
        if not points:
            return
        xs = [n for n, _ in points]
        ys = [s.median for _, s in points]
        errors = [[s.median - s.low for _, s in points], [s.high - s.median for _, s in points]]
        ax.errorbar(xs, ys, yerr=errors, capsize=3, **style)

    lengths = lengths_of(results, "latency")
    for key in keys_of(results, "latency"):
        line(
            ax1,
            lengths,
            functools.partial(latency, key),
            fmt="o-",
            color=color[key],
            label=labels[key],
        )
    ax1.set(ylabel="ms (median turn)", title="Turn latency")
    lengths = lengths_of(results, "ops")
    for op, style in (("forget", "o-"), ("rewind", "s--"), ("timeline", "^:"), ("redact", "d-.")):
        line(ax2, lengths, functools.partial(op_ms, op), fmt=style, color=color[MEMAGENT], label=op)
    ax2.axhline(TARGET_TIMELINE_MS, color="grey", lw=0.8, ls=":", label="timeline target (5 ms)")
    ax2.set(ylabel="ms (median)", title=f"{labels[MEMAGENT]}: tools.admin operations")
    lengths = lengths_of(results, "storage")
    for key in keys_of(results, "storage"):
        line(
            ax3,
            lengths,
            functools.partial(stored, key),
            fmt="o-",
            color=color[key],
            label=labels[key],
        )
    line(ax3, lengths, functools.partial(raw_bytes, what="text"), fmt="k--", label="message text")
    ax3.set(ylabel="bytes stored", title="Storage per thread (PostgreSQL)")
    for ax in (ax1, ax2, ax3):
        ax.set(xscale="log", yscale="log", xlabel="thread length (turns)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    meta = results["meta"]
    fig.suptitle(
        f"memagent vs stock langgraph — {meta['date']}, {meta['machine']}, "
        f"{len(results['runs'])} run(s), median and range"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
