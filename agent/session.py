"""Running chat turns from code and the CLI: validated input, one turn per thread at a time.

``ChatSession`` is the Python entry point: open it with ``ChatSession.open()`` (it
brings the database, the model and the graph), then ``await session.send(thread, text)``
or stream with ``session.stream(thread, text)``. ``langgraph dev`` does not go through
here; the server has its own per-thread run queue.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from agent.checkpointer import MemagentSaver, describe_database, open_saver, resolve_database_url
from agent.graph import make_graph
from agent.model import load_model
from agent.settings import Settings
from tools.admin import check_thread_id

MAX_MESSAGE_CHARS = 1_000_000
REPLYING_NODES = frozenset({"agent", "apply_memory"})


class MessageRejectedError(ValueError):
    """A user message memagent will not send; the message says why."""


def check_message(text: str) -> str:
    """Refuses messages that cannot make a sensible turn.

    NUL characters are dropped (no model or terminal means them); emoji, right-to-left
    and other Unicode text pass unchanged.

    Raises:
        MessageRejectedError: Empty, or longer than ``MAX_MESSAGE_CHARS``.
    """
    cleaned = text.replace("\x00", "")
    if not cleaned.strip():
        raise MessageRejectedError("The message is empty.")
    if len(cleaned) > MAX_MESSAGE_CHARS:
        raise MessageRejectedError(
            f"The message has {len(cleaned):,} characters; the limit is {MAX_MESSAGE_CHARS:,}."
        )
    return cleaned


def new_thread_id() -> str:
    """A fresh thread id."""
    return str(uuid.uuid4())


@dataclass
class ChatSession:
    """A chat graph on memagent's saver.

    Attributes:
        graph: The compiled graph, with ``saver`` as its checkpointer.
        saver: Where the turns persist.
        model_label: Which model answers, for banners.
        database_label: Where the data lives, for banners.
    """

    graph: CompiledStateGraph[Any, Any, Any, Any]
    saver: MemagentSaver
    model_label: str = ""
    database_label: str = ""

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings | None = None, *, model: BaseChatModel | None = None
    ) -> AsyncIterator[ChatSession]:
        """Opens the database and builds the graph; closes the pool on exit.

        Args:
            settings: Defaults to ``Settings.from_env()``.
            model: Overrides the configured model (tests pass a fake one).
        """
        settings = settings or Settings.from_env()
        url = resolve_database_url(settings)
        if model is None:
            model, label = load_model(settings)
        else:
            label = type(model).__name__
        async with open_saver(settings, database_url=url) as saver:
            graph = make_graph(model, checkpointer=saver)
            yield cls(graph, saver, label, describe_database(settings))

    async def stream(self, thread_id: str, text: str) -> AsyncIterator[str]:
        """Runs one turn and yields the agent's reply as it is produced.

        Raises:
            MessageRejectedError: The message is empty or too long.
            AdminError: The thread id cannot be stored.
            ThreadBusyError: Another turn kept the thread busy for too long.
        """
        check_thread_id(thread_id)
        text = check_message(text)
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        async with self.saver.thread_lease(thread_id):
            async for chunk, meta in self.graph.astream(
                {"messages": [HumanMessage(text)]}, config, stream_mode="messages"
            ):
                if (
                    isinstance(chunk, AIMessageChunk | AIMessage)
                    and isinstance(meta, dict)
                    and meta.get("langgraph_node") in REPLYING_NODES
                    and chunk.text
                ):
                    yield chunk.text

    async def send(self, thread_id: str, text: str) -> str:
        """Runs one turn and returns the agent's whole reply."""
        return "".join([part async for part in self.stream(thread_id, text)])
