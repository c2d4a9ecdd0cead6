"""Turning the measurements into the printed table, the targets, JSON and a PNG plot.

Kept apart from the measuring so the table can be re-rendered from a saved JSON file
(``python -m bench --render bench/results/latest.json``) without running anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BASELINE = "inmemory"
MEMAGENT = "memagent"
TARGET_LATENCY_RATIO = 1.3
TARGET_OPS_GROWTH = 1.2
TARGET_TIMELINE_MS = 5.0
TARGET_STORAGE_RATIO = 3.0
TARGET_COLD_START_S = 2.0


@dataclass(frozen=True, slots=True)
class Target:
    """One of the issue's targets, judged on the measured numbers."""

    name: str
    met: bool
    detail: str


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _bytes(value: float) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _lengths(section: dict[str, dict[Any, Any]]) -> list[int]:
    return sorted({int(n) for per_length in section.values() for n in per_length})


def _at(per_length: dict[Any, Any], length: int) -> Any:
    """A value by thread length, whether the keys are ints (fresh) or strings (JSON)."""
    return per_length.get(length, per_length.get(str(length)))


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


def latency_rows(results: dict[str, Any]) -> list[str]:
    """Section 1: turn latency per contender and length, with ratios to InMemorySaver."""
    latency, labels = results["sweep"]["latency"], results["labels"]
    lengths = _lengths(latency)
    rows = []
    for key, per_length in latency.items():
        cells = [labels[key]]
        for n in lengths:
            stats, base = _at(per_length, n), _at(latency[BASELINE], n)
            ratio = stats["median_ms"] / base["median_ms"]
            cells.append(f"{_ms(stats['median_ms'])} / {_ms(stats['p95_ms'])}  {ratio:.2f}x")
        rows.append(cells)
    header = ["turn latency, ms: median / p95  ratio", *(f"{n} turns" for n in lengths)]
    return _table(header, rows)


def ops_rows(results: dict[str, Any]) -> list[str]:
    """Section 2: forget / rewind / timeline latency by length and the 1000/10 growth."""
    ops, labels = results["sweep"]["ops"], results["labels"]
    lengths = _lengths(ops)
    rows = []
    for key, per_length in ops.items():
        if not per_length:
            continue
        for op in ("timeline", "forget", "rewind"):
            cells = [f"{labels[key]}: {op}"]
            medians = [_at(per_length, n)[op]["median_ms"] for n in lengths]
            for n, median in zip(lengths, medians, strict=True):
                cells.append(f"{_ms(median)} / {_ms(_at(per_length, n)[op]['p95_ms'])}")
            cells.append(f"{medians[-1] / medians[0]:.2f}x")
            rows.append(cells)
    growth = f"{lengths[-1]}/{lengths[0]}" if lengths else "growth"
    header = ["memory ops, ms: median / p95", *(f"{n} turns" for n in lengths), growth]
    return _table(header, rows)


def storage_rows(results: dict[str, Any]) -> list[str]:
    """Section 3: bytes stored per thread against the conversation's own bytes."""
    storage, labels = results["sweep"]["storage"], results["labels"]
    lengths = _lengths(storage)
    rows = []
    some: dict[Any, Any] = {}
    for key, per_length in storage.items():
        if not per_length:
            continue
        some = per_length
        cells = [f"{labels[key]} (stored)"]
        for n in lengths:
            s = _at(per_length, n)
            cells.append(f"{_bytes(s['stored'])}  {s['stored'] / s['raw']['text']:.1f}x")
        rows.append(cells)
        cells = [f"{labels[key]} (uncompressed)"]
        for n in lengths:
            s = _at(per_length, n)
            cells.append(f"{_bytes(s['logical'])}  {s['logical'] / s['raw']['text']:.1f}x")
        rows.append(cells)
    if some:
        rows.append(
            ["message text itself", *(_bytes(_at(some, n)["raw"]["text"]) for n in lengths)]
        )
        rows.append(
            [
                "messages serialized once",
                *(_bytes(_at(some, n)["raw"]["serialized"]) for n in lengths),
            ]
        )
    header = ["storage per thread  (x message text)", *(f"{n} turns" for n in lengths)]
    return _table(header, rows)


def throughput_rows(results: dict[str, Any]) -> list[str]:
    """Section 4: turns per second with many threads at once."""
    rows = []
    for key, tp in results["throughput"].items():
        base = results["throughput"][BASELINE]["turns_per_s"]
        rows.append(
            [
                results["labels"][key],
                f"{tp['turns_per_s']:.1f}",
                f"{tp['turns_per_s'] / base:.2f}x",
                f"{tp['seconds']:.1f}",
            ]
        )
    first = next(iter(results["throughput"].values()), {"threads": 0, "turns": 0})
    header = [
        f"throughput, {first['threads']} threads, {first['turns']} turns",
        "turns/s",
        "ratio",
        "wall s",
    ]
    return _table(header, rows)


def cold_start_rows(results: dict[str, Any]) -> list[str]:
    """Section 5: time from launching the chat to its prompt."""
    cold = results.get("cold_start")
    if not cold:
        return ["cold start: not measured"]
    rows = []
    for key, label in (
        ("server_running", "PostgreSQL running, database set up"),
        ("embedded_stopped", "embedded PostgreSQL, server stopped"),
    ):
        if key in cold:
            s = cold[key]
            rows.append([label, f"{s['median_s']:.2f}", f"{s['max_s']:.2f}", str(s["runs"])])
    if "embedded_first_launch_s" in cold:
        rows.append(
            [
                "embedded, very first launch (initdb)",
                f"{cold['embedded_first_launch_s']:.2f}",
                "",
                "1",
            ]
        )
    return _table([f"cold start: `{cold['command']}` to prompt", "median s", "max s", "runs"], rows)


def delta_check_rows(results: dict[str, Any]) -> list[str]:
    """The DeltaChannel prototype: which contract promises hold in each variant."""
    checks = results.get("delta_checks") or {}
    if not checks:
        return []
    variants = list(checks)
    names = list(next(iter(checks.values()))["results"])
    rows = [
        [name, *("ok" if checks[v]["results"][name] else "FAIL" for v in variants)]
        for name in names
    ]
    return _table(["forget/rewind contract", *variants], rows)


def judge(results: dict[str, Any]) -> list[Target]:
    """The issue's targets, met or not, with the numbers that decide."""
    targets: list[Target] = []
    sweep = results["sweep"]
    latency = sweep["latency"]
    lengths = _lengths(latency)
    if MEMAGENT in latency and BASELINE in latency:
        ratios = [
            _at(latency[MEMAGENT], n)["median_ms"] / _at(latency[BASELINE], n)["median_ms"]
            for n in lengths
        ]
        targets.append(
            Target(
                f"turn latency, memagent saver <= {TARGET_LATENCY_RATIO}x InMemorySaver (median)",
                all(r <= TARGET_LATENCY_RATIO for r in ratios),
                ", ".join(f"{n}: {r:.2f}x" for n, r in zip(lengths, ratios, strict=True)),
            )
        )
    ops = sweep["ops"].get(MEMAGENT) or {}
    op_lengths = sorted(int(n) for n in ops)
    if len(op_lengths) >= 2:
        lo, hi = op_lengths[0], op_lengths[-1]
        for op in ("forget", "rewind", "timeline"):
            a, b = _at(ops, lo)[op]["median_ms"], _at(ops, hi)[op]["median_ms"]
            detail = f"{_ms(a)} ms -> {_ms(b)} ms = {b / a:.2f}x"
            if len(op_lengths) >= 3:
                mid = op_lengths[-2]
                m = _at(ops, mid)[op]["median_ms"]
                detail += f" ({mid} -> {hi}: {b / m:.2f}x)"
            targets.append(
                Target(
                    f"{op} at {hi} turns <= {TARGET_OPS_GROWTH}x at {lo} turns",
                    b / a <= TARGET_OPS_GROWTH,
                    detail,
                )
            )
        worst = max(_at(ops, n)["timeline"]["median_ms"] for n in op_lengths)
        targets.append(
            Target(
                f"timeline of 20 entries <= {TARGET_TIMELINE_MS:.0f} ms (median, every length)",
                worst <= TARGET_TIMELINE_MS,
                f"worst median {_ms(worst)} ms",
            )
        )
    for key, per_length in sweep["storage"].items():
        if key != MEMAGENT and not key.startswith("delta"):
            continue
        if not per_length:
            continue
        n = max(int(k) for k in per_length)
        s = _at(per_length, n)
        ratio = s["stored"] / s["raw"]["text"]
        targets.append(
            Target(
                f"storage at {n} turns <= {TARGET_STORAGE_RATIO:.0f}x message text "
                f"({results['labels'][key]})",
                ratio <= TARGET_STORAGE_RATIO,
                f"{_bytes(s['stored'])} vs {_bytes(s['raw']['text'])} = {ratio:.1f}x "
                f"({s['stored'] / s['raw']['serialized']:.1f}x the messages serialized once)",
            )
        )
    cold = results.get("cold_start") or {}
    for key in ("server_running", "embedded_stopped"):
        if key in cold:
            median = cold[key]["median_s"]
            targets.append(
                Target(
                    f"cold start <= {TARGET_COLD_START_S:.0f} s ({key.replace('_', ' ')})",
                    median <= TARGET_COLD_START_S,
                    f"median {median:.2f} s, max {cold[key]['max_s']:.2f} s",
                )
            )
    return targets


def render(results: dict[str, Any]) -> str:
    """The whole printed report."""
    meta = results["meta"]
    lines = [
        f"memagent benchmarks  {meta['date']}  {meta['machine']}",
        f"{meta['postgres']}; langgraph {meta['versions']['langgraph']}, "
        f"langgraph-checkpoint-postgres {meta['versions']['langgraph-checkpoint-postgres']}; "
        f"offline model, user messages ~{meta['message_chars']} chars; "
        f"{meta['samples']} samples per length; run took {meta['seconds']:.0f} s",
        "",
        *latency_rows(results),
        "",
        *ops_rows(results),
        "",
        *storage_rows(results),
        "",
        *throughput_rows(results),
        "",
        *cold_start_rows(results),
        "",
        *delta_check_rows(results),
        "",
        "targets:",
    ]
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

    Returns:
        Whether a plot was written (matplotlib is an optional dependency).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sweep, labels = results["sweep"], results["labels"]
    color = {key: f"C{i}" for i, key in enumerate(labels)}  # one colour per contender
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.2))
    for key, per_length in sweep["latency"].items():
        lengths = sorted(int(n) for n in per_length)
        ax1.plot(
            lengths,
            [_at(per_length, n)["median_ms"] for n in lengths],
            "o-",
            color=color[key],
            label=labels[key],
        )
    ax1.set(ylabel="ms (median)", title="Turn latency")
    for key, per_length in sweep["ops"].items():
        lengths = sorted(int(n) for n in per_length)
        if not lengths:
            continue
        for op, style in (("forget", "o-"), ("rewind", "s--"), ("timeline", "^:")):
            ax2.plot(
                lengths,
                [_at(per_length, n)[op]["median_ms"] for n in lengths],
                style,
                color=color[key],
                label=f"{labels[key]}: {op}",
            )
    ax2.axhline(TARGET_TIMELINE_MS, color="grey", lw=0.8, ls=":", label="timeline target (5 ms)")
    ax2.set(ylabel="ms (median)", title="forget / rewind / timeline(20)")
    text_plotted = False
    for key, per_length in sweep["storage"].items():
        lengths = sorted(int(n) for n in per_length)
        if not lengths:
            continue
        ax3.plot(
            lengths,
            [_at(per_length, n)["stored"] for n in lengths],
            "o-",
            color=color[key],
            label=labels[key],
        )
        if not text_plotted:
            text = [_at(per_length, n)["raw"]["text"] for n in lengths]
            ax3.plot(lengths, text, "k--", label="message text")
            ax3.plot(lengths, [3 * t for t in text], "k:", label="3x message text (target)")
            text_plotted = True
    ax3.set(ylabel="bytes stored", title="Storage per thread (PostgreSQL)")
    for ax in (ax1, ax2, ax3):
        ax.set(xscale="log", yscale="log", xlabel="thread length (turns)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"memagent vs stock langgraph — {results['meta']['date']}, {results['meta']['machine']}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
