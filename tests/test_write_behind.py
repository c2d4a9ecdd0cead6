"""A turn's writes go behind it, in few round trips, and are never lost or reported late.

Inside a thread lease the saver queues a run's checkpoints and sends several per
transaction (``agent.store.writebehind``); the lease is taken in the round trip of the
run's first read and released in the round trip of its last writes. What a user must
still see: the turn's input is stored while the model thinks (a crash then loses no
message), everything is stored when ``ainvoke`` returns (any other process sees the
whole turn and may take the thread at once), and a write the database refused fails
the turn instead of being dropped in the background.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from langchain_core.messages import HumanMessage

from agent.checkpointer import MemagentSaver
from agent.graph import make_graph
from tests.fakes import ScriptedChatModel
from tests.helpers import HANG_GUARD, Gate, config, count

REFUSE_CHECKPOINTS = """
CREATE FUNCTION refuse_checkpoint() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON checkpoints
FOR EACH ROW EXECUTE FUNCTION refuse_checkpoint();
"""


def execute(database_url: str, statements: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(statements)


def lease_rows(database_url: str) -> int:
    return count(database_url, "SELECT count(*) FROM memagent_thread_leases")


def wait_for_message_rows(database_url: str, thread_id: str, messages: int) -> None:
    """Returns once the thread has ``messages`` message rows, as another process sees them."""
    deadline = time.monotonic() + HANG_GUARD
    query = "SELECT count(*) FROM memagent_messages WHERE thread_id = %s"
    while count(database_url, query, thread_id) < messages:
        if time.monotonic() > deadline:
            raise TimeoutError(f"thread {thread_id!r} never got {messages} message rows")
        time.sleep(0.01)


async def test_the_input_is_stored_while_the_model_thinks(
    saver: MemagentSaver, database_url: str
) -> None:
    gate = Gate("a reply")
    graph = make_graph(ScriptedChatModel(script=[gate]), checkpointer=saver)
    turn = asyncio.create_task(graph.ainvoke({"messages": [HumanMessage("hello")]}, config("t")))
    await gate.reached()
    # While the model still thinks:
    await asyncio.to_thread(wait_for_message_rows, database_url, "t", 1)
    gate.release.set()
    await asyncio.wait_for(turn, HANG_GUARD)


async def test_every_write_is_committed_and_the_lease_gone_when_a_turn_returns(
    saver: MemagentSaver, database_url: str
) -> None:
    graph = make_graph(ScriptedChatModel(script=["first", "second"]), checkpointer=saver)
    for text in ("one", "two"):
        await graph.ainvoke({"messages": [HumanMessage(text)]}, config("t"))
        # Read from outside the saver, as another process would, at once.
        assert lease_rows(database_url) == 0
    checkpoints = count(database_url, "SELECT count(*) FROM checkpoints WHERE thread_id = 't'")
    assert checkpoints == 6, "three checkpoints per turn, as langgraph writes them"
    state = await graph.aget_state(config("t"))
    assert [m.text for m in state.values["messages"]] == ["one", "first", "two", "second"]


async def test_a_write_the_database_refuses_fails_the_turn_and_keeps_its_input(
    saver: MemagentSaver, database_url: str
) -> None:
    gate = Gate("never stored")
    graph = make_graph(ScriptedChatModel(script=["first", gate, "third"]), checkpointer=saver)
    await graph.ainvoke({"messages": [HumanMessage("before")]}, config("t"))
    turn = asyncio.create_task(graph.ainvoke({"messages": [HumanMessage("kept")]}, config("t")))
    await gate.reached()
    await asyncio.to_thread(wait_for_message_rows, database_url, "t", 3)
    execute(database_url, REFUSE_CHECKPOINTS)
    gate.release.set()
    with pytest.raises(psycopg.Error, match="refused by the test"):
        await asyncio.wait_for(turn, HANG_GUARD)

    execute(database_url, "DROP TRIGGER refuse ON checkpoints")
    assert lease_rows(database_url) == 0, "the failed turn gave the thread back"
    await graph.ainvoke({"messages": [HumanMessage("after")]}, config("t"))
    state = await graph.aget_state(config("t"))
    texts = [m.text for m in state.values["messages"]]
    assert texts == ["before", "first", "kept", "after", "third"]
