"""``python -m bench --quick`` runs end to end: every table, the JSON, no database left.

Speed is not asserted here (numbers live in the bench's own output); this only proves
the benchmark still runs against the current code and reports everything it promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench`` with ``args``, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )


def check_compaction_run(run: dict[str, Any], lengths: set[str]) -> None:
    """The compaction chat measured every length and kept every call within its budget."""
    chat = run["compaction"]
    assert set(chat["labels"]) == COMPACTION_KEYS
    budget = chat["budget"]
    for key in COMPACTION_KEYS:
        assert set(chat["tokens"][key]) == set(chat["latency"][key]) == lengths
        assert chat["storage"][key][max(lengths, key=int)]["stored"] > 0
    compacted = chat["calls"]["memagent_compact"]
    assert compacted["compactions"] >= 1
    assert compacted["over_budget"] == 0
    assert 0 < compacted["max_tokens"] <= budget
    assert all(0 < tokens <= budget for tokens in chat["tokens"]["memagent_compact"].values())
    # Without compaction, the whole thread goes out: beyond the budget at the longest length.
    assert chat["tokens"]["stock"][max(lengths, key=int)] > budget
    assert (
        chat["calls"]["stock"]["compactions"] == chat["calls"]["memagent_full"]["compactions"] == 0
    )


COMPACTION_HEADINGS = (
    "compaction chat (issue 18): memagent's context budget",
    "tokens the model received in turn N",
    "every model call of the run",
    "compaction chat: turn latency, ms (median)",
    "compaction chat: stored bytes",
    "compaction: every call <= the budget",
    "compaction: turn latency at",
    "compaction: stored bytes at",
)
COMPACTION_KEYS = {"stock", "memagent_full", "memagent_compact"}

TABLE_HEADINGS = (
    "turn latency, ms (median)",
    "turn latency ratio vs InMemorySaver",
    "turn latency ratio vs AsyncPostgresSaver (pool of 10)",
    "where a turn goes at",
    "via tools.admin, ms (median)",
    "stored bytes per thread",
    "per table at 100 turns",
    "throughput: 50 threads x 5 turns",
    "SQL round trips (on the wire)",
    "cold start: ",
    *COMPACTION_HEADINGS,
    "targets:",
)


@pytest.mark.timeout(600)
def test_quick_bench_reports_every_table_and_drops_its_databases(
    postgres_server_url: str, tmp_path: Path
) -> None:
    done = run_bench("--quick", "--out", str(tmp_path), "--database-url", postgres_server_url)
    assert done.returncode == 0, done.stderr[-3000:]
    for heading in TABLE_HEADINGS:
        assert heading in done.stdout, f"missing table {heading!r}:\n{done.stdout}"

    results = json.loads((tmp_path / "quick.json").read_text())
    assert set(results["labels"]) == {
        "inmemory",
        "stock_pool",
        "stock_conn",
        "memagent",
        "memagent_chat",
    }
    [run] = results["runs"]
    for key in results["labels"]:
        assert set(run["sweep"]["latency"][key]) == {"10", "100"}
        assert run["throughput"][key]["turns"] == 250
    for key in ("stock_pool", "stock_conn", "memagent", "memagent_chat"):
        tables = run["sweep"]["storage"][key]["100"]["tables"]
        assert {"checkpoints", "checkpoint_blobs", "checkpoint_writes"} <= set(tables)
        assert run["sweep"]["storage"][key]["100"]["stored"] > 0
    assert any(
        name.startswith("memagent_")
        for name in run["sweep"]["storage"]["memagent"]["100"]["tables"]
    )
    assert {"timeline", "forget", "rewind", "redact"} <= set(run["sweep"]["ops"]["memagent"]["100"])
    assert run["sweep"]["ops"]["memagent"]["100"]["redact"]["n"] == 2  # --quick: 2 per length
    assert run["phases"]["read"]["n"] > 0 and run["phases"]["calls"]["write"] > 0
    assert run["round_trips"]["stock_pool"]["plain turn"] > 0
    assert {"plain turn", "tools.admin forget", "in-run forget turn"} <= set(
        run["round_trips"]["memagent"]
    )
    assert run["cold_start"]["server_running"]["runs"] == 1
    check_compaction_run(run, {"10", "100"})
    assert results["targets"]

    # One database per contender (and the cold start's and the compaction chat's three),
    # all dropped at the end.
    created = results["meta"]["databases"]
    assert len(set(created)) == len(created) == 5 + 3
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (created,)
        ).fetchall()
    assert left == []


@pytest.mark.timeout(300)
def test_the_compaction_chat_alone_reports_its_tables_and_keeps_every_call_within_budget(
    postgres_server_url: str, tmp_path: Path
) -> None:
    done = run_bench(
        *("--compaction-only", "--quick", "--lengths", "5,30", "--samples", "2"),
        *("--context-tokens", "4000", "--out", str(tmp_path)),
        *("--database-url", postgres_server_url),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for heading in COMPACTION_HEADINGS:
        assert heading in done.stdout, f"missing {heading!r}:\n{done.stdout}"
    assert "budget 4,000 tokens" in done.stdout
    assert "[met] compaction: every call <= the budget (4,000 tokens)" in done.stdout
    assert "throughput" not in done.stdout  # only the compaction chat ran

    saved = tmp_path / "compaction-quick.json"
    results = json.loads(saved.read_text())
    [run] = results["runs"]
    assert set(run) == {"compaction"}
    check_compaction_run(run, {"5", "30"})
    assert len(results["meta"]["databases"]) == 3

    rendered = run_bench("--render", str(saved))
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    assert "tokens the model received in turn N" in rendered.stdout
