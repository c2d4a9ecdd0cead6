"""``python -m bench --quick`` runs end to end: every table, the JSON, no database left.

Speed is not asserted here (numbers live in the bench's own output); this only proves
the benchmark still runs against the current code and reports everything it promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]

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
    "targets:",
)


@pytest.mark.timeout(600)
def test_quick_bench_reports_every_table_and_drops_its_databases(
    postgres_server_url: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick"),
            *("--out", str(tmp_path), "--database-url", postgres_server_url),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
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
    assert results["targets"]

    # One database per contender (and the cold start's), all dropped at the end.
    created = results["meta"]["databases"]
    assert len(set(created)) == len(created) == 5
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (created,)
        ).fetchall()
    assert left == []
