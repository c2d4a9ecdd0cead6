"""A turn longer than the lease keeps its thread: the holder renews the lease while it works.

Without the heartbeat, a lease row expires ``lease_seconds`` after it was taken, and a
second turn waiting for the thread takes it over while the first is still running:
both then continue from the same head and one turn's messages are set aside.
"""

from __future__ import annotations

import asyncio
import time

from langchain_core.messages import HumanMessage

from agent.checkpointer import MemagentSaver
from agent.graph import make_graph
from tests.fakes import ScriptedChatModel
from tests.helpers import HANG_GUARD, Gate, config, rows

SHORT_LEASE = 0.6
"""Seconds: short enough that a held turn outlives several leases in a test."""


def lease_holder(database_url: str, thread_id: str) -> str | None:
    found = rows(
        database_url,
        "SELECT holder FROM memagent_thread_leases WHERE thread_id = %s AND expires_at > now()",
        thread_id,
    )
    return found[0]["holder"] if found else None


async def test_a_turn_held_past_its_lease_is_not_overtaken(
    saver: MemagentSaver, database_url: str
) -> None:
    saver.leases.lease_seconds = SHORT_LEASE
    gate = Gate("reply to the first")
    graph = make_graph(ScriptedChatModel(script=[gate, "reply to the second"]), checkpointer=saver)
    thread = config("t")
    first = asyncio.create_task(graph.ainvoke({"messages": [HumanMessage("one")]}, thread))
    await gate.reached()
    holder = lease_holder(database_url, "t")
    assert holder is not None, "the running turn holds the thread's lease"
    second = asyncio.create_task(graph.ainvoke({"messages": [HumanMessage("two")]}, thread))

    deadline = time.monotonic() + 4 * SHORT_LEASE  # well past the lease the turn took
    while time.monotonic() < deadline:
        await asyncio.sleep(SHORT_LEASE / 4)
        assert lease_holder(database_url, "t") == holder, "the lease lapsed or changed hands"
        assert not second.done(), "the second turn overtook the first"

    gate.release.set()
    await asyncio.wait_for(asyncio.gather(first, second), HANG_GUARD)
    state = await graph.aget_state(thread)
    assert [(m.type, m.text) for m in state.values["messages"]] == [
        ("human", "one"),
        ("ai", "reply to the first"),
        ("human", "two"),
        ("ai", "reply to the second"),
    ]
    assert lease_holder(database_url, "t") is None, "released once both turns are done"
