"""Message-once storage (docs/storage.md): each message is written once, reads are right.

What a user would notice: a long thread's storage grows with its messages, not with
their square; every checkpoint still reads back exactly as it was written, in this
process and in a fresh one; a node that changes a message in place changes nothing
anyone else reads; and a database written by the previous release keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agent.checkpointer import MemagentSaver, open_saver
from agent.graph import make_graph
from agent.memory.updates import root_config
from agent.model import OfflineChatModel
from agent.session import ChatSession
from agent.settings import Settings
from tests.fakes import ScriptedChatModel
from tests.helpers import config, count
from tools import admin

PREVIOUS_RELEASE_DUMP = Path(__file__).parent / "data" / "previous_release.sql"


async def all_states(saver: MemagentSaver, thread_id: str) -> dict[str, list[tuple[str, str]]]:
    """Every checkpoint of the thread: its messages as (type, text)."""
    return {
        item.config["configurable"]["checkpoint_id"]: [
            (m.type, m.text) for m in item.checkpoint["channel_values"].get("messages", [])
        ]
        async for item in saver.alist(root_config(thread_id))
    }


async def test_each_message_is_stored_once_however_long_the_thread(
    saver: MemagentSaver, database_url: str
) -> None:
    graph = make_graph(OfflineChatModel(), checkpointer=saver)
    for turn in range(30):
        await graph.ainvoke({"messages": [HumanMessage(f"fact number {turn}")]}, config("t"))

    state = await graph.aget_state(config("t"))
    assert len(state.values["messages"]) == 60
    # One row per message, whatever the number of checkpoints that list it.
    assert count(database_url, "SELECT count(*) FROM memagent_messages WHERE thread_id = 't'") == 60
    assert count(database_url, "SELECT count(*) FROM checkpoints WHERE thread_id = 't'") >= 90
    # A messages version is a short range list, not a copy of the conversation.
    longest = count(
        database_url,
        "SELECT max(length(blob)) FROM checkpoint_blobs WHERE thread_id = 't' "
        "AND channel = 'messages'",
    )
    assert longest < 40


async def test_every_checkpoint_reads_back_the_same_in_a_fresh_process(
    saver: MemagentSaver, settings: Settings
) -> None:
    graph = make_graph(OfflineChatModel(), checkpointer=saver)
    for text in ("my name is Ada", "my city is Paris", "forget this", "undo", "what is my name?"):
        await graph.ainvoke({"messages": [HumanMessage(text)]}, config("t"))
    warm = await all_states(saver, "t")

    async with open_saver(settings) as cold:  # a new pool and an empty cache
        assert await all_states(cold, "t") == warm
    assert any(("human", "my name is Ada") in messages for messages in warm.values())


async def test_a_node_changing_a_message_in_place_changes_nothing_anyone_else_reads(
    saver: MemagentSaver, settings: Settings
) -> None:
    def mutate(messages: list[BaseMessage]) -> AIMessage:
        first = messages[1]  # after the system prompt: the thread's first message
        first.content = "REWRITTEN"
        first.additional_kwargs["tampered"] = True
        return AIMessage("done")

    model = ScriptedChatModel(script=["hi", mutate])
    graph = make_graph(model, checkpointer=saver)
    await graph.ainvoke({"messages": [HumanMessage("original words")]}, config("t"))
    before = await saver.aget_tuple(config("t"))
    assert before is not None

    await graph.ainvoke({"messages": [HumanMessage("second")]}, config("t"))

    again = await saver.aget_tuple(before.config)
    assert again is not None
    first = again.checkpoint["channel_values"]["messages"][0]
    assert (first.content, first.additional_kwargs) == ("original words", {})
    # A caller changing what it read does not change what the next reader gets either.
    first.content = "scribbled"
    third = await saver.aget_tuple(before.config)
    assert third is not None
    assert third.checkpoint["channel_values"]["messages"][0].content == "original words"
    async with open_saver(settings) as cold:
        stored = await cold.aget_tuple(before.config)
    assert stored is not None
    assert stored.checkpoint["channel_values"]["messages"][0].content == "original words"


async def test_a_same_id_replacement_is_a_new_version_and_the_old_one_stays(
    saver: MemagentSaver,
) -> None:
    graph = make_graph(ScriptedChatModel(script=["hi"]), checkpointer=saver)
    await graph.ainvoke({"messages": [HumanMessage("draft", id="m1")]}, config("t"))
    old = await saver.aget_tuple(config("t"))
    assert old is not None

    await graph.aupdate_state(config("t"), {"messages": [HumanMessage("final", id="m1")]})

    head = await graph.aget_state(config("t"))
    assert [m.text for m in head.values["messages"]] == ["final", "hi"]
    kept = await saver.aget_tuple(old.config)
    assert kept is not None
    assert [m.text for m in kept.checkpoint["channel_values"]["messages"]] == ["draft", "hi"]


async def test_erasers_leave_no_message_row_behind(saver: MemagentSaver, database_url: str) -> None:
    graph = make_graph(OfflineChatModel(), checkpointer=saver)
    for thread_id in ("pruned", "kept-latest", "copied"):
        for text in ("secret-alpha", "secret-beta"):
            await graph.ainvoke({"messages": [HumanMessage(text)]}, config(thread_id))
    await admin.aforget(saver, "kept-latest")

    await saver.aprune(["pruned"], strategy="delete")
    await saver.aprune(["kept-latest"], strategy="keep_latest")
    await saver.acopy_thread("copied", "copy")
    await admin.adelete(saver, "copied")

    def rows(thread_id: str) -> int:
        return count(
            database_url, "SELECT count(*) FROM memagent_messages WHERE thread_id = %s", thread_id
        )

    assert rows("pruned") == 0
    # keep_latest keeps only the forget's checkpoint: its confirmation is the one row left.
    assert rows("kept-latest") == 1
    assert rows("copied") == 0
    copy = await graph.aget_state(config("copy"))
    assert [m.text for m in copy.values["messages"]][0::2] == ["secret-alpha", "secret-beta"]


@pytest.fixture
def previous_release_url(database_url: str) -> str:
    """This test's database, filled by the release before message-once storage."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(PREVIOUS_RELEASE_DUMP.read_text())
    return database_url


async def test_a_database_of_the_previous_release_loads_and_continues(
    previous_release_url: str, settings: Settings
) -> None:
    async with ChatSession.open(settings) as session:
        saver = session.saver
        before = await all_states(saver, "legacy")
        assert any(("human", "my name is Ada") in messages for messages in before.values())

        reply = await session.send("legacy", "what is my city?")
        assert "Paris" in reply
        await admin.aforget(saver, "legacy")
        assert "don't know" in await session.send("legacy", "what is my city?")
        undo = next(e for e in await admin.atimeline(saver, "legacy") if e.kind == "forget")
        await admin.arewind(saver, "legacy", str(undo.parent_id))
        assert "Paris" in await session.send("legacy", "what is my city?")

        after = await all_states(saver, "legacy")
        assert {key: after[key] for key in before} == before  # the old checkpoints as they were
        tree = await admin.atree(saver, "other")
        assert [e.entry.kind for e in tree.entries] == ["forget", "turn"]

    async with ChatSession.open(settings) as again:  # setup twice: the migration is idempotent
        assert await all_states(again.saver, "legacy") == after


def plan_rows(node: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """Each node of an ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan: its relation and rows read."""
    yield node.get("Relation Name", ""), int(node["Actual Rows"]) * int(node["Actual Loops"])
    for child in node.get("Plans", []):
        yield from plan_rows(child)


async def test_reading_the_head_of_a_long_thread_reads_only_its_own_blobs(
    saver: MemagentSaver, database_url: str
) -> None:
    """The read of a checkpoint touches its own few blobs, not every blob of the thread.

    langgraph's query joined the thread's blobs by hash, so a read of a long thread's
    head scanned all of them: each turn slowed down with the thread's length.
    """
    graph = make_graph(OfflineChatModel(), checkpointer=saver, context_tokens=10**9)
    for turn in range(40):
        await graph.ainvoke({"messages": [HumanMessage(f"note {turn}")]}, config("long"))
    with psycopg.connect(database_url) as conn:
        blobs = conn.execute("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = 'long'")
        assert (blobs.fetchone() or [0])[0] >= 80
        where = "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1"
        explained = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + saver.SELECT_SQL + where, ("long",)
        ).fetchone()
    assert explained is not None
    read = dict(plan_rows(explained[0][0]["Plan"]))
    channels = len((await saver.aget_tuple(config("long"))).checkpoint["channel_versions"])  # type: ignore[union-attr]
    assert read.get("checkpoint_blobs", 0) <= channels
    state = await graph.aget_state(config("long"))
    assert [m.text for m in state.values["messages"] if m.type == "human"][-1] == "note 39"
