"""Several processes on one database through PgBouncer in transaction pooling mode.

docs/SPEC.md, "Concurrency": turns and memory operations from several processes on one
database lose nothing. Four processes run turns on the same 25 threads at once (through
the compiled graph from ``make_graph``, the offline model), while a fifth forgets and
rewinds those threads through ``tools.admin``; all five start together on an empty
database, so their ``setup()`` races too. Every connection goes through a PgBouncer of
the test's own (``pgbouncer_url``), which hands each transaction to any server
connection, as managed PostgreSQL poolers do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

PROCESSES = 4
THREADS = 25
TURNS = 5
HANG_GUARD = 600.0

COMMON = """
import asyncio, json, os, pathlib, random, sys, time
from langchain_core.messages import HumanMessage
from agent.errors import ThreadBusyError, ThreadNotFoundError
from agent.graph import make_graph
from agent.model import load_model
from agent.settings import Settings
from agent.store.database import open_saver
from tools import admin

here = pathlib.Path(sys.argv[1])
me = sys.argv[2]
(here / f"ready-{me}").touch()
deadline = time.monotonic() + 120
while not (here / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.005)

async def patiently(work):
    # A thread busy for longer than the busy timeout is refused; the turn is sent again.
    for attempt in range(20):
        try:
            return await work(), attempt
        except ThreadBusyError:
            continue
    raise RuntimeError("still busy after 20 attempts")
"""

TURNS_SCRIPT = (
    COMMON
    + """
threads = int(sys.argv[3]); turns = int(sys.argv[4])

async def main():
    report = []
    async with open_saver(Settings.from_env()) as saver:
        graph = make_graph(load_model(Settings.from_env())[0], checkpointer=saver)

        async def conversation(t):
            for k in range(turns):
                text = f"{me} says hello number {k}"
                config = {"configurable": {"thread_id": f"t{t}"}}
                message = {"messages": [HumanMessage(text)]}
                _, retries = await patiently(lambda: graph.ainvoke(message, config))
                report.append({"thread": f"t{t}", "text": text, "retries": retries})

        await asyncio.gather(*(conversation(t) for t in range(threads)))
    (here / f"report-{me}.json").write_text(json.dumps(report))

asyncio.run(main())
"""
)

ADMIN_SCRIPT = (
    COMMON
    + """
threads = int(sys.argv[3]); operations = int(sys.argv[4])

async def main():
    report = []
    rng = random.Random(7)
    async with open_saver(Settings.from_env()) as saver:
        while len(report) < operations:
            thread = f"t{rng.randrange(threads)}"
            try:
                if rng.random() < 0.5:
                    change, _ = await patiently(lambda: admin.aforget(saver, thread))
                    report.append({"op": "forget", "thread": thread, "at": change.checkpoint_id})
                    continue
                turns = [e for e in await admin.atimeline(saver, thread) if e.kind == "turn"]
                if not turns:
                    await asyncio.sleep(0.01)
                    continue
                target = rng.choice(turns).checkpoint_id
                change, _ = await patiently(lambda: admin.arewind(saver, thread, target))
                report.append({"op": "rewind", "thread": thread, "at": change.checkpoint_id})
            except ThreadNotFoundError:
                await asyncio.sleep(0.01)  # no turn has reached this thread yet
    (here / f"report-{me}.json").write_text(json.dumps(report))

asyncio.run(main())
"""
)


def rows(url: str, query: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return list(conn.execute(query).fetchall())


@pytest.mark.timeout(HANG_GUARD + 60)
def test_four_processes_and_an_admin_through_pgbouncer_lose_and_repeat_nothing(
    pgbouncer_url: str, database_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": pgbouncer_url,
        "MEMAGENT_PREPARED_STATEMENTS": "false",
        "MEMAGENT_MODEL": "offline",
        "MEMAGENT_POOL_MAX_SIZE": "5",
        "MEMAGENT_HOME": str(tmp_path / "home"),
    }
    admin_operations = 40
    commands = [
        [sys.executable, "-c", TURNS_SCRIPT, str(tmp_path), f"p{i}", str(THREADS), str(TURNS)]
        for i in range(PROCESSES)
    ]
    commands.append(
        [sys.executable, "-c", ADMIN_SCRIPT, str(tmp_path), "admin", str(THREADS), "40"]
    )
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for command in commands
    ]
    try:
        wait_for_files(tmp_path, len(commands))
        (tmp_path / "go").touch()  # all five run setup() on the empty database at once
        outcomes = [
            (p.wait(HANG_GUARD), p.stdout.read().decode())  # type: ignore[union-attr]
            for p in processes
        ]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [code for code, _ in outcomes] == [0] * len(commands), [out for _, out in outcomes]

    sent = [
        turn
        for i in range(PROCESSES)
        for turn in json.loads((tmp_path / f"report-p{i}.json").read_text())
    ]
    changes = json.loads((tmp_path / "report-admin.json").read_text())
    assert len(sent) == PROCESSES * THREADS * TURNS
    assert len(changes) == admin_operations

    # Each sent message is the input of exactly one turn: none lost, none repeated.
    inputs = rows(
        database_url,
        "SELECT c.thread_id, w.blob FROM checkpoints c"
        " JOIN checkpoint_writes w USING (thread_id, checkpoint_ns, checkpoint_id)"
        " WHERE c.checkpoint_ns = '' AND c.metadata ->> 'source' = 'input'"
        " AND w.channel = 'messages'",
    )
    stored: Counter[tuple[str, str]] = Counter()
    for row in inputs:
        for turn in sent:
            # msgpack keeps a string's UTF-8 bytes as they are
            if turn["thread"] == row["thread_id"] and turn["text"].encode() in row["blob"]:
                stored[(turn["thread"], turn["text"])] += 1
    assert {key: n for key, n in stored.items() if n != 1} == {}
    assert len(stored) == len(sent)

    # Every checkpoint continues the head it was written on: no turn went to a side
    # branch. Only a rewind's checkpoint has another parent (its target).
    checkpoints = rows(
        database_url,
        "SELECT thread_id, checkpoint_id, parent_checkpoint_id, metadata FROM checkpoints"
        " WHERE checkpoint_ns = '' ORDER BY thread_id, checkpoint_id",
    )
    previous: dict[str, str] = {}
    side_branches = []
    for row in checkpoints:
        before = previous.get(row["thread_id"])
        moved = before is not None and row["parent_checkpoint_id"] != before
        if moved and "rewound_to" not in row["metadata"]:
            side_branches.append(row["checkpoint_id"])
        previous[row["thread_id"]] = row["checkpoint_id"]
    assert side_branches == []

    # Every forget and rewind is in the history once, and in the audit log once.
    marked = {
        row["checkpoint_id"]: ("forget" if "memory_cleared" in row["metadata"] else "rewind")
        for row in checkpoints
        if "memory_cleared" in row["metadata"] or "rewound_to" in row["metadata"]
    }
    assert marked == {change["at"]: change["op"] for change in changes}
    audited = Counter(
        (row["operation"], row["thread_id"])
        for row in rows(database_url, "SELECT operation, thread_id FROM memagent_audit")
    )
    assert audited == Counter((change["op"], change["thread"]) for change in changes)


def wait_for_files(here: Path, count: int) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while len(list(here.glob("ready-*"))) < count:
        assert time.monotonic() < deadline, "the processes never started"
        time.sleep(0.01)
