"""Retention: a thread keeps its newest turns; what is kept is untouched, what is cut is said.

docs/SPEC.md, "Data lifecycle": what is kept loads exactly as before, the head is never
touched, memory changes older than the cut stay in the timeline as tombstones, an id
older than the cut gets a clear "removed by retention" error on every route (the
``rewind_to`` tool, ``tools.admin``, the CLI, the web page), a turn running meanwhile is
neither lost nor resurrected, and storage shrinks by what was cut. The ground truth is
PostgreSQL's rows, read past the saver.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import START, StateGraph
from langgraph.graph.message import _messages_delta_reducer
from typing_extensions import TypedDict

from agent.checkpointer import MemagentSaver
from agent.cli import main
from agent.errors import (
    CheckpointNotFoundError,
    CheckpointRetainedError,
    RequestError,
    RetentionRefusedError,
    ThreadNotFoundError,
)
from agent.memory.entries import REMOVED_LABEL
from agent.settings import Settings
from agent.store import sql
from agent.store.messages import RANGES_TYPE
from tests.fakes import ScriptedChatModel
from tests.helpers import (
    HANG_GUARD,
    Chat,
    Gate,
    config,
    count,
    rows,
    thread_rows,
    wait_for_lease,
    wait_until_waiting_for,
    web_client,
)
from tools import admin

LONG_TURNS = 300
KEEP = 20

UNREFERENCED_MESSAGES = """
SELECT count(*) FROM memagent_messages m
WHERE m.thread_id = %s AND NOT EXISTS (
    SELECT 1 FROM checkpoint_blobs b
    CROSS JOIN LATERAL jsonb_array_elements(convert_from(b.blob, 'UTF8')::jsonb) AS r(range)
    WHERE b.thread_id = m.thread_id AND b.type = %s
      AND m.seq BETWEEN (r.range ->> 0)::bigint AND (r.range ->> 1)::bigint
)
"""


def thread_bytes(database_url: str, thread_id: str) -> int:
    """What the thread's rows occupy, as stored (the measure retention reports)."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute(sql.THREAD_BYTES, {"thread_id": thread_id}).fetchone()
    assert found is not None
    return int(found[0])


def root_ids(database_url: str, thread_id: str) -> list[str]:
    found = rows(
        database_url,
        "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' "
        "ORDER BY checkpoint_id",
        thread_id,
    )
    return [row["checkpoint_id"] for row in found]


def stored_from(database_url: str, thread_id: str, cut: str) -> dict[str, set[str]]:
    """The rows of checkpoints at or after ``cut`` and their writes, each as its full text."""
    return {
        table: {
            row["t"]
            for row in rows(
                database_url,
                f"SELECT t::text AS t FROM {table} t WHERE thread_id = %s AND checkpoint_id >= %s",
                thread_id,
                cut,
            )
        }
        for table in ("checkpoints", "checkpoint_writes")
    }


async def tuples(saver: MemagentSaver, thread_id: str, ids: list[str]) -> list[Any]:
    return [await saver.aget_tuple(config(thread_id, cid)) for cid in ids]


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


async def cli(*args: str) -> Result:
    """The CLI in a worker thread: it runs its own event loop."""
    return await asyncio.to_thread(run_cli, *args)


def one_error_line(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


async def seed_long_thread(saver: MemagentSaver, thread_id: str) -> Chat:
    """A 300-turn thread with a forget, a compaction, a rewind branch and a detail
    forget, all older than the last 20 turns, and a forget among them."""
    chat = Chat(saver, thread_id)
    for n in range(LONG_TURNS):
        if n == 60:
            await chat.forget("fresh start")
        elif n == 120:
            summariser = ScriptedChatModel(script=["Earlier: the user counted turns."])
            await admin.acompact(saver, thread_id, model=summariser)
        elif n == 180:
            await chat.rewind((await chat.turn_points())[9])  # a branch of 10 turns is set aside
        elif n == 240:
            await chat.forget_details("turn 239")
        elif n == LONG_TURNS - 5:
            await admin.aforget(saver, thread_id, reason="kept forget")
        await chat.say(f"turn {n}")
    return chat


async def test_keeping_the_last_20_turns_keeps_them_exactly_and_says_what_went(
    saver: MemagentSaver, database_url: str, settings: Settings
) -> None:
    chat = await seed_long_thread(saver, "long")
    other = Chat(saver, "other")
    await other.say("a thread retention was not asked for")
    other_before = thread_rows(database_url, "other")
    points = await chat.turn_points()
    cut = points[KEEP - 1]
    old_points = [p for p in points if p < cut]
    kept_ids = [cid for cid in root_ids(database_url, "long") if cid >= cut]
    removed_ids = [cid for cid in root_ids(database_url, "long") if cid < cut]
    loaded_before = await tuples(saver, "long", kept_ids)
    stored_before = stored_from(database_url, "long", cut)
    rows_before = thread_rows(database_url, "long")
    bytes_before = thread_bytes(database_url, "long")
    head_before = (await chat.head()).values["messages"]

    # A dry run changes nothing and says what a real run removes.
    dry = await admin.aretain(saver, "long", keep_turns=KEEP, dry_run=True)
    assert thread_rows(database_url, "long") == rows_before
    assert stored_from(database_url, "long", cut) == stored_before
    assert count(database_url, "SELECT count(*) FROM memagent_retained") == 0

    done = await admin.aretain(saver, "long", keep_turns=KEEP)

    [thread] = done.threads
    assert [dry.threads[0].to_json()] == [thread.to_json()]  # the same counts
    assert thread.kept_from == cut
    assert thread.checkpoints == len(removed_ids)
    # What is kept loads exactly as before, and is stored byte for byte as before.
    assert await tuples(saver, "long", kept_ids) == loaded_before
    assert stored_from(database_url, "long", cut) == stored_before
    assert root_ids(database_url, "long") == kept_ids
    assert (await chat.head()).values["messages"] == head_before
    assert (await chat.turn_points())[:KEEP] == points[:KEEP]
    # Storage shrinks by what was cut, in every table, and no message row is left
    # that nothing refers to.
    rows_after = thread_rows(database_url, "long")
    assert all(rows_after[t] < rows_before[t] for t in rows_before), (rows_before, rows_after)
    assert {t: rows_before[t] - rows_after[t] for t in rows_before} == thread.rows
    assert bytes_before - thread_bytes(database_url, "long") == thread.bytes > 0
    assert count(database_url, UNREFERENCED_MESSAGES, "long", RANGES_TYPE) == 0
    assert thread_rows(database_url, "other") == other_before

    # Memory changes older than the cut stay in the timeline, marked removed.
    timeline = await admin.atimeline(saver, "long", limit=200)
    assert [e.checkpoint_id for e in timeline if not e.removed][: KEEP + 1] == [
        e.checkpoint_id for e in timeline[: KEEP + 1]
    ]
    stones = [e for e in timeline if e.removed]
    assert {e.kind for e in stones} == {"forget", "compact", "rewind", "forget_details"}
    assert all(e.label.endswith(f"({REMOVED_LABEL})") for e in stones)
    assert all(e.checkpoint_id < cut and not e.undoable for e in stones)
    assert [e.kind for e in timeline if not e.removed].count("forget") == 1  # the kept one
    tree = await admin.atree(saver, "long", limit=1000)
    tree_stones = {n.entry.checkpoint_id for n in tree.entries if n.entry.removed}
    assert {e.checkpoint_id for e in stones} <= tree_stones
    assert all(n.undo is None for n in tree.entries if n.entry.removed)

    # An id older than the cut is "removed by retention" on every route.
    old = old_points[0]
    with pytest.raises(CheckpointRetainedError, match="removed by retention"):
        await admin.arewind(saver, "long", old)
    with pytest.raises(CheckpointRetainedError):
        await admin.arewind(saver, "long", removed_ids[0])  # any checkpoint, not only points
    with pytest.raises(CheckpointNotFoundError) as unknown:
        await admin.arewind(saver, "long", str(uuid.uuid1()))
    assert not isinstance(unknown.value, CheckpointRetainedError)
    assert "removed by retention" in one_error_line(await cli("rewind", "long", old))
    async with web_client() as client:
        refused = await client.post("/api/rewind", json={"thread": "long", "checkpoint_id": old})
        page = await client.get("/api/conversation", params={"thread": "long"})
    page_stones = [e for e in page.json()["tree"]["entries"] if e["removed"]]
    assert {e["checkpoint_id"] for e in page_stones} == tree_stones
    assert all(e["label"].endswith(f"({REMOVED_LABEL})") and not e["undo"] for e in page_stones)
    assert refused.status_code == 400 and "removed by retention" in refused.json()["error"]
    with pytest.raises(CheckpointRetainedError):  # not an empty state
        await chat.graph.aget_state(config("long", old))
    with pytest.raises(CheckpointRetainedError):  # not a new conversation from nothing
        await chat.graph.ainvoke({"messages": [("user", "from there")]}, config("long", old))
    result = await chat.rewind(old)
    answer = next(m for m in result["messages"][::-1] if isinstance(m, ToolMessage))
    assert "removed by retention" in answer.text
    assert (await chat.turn_points())[1 : KEEP + 1] == points[:KEEP]  # nothing was rewound

    # The thread goes on; the kept rewind points still work; the audit has counts only.
    await chat.say("after retention")
    await admin.arewind(saver, "long", cut)
    audit = [a for a in await admin.aaudit(saver, "long") if a["operation"] == "retain"]
    assert [a["detail"]["kept_from"] for a in audit] == [cut]
    assert audit[0]["detail"]["checkpoints"] == thread.rows["checkpoints"]


async def test_a_turn_running_during_retention_is_neither_lost_nor_resurrected(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver, "t")
    for n in range(12):
        await chat.say(f"turn {n}")
    gate = Gate("the reply written while retention waits")
    chat.model.script.append(gate)
    turn = asyncio.create_task(
        chat.graph.ainvoke({"messages": [("user", "the running turn")]}, chat.config)
    )
    await gate.reached()
    lease = await asyncio.to_thread(wait_for_lease, database_url, "t")
    retain = asyncio.create_task(admin.aretain(saver, "t", keep_turns=3))
    await asyncio.to_thread(wait_until_waiting_for, lease)
    assert not retain.done()  # it waits for the turn instead of cutting under it
    gate.release.set()
    _, done = await asyncio.wait_for(asyncio.gather(turn, retain), HANG_GUARD)

    said = [m.text for m in await chat.messages()]
    assert said[-2:] == ["the running turn", "the reply written while retention waits"]
    assert said[0] == "turn 0"  # the conversation itself is whole
    points = await chat.turn_points()
    assert done.threads[0].kept_from == points[2]  # the running turn counts as the newest
    assert min(root_ids(database_url, "t")) == points[2]  # nothing cut came back
    await chat.say("and on")
    assert min(root_ids(database_url, "t")) == points[2]


async def test_older_than_keeps_the_turns_newer_than_that(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver, "t")
    for n in range(5):
        await chat.say(f"old {n}")
    await asyncio.sleep(3)
    for n in range(3):
        await chat.say(f"new {n}")
    points = await chat.turn_points()

    done = await admin.aretain(saver, "t", older_than="2s")

    assert done.threads[0].kept_from == points[2]
    assert [e.preview for e in await admin.atimeline(saver, "t") if e.kind == "turn"] == [
        "new 2",
        "new 1",
        "new 0",
    ]
    # Nothing newer than the age: only the head is kept, and it is untouched.
    head = (await chat.head()).values["messages"]
    await admin.aretain(saver, "t", older_than="0s")
    assert root_ids(database_url, "t") == [
        (await chat.head()).config["configurable"]["checkpoint_id"]
    ]
    assert (await chat.head()).values["messages"] == head


async def test_retain_over_all_threads_and_the_cli(
    saver: MemagentSaver, database_url: str, settings: Settings
) -> None:
    for thread in ("a", "b", "short"):
        chat = Chat(saver, thread)
        for n in range(6 if thread != "short" else 2):
            await chat.say(f"{thread} {n}")
    before = {t: thread_rows(database_url, t) for t in ("a", "b", "short")}

    dry = await cli("retain", "--all", "--keep-turns", "3", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert {t: thread_rows(database_url, t) for t in before} == before
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["keep_turns"] == 3 and report["busy"] == []
    by_thread = {t["thread_id"]: t for t in report["threads"]}
    assert by_thread["short"]["kept_from"] is None and by_thread["a"]["checkpoints"] > 0

    done = await cli("retain", "--all", "--keep-turns", "3", "--json")
    assert done.exit_code == 0, done.output
    assert {**json.loads(done.stdout), "dry_run": True} == report
    assert thread_rows(database_url, "short") == before["short"]
    assert thread_rows(database_url, "a")["checkpoints"] < before["a"]["checkpoints"]

    text = await cli("retain", "a", "--keep-turns", "1")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("Thread a: kept from ")
    again = await cli("retain", "a", "--keep-turns", "1")
    assert "nothing to remove" in again.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["ghost", "--keep-turns", "3"], "There is no thread 'ghost'"),
        (["t", "--keep-turns", "-1"], "0 or more"),
        (["t", "--keep-turns", "many"], "0 or more"),
        (["t", "--older-than", "30"], "is not a duration"),
        (["t", "--older-than", "1x"], "is not a duration"),
        (["t", "--older-than", "-1d"], "is not a duration"),
        (["t"], "--keep-turns N or --older-than"),
        (["t", "--keep-turns", "3", "--older-than", "1d"], "--keep-turns N or --older-than"),
        (["--keep-turns", "3"], "a THREAD or --all"),
        (["t", "--all", "--keep-turns", "3"], "a THREAD or --all"),
    ],
)
async def test_bad_retention_requests_are_one_line_and_change_nothing(
    saver: MemagentSaver, database_url: str, settings: Settings, args: list[str], words: str
) -> None:
    chat = Chat(saver, "t")
    for n in range(4):
        await chat.say(f"turn {n}")
    before = thread_rows(database_url, "t")

    assert words in one_error_line(await cli("retain", *args))

    assert thread_rows(database_url, "t") == before


@pytest.mark.parametrize(
    "policy",
    [
        {"keep_turns": -1},
        {"keep_turns": 1.5},
        {"older_than": "soon"},
        {},
        {"keep_turns": 1, "older_than": "1d"},
    ],
)
async def test_bad_retention_calls_raise_a_request_error_and_change_nothing(
    saver: MemagentSaver, database_url: str, policy: dict[str, Any]
) -> None:
    chat = Chat(saver, "t")
    await chat.say("hello")
    before = thread_rows(database_url, "t")
    with pytest.raises(RequestError):
        await admin.aretain(saver, "t", **policy)
    with pytest.raises(ThreadNotFoundError):
        await admin.aretain(saver, "ghost", keep_turns=1)
    assert thread_rows(database_url, "t") == before
    assert count(database_url, "SELECT count(*) FROM memagent_retained") == 0


async def test_the_blocking_twin_retains_from_another_thread(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver, "t")
    for n in range(4):
        await chat.say(f"turn {n}")
    points = await chat.turn_points()
    done = await asyncio.to_thread(admin.retain, saver, "t", keep_turns=2)
    assert done.threads[0].kept_from == points[1]


CHAT_SCRIPT = """
import asyncio, json, pathlib, sys
from langchain_core.messages import HumanMessage
from agent.errors import ThreadBusyError
from agent.graph import make_graph
from agent.model import load_model
from agent.settings import Settings
from agent.store.database import open_saver

here, thread, turns = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

async def main():
    async with open_saver(Settings.from_env()) as saver:
        graph = make_graph(load_model(Settings.from_env())[0], checkpointer=saver)
        config = {"configurable": {"thread_id": thread}}
        for k in range(turns):
            for attempt in range(50):
                try:
                    await graph.ainvoke({"messages": [HumanMessage(f"hello number {k}")]}, config)
                    break
                except ThreadBusyError:
                    continue
            (here / "progress").write_text(str(k + 1))

asyncio.run(main())
"""


async def test_one_process_retains_while_another_chats(
    saver: MemagentSaver, database_url: str, settings: Settings, tmp_path: Path
) -> None:
    """The chatting process loses no turn and keeps working on a cache of rows the
    retaining process may have removed; every kept checkpoint loads afterwards."""
    turns = 40
    env = {**os.environ, "DATABASE_URL": database_url, "MEMAGENT_MODEL": "offline"}
    env["MEMAGENT_HOME"] = str(tmp_path / "home")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHAT_SCRIPT,
        str(tmp_path),
        "shared",
        str(turns),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    retained = 0
    try:
        deadline = time.monotonic() + HANG_GUARD
        while process.returncode is None and time.monotonic() < deadline:
            try:
                done = await admin.aretain(saver, "shared", keep_turns=3)
                retained += done.threads[0].checkpoints
            except ThreadNotFoundError:  # no turn has reached the thread yet
                pass
            await asyncio.sleep(0.05)
        output = (await asyncio.wait_for(process.communicate(), HANG_GUARD))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, output
    assert retained > 0  # retention really ran while the turns went on
    chat = Chat(saver, "shared")
    said = [m.text for m in await chat.messages() if m.type == "human"]
    assert said == [f"hello number {k}" for k in range(turns)]
    await admin.aretain(saver, "shared", keep_turns=3)
    for cid in root_ids(database_url, "shared"):
        assert await saver.aget_tuple(config("shared", cid)) is not None
    assert count(database_url, UNREFERENCED_MESSAGES, "shared", RANGES_TYPE) == 0


async def test_the_web_process_sweeps_every_thread_with_memagent_retention(
    saver: MemagentSaver, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = Chat(saver, "t")
    for n in range(5):
        await chat.say(f"turn {n}")
    points = await chat.turn_points()
    monkeypatch.setenv("MEMAGENT_RETENTION", "2 turns")
    monkeypatch.setenv("MEMAGENT_RETENTION_INTERVAL", "0.1")

    async with web_client():
        deadline = time.monotonic() + HANG_GUARD
        while min(root_ids(database_url, "t")) != points[1]:
            assert time.monotonic() < deadline, "the sweep never ran"
            await asyncio.sleep(0.05)
        await chat.say("turn 5")  # the next sweeps follow the thread
        while min(root_ids(database_url, "t")) != (await chat.turn_points())[1]:
            assert time.monotonic() < deadline, "the sweep ran only once"
            await asyncio.sleep(0.05)

    surfaces = {a["surface"] for a in await admin.aaudit(saver, "t") if a["operation"] == "retain"}
    assert surfaces == {"sweep"}


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("200 turns", {"keep_turns": 200}),
        ("1 turn", {"keep_turns": 1}),
        (" 90d ", {"older_than": "90d"}),
    ],
)
def test_memagent_retention_names_turns_or_an_age(text: str, policy: dict[str, Any]) -> None:
    assert admin.retention_policy(text) == policy


def test_memagent_web_refuses_an_unusable_retention_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_RETENTION", "forever")
    line = one_error_line(run_cli("web", "--port", "0"))
    assert "MEMAGENT_RETENTION='forever' cannot be used" in line


class DeltaState(TypedDict):
    messages: Annotated[list[Any], DeltaChannel(_messages_delta_reducer)]


def respond(state: DeltaState) -> dict[str, Any]:
    return {"messages": [AIMessage(f"reply {len(state['messages'])}")]}


async def test_a_thread_with_a_delta_channel_is_refused_and_kept_whole(
    saver: MemagentSaver, database_url: str
) -> None:
    """A ``DeltaChannel`` rebuilds a checkpoint from older ones, so a cut would change
    what is kept: refused, as langgraph's ``aprune`` refuses it; the others go on."""
    builder = StateGraph(DeltaState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    graph = builder.compile(checkpointer=saver)
    for n in range(3):
        await graph.ainvoke({"messages": [HumanMessage(f"delta {n}")]}, config("delta"))
    chat = Chat(saver, "plain")
    for n in range(3):
        await chat.say(f"plain {n}")
    before = thread_rows(database_url, "delta")

    with pytest.raises(RetentionRefusedError, match="DeltaChannel"):
        await admin.aretain(saver, "delta", keep_turns=1)
    done = await admin.aretain(saver, None, keep_turns=1)

    assert done.refused == ["delta"] and [t.thread_id for t in done.threads] == ["plain"]
    assert thread_rows(database_url, "delta") == before
    state = await graph.aget_state(config("delta"))
    assert [m.text for m in state.values["messages"]][-1] == "reply 5"
