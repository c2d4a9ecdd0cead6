"""The saver's history listing may be finished in another task than the one that began it.

langgraph does this for stateful subgraphs, replays and retries: ``alist`` is an async
generator, and a generator closed from another task runs its cleanup in another
context. The saver then must neither fail (a ContextVar token reset across contexts
raised ``ValueError``) nor hand the task that began it a connection that has gone back
to the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import CheckpointTuple

from agent.checkpointer import MemagentSaver
from agent.graph import make_graph
from tests.fakes import ScriptedChatModel
from tests.helpers import config


async def test_a_listing_closed_from_another_task_leaves_the_saver_working(
    saver: MemagentSaver,
) -> None:
    graph = make_graph(ScriptedChatModel(), checkpointer=saver)
    for text in ("one", "two"):
        await graph.ainvoke({"messages": [HumanMessage(text)]}, config("t"))

    listing = saver.alist(config("t"))
    first = await anext(listing)
    assert first.checkpoint["channel_values"]["messages"]
    assert isinstance(listing, AsyncGenerator)
    await asyncio.create_task(listing.aclose())  # cleanup in another task's context

    head = await saver.aget_tuple(config("t"))  # this task's reads still work
    assert head is not None
    assert [m.text for m in head.checkpoint["channel_values"]["messages"]] == [
        "one",
        "ok",
        "two",
        "ok",
    ]
    history = [item async for item in saver.alist(config("t"))]
    assert len(history) > 2


async def test_a_listing_resumed_in_another_task_reads_its_messages(
    saver: MemagentSaver,
) -> None:
    graph = make_graph(ScriptedChatModel(), checkpointer=saver)
    await graph.ainvoke({"messages": [HumanMessage("one")]}, config("t"))

    listing = saver.alist(config("t"))
    await anext(listing)
    rest = await asyncio.create_task(_drain(listing))  # resumed in another task
    assert rest and all(item.checkpoint is not None for item in rest)


async def _drain(listing: AsyncIterator[CheckpointTuple]) -> list[CheckpointTuple]:
    return [item async for item in listing]
