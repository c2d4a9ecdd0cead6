"""``tools.admin``: thread administration from code, on a real PostgreSQL.

Erasure is checked on the raw rows (bytes of every blob, text of every JSON column),
not on decoded state, because a string that only the decoder no longer shows is still
on disk.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from langchain_core.messages import BaseMessage
from psycopg_pool import AsyncConnectionPool

from agent.checkpointer import MemagentSaver
from agent.errors import RequestError, ThreadBusyError
from agent.memory.entries import PREVIEW_CHARS
from agent.prompts import FORGET_CONFIRMATION, REWIND_CONFIRMATION
from tests.helpers import THREAD_TABLES, Chat, canary_rows, count, rows, table_counts, thread_rows
from tools import admin

CANARY = "canary-5d41-passport-X1234567"


def shape(messages: list[BaseMessage]) -> list[tuple[str, str]]:
    """What a provider sees of a conversation: types and contents (ids may differ)."""
    return [(type(m).__name__, m.text) for m in messages]


# --- delete --------------------------------------------------------------------------


async def test_delete_erases_every_row_of_the_thread_and_nothing_else(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver)
    await chat.say(f"my passport number is {CANARY}", f"Noted, {CANARY}.")
    await chat.say("and my name is Ada")
    other = Chat(saver)
    await other.say("my name is Grace")
    before = canary_rows(database_url, CANARY)
    assert before["checkpoint_blobs"] > 0  # the scan sees the canary while it is there
    assert before["checkpoint_writes"] > 0
    rows_before = thread_rows(database_url, chat.thread_id)
    other_before = thread_rows(database_url, other.thread_id)

    erased = await admin.adelete(saver, chat.thread_id)

    assert erased.rows == rows_before  # the counts are the thread's rows, per table
    assert canary_rows(database_url, CANARY) == dict.fromkeys(THREAD_TABLES, 0)
    assert thread_rows(database_url, chat.thread_id) == dict.fromkeys(THREAD_TABLES, 0)
    assert thread_rows(database_url, other.thread_id) == other_before
    assert await chat.messages() == []
    assert shape(await other.messages())[0] == ("HumanMessage", "my name is Grace")


async def test_delete_of_an_unknown_thread_erases_nothing_and_says_zero(
    saver: MemagentSaver, database_url: str
) -> None:
    await Chat(saver).say("hello")
    before = table_counts(database_url)

    erased = await admin.adelete(saver, "no-such-thread")

    assert erased.rows == dict.fromkeys(THREAD_TABLES, 0)
    assert table_counts(database_url) == before


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "x" * 300])
async def test_admin_refuses_unusable_thread_ids(
    saver: MemagentSaver, database_url: str, bad: str
) -> None:
    await Chat(saver).say("hello")
    before = table_counts(database_url)
    for operation in (admin.adelete, admin.apurge, admin.aforget, admin.atimeline):
        with pytest.raises(RequestError, match=r"[Tt]hread id"):
            await operation(saver, bad)
    assert table_counts(database_url) == before


async def test_delete_is_one_transaction(saver: MemagentSaver, database_url: str) -> None:
    chat = Chat(saver)
    await chat.say(f"my passport number is {CANARY}")
    before = table_counts(database_url)
    # The third of the three deletes fails: the first two must be rolled back.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'deletes refused by the test'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON checkpoints "
            "FOR EACH ROW EXECUTE FUNCTION refuse_delete()"
        )

    with pytest.raises(psycopg.Error, match="deletes refused by the test"):
        await admin.adelete(saver, chat.thread_id)

    assert table_counts(database_url) == before
    assert canary_rows(database_url, CANARY)["checkpoint_writes"] > 0
    assert shape(await chat.messages())[0][1] == f"my passport number is {CANARY}"
    assert [a["operation"] for a in await admin.aaudit(saver, chat.thread_id)] == []


# --- purge ---------------------------------------------------------------------------


@pytest.mark.parametrize("surface", ["tool", "code"])
async def test_purge_erases_everything_before_the_forget_and_the_thread_goes_on(
    saver: MemagentSaver, database_url: str, surface: str
) -> None:
    chat = Chat(saver)
    await chat.say("hello")
    # The canary is in the last turn before the forget too: its input must go as well.
    await chat.say(f"my passport number is {CANARY}", f"Noted: {CANARY}.")
    if surface == "tool":
        await chat.forget(reason="user asked")
    else:
        await admin.aforget(saver, chat.thread_id, reason="user asked")
    await chat.say("my name is Ada")
    forget_id = next(
        e.checkpoint_id for e in await admin.atimeline(saver, chat.thread_id) if e.kind == "forget"
    )
    assert sum(canary_rows(database_url, CANARY).values()) > 0

    erased = await admin.apurge(saver, chat.thread_id)

    assert erased.kept_from == forget_id
    assert erased.rows["checkpoints"] > 0 and erased.rows["checkpoint_writes"] > 0
    assert canary_rows(database_url, CANARY) == dict.fromkeys(THREAD_TABLES, 0)
    # What came after the forget is intact; the history now starts at the forget.
    assert shape(await chat.messages()) == [
        ("AIMessage", FORGET_CONFIRMATION),
        ("HumanMessage", "my name is Ada"),
        ("AIMessage", "ok"),
    ]
    assert (await chat.history_ids())[-1] == forget_id
    # And the thread still works.
    await chat.say("what do you know?")
    assert CANARY not in chat.model.said()
    assert "my name is Ada" in chat.model.said()
    assert (await chat.history_ids())[-1] == forget_id
    timeline = await admin.atimeline(saver, chat.thread_id)
    assert [e.kind for e in timeline][-1] == "forget"


async def test_purge_of_a_thread_never_forgotten_is_refused_and_changes_nothing(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver)
    await chat.say(f"my passport number is {CANARY}")
    before = table_counts(database_url)

    with pytest.raises(RequestError, match="forget"):
        await admin.apurge(saver, chat.thread_id)

    assert table_counts(database_url) == before
    assert await admin.aaudit(saver, chat.thread_id) == []


async def test_purge_after_the_forget_was_undone_is_refused(
    saver: MemagentSaver, database_url: str
) -> None:
    """The head holds the forgotten conversation again: purging cannot erase it."""
    chat = Chat(saver)
    await chat.say(f"my passport number is {CANARY}")
    change = await admin.aforget(saver, chat.thread_id)
    forget = await saver.aget_tuple(
        {"configurable": {"thread_id": chat.thread_id, "checkpoint_id": change.checkpoint_id}}
    )
    assert forget is not None and forget.parent_config is not None
    await admin.arewind(
        saver, chat.thread_id, forget.parent_config["configurable"]["checkpoint_id"]
    )
    before = table_counts(database_url)

    with pytest.raises(RequestError, match="forget it again"):
        await admin.apurge(saver, chat.thread_id)

    assert table_counts(database_url) == before
    assert shape(await chat.messages())[0] == ("HumanMessage", f"my passport number is {CANARY}")


async def test_purge_also_erases_a_set_aside_branch_that_restored_the_forgotten_part(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver)
    await chat.say(f"my passport number is {CANARY}")
    await chat.forget()
    await chat.say("my name is Ada")
    await chat.say("my city is Paris")
    entries = await admin.atimeline(saver, chat.thread_id)
    after_forget = entries[0].checkpoint_id  # the point before "my city is Paris"
    # The point before "please forget this": the canary is in its state.
    before_forget = next(e.checkpoint_id for e in entries if e.preview == "please forget this")
    # Undo the forget (the canary is copied into the new branch), then go forward again.
    await admin.arewind(saver, chat.thread_id, before_forget)
    await chat.say(f"again: {CANARY}")
    await admin.arewind(saver, chat.thread_id, after_forget)
    assert canary_rows(database_url, CANARY)["checkpoint_blobs"] > 0

    await admin.apurge(saver, chat.thread_id)

    assert canary_rows(database_url, CANARY) == dict.fromkeys(THREAD_TABLES, 0)
    assert shape(await chat.messages()) == [
        ("AIMessage", FORGET_CONFIRMATION),
        ("HumanMessage", "my name is Ada"),
        ("AIMessage", "ok"),
        ("AIMessage", REWIND_CONFIRMATION),
    ]
    await chat.say("still there?")
    assert "my name is Ada" in chat.model.said()


# --- forget and rewind out of band ---------------------------------------------------


async def test_forget_out_of_band_gives_the_same_result_as_the_tool(
    saver: MemagentSaver,
) -> None:
    by_tool, by_admin = Chat(saver), Chat(saver)
    for chat in (by_tool, by_admin):
        await chat.say(f"my passport number is {CANARY}", "Noted.")
        await chat.say("my name is Ada")

    await by_tool.forget(reason="privacy")
    change = await admin.aforget(saver, by_admin.thread_id, reason="privacy")

    tool_head, admin_head = await by_tool.head(), await by_admin.head()
    assert change.checkpoint_id == admin_head.config["configurable"]["checkpoint_id"]
    assert shape(tool_head.values["messages"]) == shape(admin_head.values["messages"])
    assert shape(admin_head.values["messages"]) == [("AIMessage", FORGET_CONFIRMATION)]
    # The same metadata, except that the tool's checkpoint names the turn that made it.
    assert set(tool_head.metadata) - {"run_id"} == set(admin_head.metadata)
    for head in (tool_head, admin_head):
        assert head.metadata["memory_cleared"] is True
        assert head.metadata["reason"] == "privacy"
        assert isinstance(head.metadata["timestamp"], int)
        assert head.next == ()
    assert tool_head.values.get("memory_requests") == admin_head.values.get("memory_requests")
    # The saver's filter finds each forget, and the next turn sees nothing from before.
    for chat, head in ((by_tool, tool_head), (by_admin, admin_head)):
        found = [c async for c in saver.alist(chat.config, filter={"memory_cleared": True})]
        assert [c.config["configurable"]["checkpoint_id"] for c in found] == [
            head.config["configurable"]["checkpoint_id"]
        ]
        await chat.say("what do you know?")
        assert CANARY not in chat.model.said()


async def test_rewind_out_of_band_gives_the_same_result_as_the_tool(
    saver: MemagentSaver,
) -> None:
    by_tool, by_admin = Chat(saver), Chat(saver)
    targets = []
    for chat in (by_tool, by_admin):
        await chat.say("my name is Ada", "Hello Ada.")
        await chat.say("my city is Paris")
        await chat.say("my dog is Rex")
        targets.append((await chat.turn_points())[1])  # before "my city is Paris"
    before_rex = (await by_admin.turn_points())[0]

    await by_tool.rewind(targets[0])
    change = await admin.arewind(saver, by_admin.thread_id, targets[1])

    tool_head, admin_head = await by_tool.head(), await by_admin.head()
    assert change.rewound_to == targets[1]
    assert change.checkpoint_id == admin_head.config["configurable"]["checkpoint_id"]
    assert shape(tool_head.values["messages"]) == shape(admin_head.values["messages"])
    assert shape(admin_head.values["messages"]) == [
        ("HumanMessage", "my name is Ada"),
        ("AIMessage", "Hello Ada."),
        ("AIMessage", REWIND_CONFIRMATION),
    ]
    # The same metadata, except that the tool's checkpoint names the turn that made it.
    assert set(tool_head.metadata) - {"run_id"} == set(admin_head.metadata)
    for head, target in ((tool_head, targets[0]), (admin_head, targets[1])):
        assert head.metadata["rewound_to"] == target
        assert head.parent_config["configurable"]["checkpoint_id"] == target
        assert head.next == ()
    # The set-aside branch is still there: the rewind itself can be undone.
    await admin.arewind(saver, by_admin.thread_id, before_rex)
    await by_admin.say("and now?")
    assert "my city is Paris" in by_admin.model.said()
    assert "my dog is Rex" not in by_admin.model.said()


async def test_rewind_out_of_band_refuses_bad_ids_and_writes_nothing(
    saver: MemagentSaver, database_url: str
) -> None:
    chat, other = Chat(saver), Chat(saver)
    await chat.say("hello")
    await other.say("hello")
    foreign = (await other.turn_points())[0]
    before = table_counts(database_url)

    for bad, message in (
        ("not-an-id", "is not a checkpoint id"),
        (str(uuid.uuid4()), "no checkpoint"),
        (foreign, "no checkpoint"),
    ):
        with pytest.raises(RequestError, match=message) as refused:
            await admin.arewind(saver, chat.thread_id, bad)
        assert "\n" not in str(refused.value)
        assert "conversation_timeline" not in str(refused.value)  # that is the model's tool

    assert table_counts(database_url) == before


async def test_forget_of_an_unknown_thread_is_an_error(saver: MemagentSaver) -> None:
    with pytest.raises(RequestError, match="no thread 'ghost'"):
        await admin.aforget(saver, "ghost")


async def test_a_memory_operation_waits_for_the_running_turn(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver)
    await chat.say("hello")
    saver.leases.busy_timeout = 0.2
    before = table_counts(database_url)
    holding, done = asyncio.Event(), asyncio.Event()

    async def turn_in_progress() -> None:  # another task: the lease is re-entrant in its own
        async with saver.thread_lease(chat.thread_id):
            holding.set()
            await done.wait()

    turn = asyncio.create_task(turn_in_progress())
    await holding.wait()
    try:
        with pytest.raises(ThreadBusyError, match="busy"):
            await admin.aforget(saver, chat.thread_id)
    finally:
        done.set()
        await turn
    assert table_counts(database_url) == before
    await admin.aforget(saver, chat.thread_id)  # free again


# --- sync twins ----------------------------------------------------------------------


async def test_sync_twins_work_from_another_thread_while_the_loop_runs(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver)
    await chat.say(f"my passport number is {CANARY}")
    await chat.say("my name is Ada")
    tid = chat.thread_id

    entries = await asyncio.to_thread(admin.timeline, saver, tid)
    assert [e.preview for e in entries] == ["my name is Ada", f"my passport number is {CANARY}"]
    listed = await asyncio.to_thread(admin.threads, saver)
    assert [t["thread_id"] for t in listed] == [tid]
    forgot = await asyncio.to_thread(admin.forget, saver, tid, reason="from a thread")
    assert (await chat.head()).metadata["reason"] == "from a thread"
    back = await asyncio.to_thread(admin.rewind, saver, tid, entries[0].checkpoint_id)
    assert back.rewound_to == entries[0].checkpoint_id
    await asyncio.to_thread(admin.forget, saver, tid)
    purged = await asyncio.to_thread(admin.purge, saver, tid)
    assert purged.kept_from is not None and purged.kept_from > forgot.checkpoint_id
    erased = await asyncio.to_thread(admin.delete, saver, tid)
    assert erased.rows["checkpoints"] > 0
    log = await asyncio.to_thread(admin.audit, saver, tid)
    assert [a["operation"] for a in log] == ["delete", "purge", "forget", "rewind", "forget"]
    assert canary_rows(database_url, CANARY) == dict.fromkeys(THREAD_TABLES, 0)


TWINS: list[tuple[Callable[..., Any], tuple[Any, ...], str]] = [
    (admin.timeline, ("t",), "atimeline"),
    (admin.threads, (), "athreads"),
    (admin.forget, ("t",), "aforget"),
    (admin.rewind, ("t", str(uuid.uuid4())), "arewind"),
    (admin.delete, ("t",), "adelete"),
    (admin.purge, ("t",), "apurge"),
    (admin.audit, (), "aaudit"),
]


@pytest.mark.timeout(60)
async def test_sync_twins_on_the_loop_thread_raise_instead_of_hanging(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver, "t")
    await chat.say("hello")
    before = table_counts(database_url)
    for twin, args, async_name in TWINS:
        with pytest.raises(asyncio.InvalidStateError, match=rf"await tools\.admin\.{async_name}"):
            twin(saver, *args)
    assert table_counts(database_url) == before
    assert await admin.aaudit(saver) == []


@pytest.mark.timeout(60)
async def test_a_sync_twin_refuses_a_saver_whose_loop_is_not_running(database_url: str) -> None:
    """Its coroutine would never run, so without the check the caller waits forever."""
    idle_loop = asyncio.new_event_loop()

    async def make() -> MemagentSaver:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(database_url, open=False)
        return MemagentSaver(pool, database_url)

    outcome: list[BaseException | None] = []

    def call_the_twin() -> None:
        orphan = idle_loop.run_until_complete(make())  # the loop stops when this returns
        try:
            admin.timeline(orphan, "t")
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=call_the_twin, daemon=True)
    worker.start()
    await asyncio.to_thread(worker.join, 30)  # a guard against a hang, not a speed check
    idle_loop.close()
    assert not worker.is_alive(), "the sync twin is still waiting for a loop that never runs"
    assert isinstance(outcome[0], asyncio.InvalidStateError)
    assert "not running" in str(outcome[0])


def test_sync_twins_are_bridges_not_copies() -> None:
    for twin, _, async_name in TWINS:
        assert twin.__wrapped__ is getattr(admin, async_name)  # type: ignore[attr-defined]
        assert not asyncio.iscoroutinefunction(twin)


# --- audit ---------------------------------------------------------------------------


async def test_audit_records_every_operation_and_survives_delete(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver)
    await chat.say(f"my passport number is {CANARY}")
    await chat.forget(reason=f"about {CANARY}")  # by the model: surface "tool"
    first = (await chat.turn_points())[-1]
    await chat.rewind(first)  # tool
    await admin.aforget(saver, chat.thread_id, surface="cli", reason=CANARY)
    await admin.arewind(saver, chat.thread_id, first, surface="cli")
    await admin.aforget(saver, chat.thread_id)  # code, the default
    await admin.apurge(saver, chat.thread_id, surface="cli", actor="ops@example.org")
    await admin.adelete(saver, chat.thread_id)
    await Chat(saver).say("another thread")

    log = await admin.aaudit(saver, chat.thread_id)

    assert [(a["operation"], a["surface"]) for a in reversed(log)] == [
        ("forget", "tool"),
        ("rewind", "tool"),
        ("forget", "cli"),
        ("rewind", "cli"),
        ("forget", "code"),
        ("purge", "cli"),
        ("delete", "code"),
    ]
    assert {a["thread_id"] for a in log} == {chat.thread_id}
    assert all(a["at"] is not None for a in log)
    assert log[1]["actor"] == "ops@example.org"
    assert log[0]["detail"]["checkpoints"] > 0
    assert log[-2]["detail"]["target"] == first
    assert len(await admin.aaudit(saver)) == len(log)  # the other thread had no operation
    # Content-free: the reason (model- or user-written text) is not copied into it.
    assert (
        count(
            database_url,
            "SELECT count(*) FROM memagent_audit WHERE detail::text LIKE %s",
            f"%{CANARY}%",
        )
        == 0
    )
    columns = [
        r["column_name"]
        for r in rows(
            database_url,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'memagent_audit' ORDER BY ordinal_position",
        )
    ]
    assert columns == ["id", "at", "operation", "thread_id", "surface", "actor", "detail"]
    # The audit table is not one of the thread's tables: a delete keeps it.
    await admin.adelete(saver, chat.thread_id)
    assert len(await admin.aaudit(saver, chat.thread_id)) == len(log) + 1


async def test_audit_limit_and_order(saver: MemagentSaver) -> None:
    for name in ("a", "b", "c"):
        await admin.adelete(saver, name)
    assert [a["thread_id"] for a in await admin.aaudit(saver, limit=2)] == ["c", "b"]


# --- timeline and threads ------------------------------------------------------------


async def test_timeline_lists_turns_forgets_and_rewinds_with_previews(
    saver: MemagentSaver,
) -> None:
    chat = Chat(saver)
    long_text = "word " * 40
    await chat.say("my name is Ada")
    await chat.say(long_text)
    await admin.aforget(saver, chat.thread_id, reason="tidy up")
    await chat.say("my  city\nis Paris")
    target = (await chat.turn_points())[0]
    await chat.rewind(target)

    entries = await admin.atimeline(saver, chat.thread_id)

    # The rewind's parent is its target, so the turn that asked for it is not listed.
    assert [(e.kind, e.preview) for e in entries] == [
        ("rewind", ""),
        ("turn", "my city is Paris"),
        ("forget", ""),
        ("turn", long_text.strip()[: PREVIEW_CHARS - 1] + "…"),
        ("turn", "my name is Ada"),
    ]
    assert entries[0].rewound_to == target and entries[0].in_turn
    assert entries[2].reason == "tidy up" and not entries[2].in_turn
    assert all(e.at is not None for e in entries)
    assert len(entries[3].preview) == PREVIEW_CHARS
    ids = [e.checkpoint_id for e in entries]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert [e.kind for e in await admin.atimeline(saver, chat.thread_id, limit=2)] == [
        "rewind",
        "turn",
    ]
    assert await admin.atimeline(saver, "no-such-thread") == []


async def test_timeline_reads_no_message_blob(saver: MemagentSaver, database_url: str) -> None:
    chat = Chat(saver)
    await chat.say("my name is Ada")
    await chat.say("my city is Paris")
    expected = await admin.atimeline(saver, chat.thread_id)
    # Make every stored conversation state unreadable: a timeline that loaded it fails.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE checkpoint_blobs SET blob = '\\xc1'::bytea, type = 'msgpack'")
    with pytest.raises(Exception):  # noqa: B017 - any decoding failure will do
        await chat.messages()

    assert await admin.atimeline(saver, chat.thread_id) == expected
    assert [e.preview for e in expected] == ["my city is Paris", "my name is Ada"]


async def test_threads_lists_each_thread_with_its_last_activity(saver: MemagentSaver) -> None:
    older, newer = Chat(saver, "older"), Chat(saver, "newer")
    await older.say("hello")
    await newer.say("hello")
    await newer.say("again")

    listed = await admin.athreads(saver)

    assert [t["thread_id"] for t in listed] == ["newer", "older"]
    assert listed[0]["checkpoints"] > listed[1]["checkpoints"]
    assert listed[0]["last_activity"] > listed[1]["last_activity"]
    assert [t["thread_id"] for t in await admin.athreads(saver, limit=1)] == ["newer"]
    await admin.adelete(saver, "newer")
    assert [t["thread_id"] for t in await admin.athreads(saver)] == ["older"]


# --- the tree the CLI draws ----------------------------------------------------------


async def test_tree_shows_set_aside_branches_and_forgets(saver: MemagentSaver) -> None:
    chat = Chat(saver)
    await chat.say("my name is Ada")
    await chat.say("my city is Paris")
    await admin.aforget(saver, chat.thread_id)
    await chat.say("my dog is Rex")
    before_paris = (await chat.turn_points())[-2]
    await admin.arewind(saver, chat.thread_id, before_paris)
    await chat.say("my city is Rome")

    tree = await admin.atree(saver, chat.thread_id)

    by_id = {e.entry.checkpoint_id: e for e in tree.entries}
    kinds = [(e.entry.kind, e.entry.preview) for e in tree.entries]
    assert kinds == [  # newest first, every branch
        ("turn", "my city is Rome"),
        ("rewind", ""),
        ("turn", "my dog is Rex"),
        ("forget", ""),
        ("turn", "my city is Paris"),
        ("turn", "my name is Ada"),
    ]
    rome, rewind, rex, forget, paris, ada = tree.entries
    assert paris.parent == ada.entry.checkpoint_id
    assert forget.parent == paris.entry.checkpoint_id
    assert rex.parent == forget.entry.checkpoint_id
    # The rewind went back to the point before "my city is Paris": it forks from Ada.
    assert rewind.parent == ada.entry.checkpoint_id
    assert rome.parent == rewind.entry.checkpoint_id
    assert [e.on_head_branch for e in tree.entries] == [True, True, False, False, False, True]
    assert tree.head == (await chat.head()).config["configurable"]["checkpoint_id"]
    assert tree.hidden == 0
    assert by_id[forget.entry.checkpoint_id].entry.kind == "forget"
    assert rewind.entry.rewound_to == before_paris

    limited = await admin.atree(saver, chat.thread_id, limit=2)
    assert [e.entry.kind for e in limited.entries] == ["turn", "rewind"]
    assert limited.hidden == 4
    assert limited.entries[1].parent is None  # its parent is not shown

    with pytest.raises(RequestError, match="no thread"):
        await admin.atree(saver, "no-such-thread")
