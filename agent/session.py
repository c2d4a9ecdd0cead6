"""Running chat turns from code and the CLI: validated input, one turn per thread at a time.

``ChatSession`` is the Python entry point: open it with ``ChatSession.open()`` (it
brings the database, the model and the graph), then ``await session.send(thread, text)``
or stream with ``session.stream(thread, text)``. ``langgraph dev`` does not go through
here; the server has its own per-thread run queue.

If the database goes away during a turn (a restart, a killed connection that the pool
cannot replace in time), the turn ends with ``DatabaseUnavailableError``, never a raw
driver error. Sending the same message again to that thread then finishes the
interrupted turn from its last checkpoint instead of adding the message a second
time, so the thread never holds a half-written turn or a repeated message.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from agent.errors import DatabaseUnavailableError
from agent.graph import ChatGraph, make_graph
from agent.model import load_model
from agent.settings import Settings
from agent.store.database import describe_database, open_saver, resolve_database_url
from agent.store.saver import MemagentSaver
from agent.validation import check_message, check_thread_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InterruptedTurn:
    """A turn the database interrupted: its message and the run id its checkpoints carry."""

    text: str
    run_id: str


def _with_run_id(config: RunnableConfig, run_id: str) -> RunnableConfig:
    return {**config, "metadata": {**config.get("metadata", {}), "run_id": run_id}}


def new_thread_id() -> str:
    """A fresh thread id."""
    return str(uuid.uuid4())


@dataclass
class ChatSession:
    """A chat graph on memagent's saver.

    Attributes:
        graph: The compiled graph, with ``saver`` as its checkpointer.
        saver: Where the turns persist.
        model: The chat model (it also writes the summaries of ``/compact``).
        model_label: Which model answers, for banners.
        database_label: Where the data lives, for banners.
    """

    graph: ChatGraph
    saver: MemagentSaver
    model: BaseChatModel
    model_label: str = ""
    database_label: str = ""
    _interrupted: dict[str, InterruptedTurn] = field(default_factory=dict, repr=False)
    """Per thread, the turn the database interrupted (see ``stream``)."""

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
            graph = make_graph(model, checkpointer=saver, context_tokens=settings.context_tokens)
            yield cls(graph, saver, model, label, describe_database(settings))

    @property
    def context_tokens(self) -> int | None:
        """The most tokens one model call receives (the graph's context budget)."""
        return self.graph.context_tokens

    async def stream(self, thread_id: str, text: str) -> AsyncIterator[str]:
        """Runs one turn and yields the agent's reply as it is produced.

        If the database connection breaks before any of the reply was shown (a
        connection the server closed an instant before the turn took it, a restart),
        the turn is retried once, resuming from what it had saved. Otherwise a turn
        the database interrupted is finished, not repeated, when the same message is
        sent to the thread again (see ``_turn_input``). A different message starts a
        new turn as usual.

        Raises:
            MessageRejectedError: The message is empty or too long.
            InvalidThreadIdError: The thread id cannot be stored.
            ThreadBusyError: Another turn kept the thread busy for too long.
            DatabaseUnavailableError: The database went away; nothing is lost, and
                sending the same message again finishes the turn.
        """
        check_thread_id(thread_id)
        text = check_message(text)
        shown = False
        try:
            async for part in self._run_turn(thread_id, text):
                shown = True
                yield part
        except DatabaseUnavailableError:
            if shown:  # a retry could show the same words twice; let the user resend
                raise
            logger.info("database connection lost during a turn on %r; retrying once", thread_id)
            async for part in self._run_turn(thread_id, text):
                yield part

    async def _run_turn(self, thread_id: str, text: str) -> AsyncIterator[str]:
        """One attempt at a turn; a database failure is recorded for the next attempt."""
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        run_config = config
        try:
            # Taken by the turn's first read, in its round trip (``ThreadLeases.hold``).
            async with self.saver.thread_lease(thread_id, with_first_read=True):
                turn_input, run_config = await self._turn_input(config, text)
                replied = False
                async for text_part in _reply_parts(
                    self.graph.astream(turn_input, run_config, stream_mode="messages")
                ):
                    replied = True
                    yield text_part
                self._interrupted.pop(thread_id, None)
                if turn_input is None and not replied:
                    # The reply was saved before the interruption; the resume re-ran
                    # nothing that speaks, so show the saved reply.
                    yield await self._last_reply(config)
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            if isinstance(error, DatabaseUnavailableError):
                raise
            run_id = (run_config.get("metadata") or {}).get("run_id")
            if run_id:  # else the turn never started and an earlier record still holds
                self._interrupted[thread_id] = InterruptedTurn(text, run_id)
            raise DatabaseUnavailableError(
                "The database could not be reached, so this turn did not finish. "
                "Send the same message again once it is back; the turn will resume."
            ) from error

    async def _turn_input(
        self, config: RunnableConfig, text: str
    ) -> tuple[dict[str, Any] | None, RunnableConfig]:
        """The graph input and run config for this turn; input ``None`` resumes.

        Every turn carries a run id, which langgraph copies into the metadata of each
        checkpoint the turn writes. Only a thread whose last turn this session saw
        interrupted is inspected, so a normal turn costs no extra read. When ``text``
        is the interrupted turn's message, the thread's head tells how far it got:
        nothing saved (the head is from an earlier run) starts the turn again; only
        its input checkpoint saved starts it again from the checkpoint before, so the
        empty turn is not part of the conversation; anything later resumes it where
        it stopped, or, if it had finished, replays nothing and shows the saved reply.
        """
        message = {"messages": [HumanMessage(text)]}
        interrupted = self._interrupted.get(config["configurable"]["thread_id"])
        if interrupted is None or interrupted.text != text:
            return message, _with_run_id(config, str(uuid.uuid4()))
        state = await self.graph.aget_state(config)
        metadata = state.metadata or {}
        if metadata.get("run_id") != interrupted.run_id:
            return message, _with_run_id(config, interrupted.run_id)
        if metadata.get("source") == "input" and state.parent_config:
            return message, _with_run_id(state.parent_config, interrupted.run_id)
        return None, _with_run_id(config, interrupted.run_id)

    async def _last_reply(self, config: RunnableConfig) -> str:
        state = await self.graph.aget_state(config)
        for message in reversed(state.values.get("messages", [])):
            if isinstance(message, AIMessage) and message.text:
                return message.text
        return ""

    async def pending_question(self, thread_id: str) -> dict[str, Any] | None:
        """What a paused turn asks the user (an ``interrupt`` value), or ``None``.

        A turn pauses when the model asked to erase a detail for good: nothing is
        erased until ``resume`` answers yes.
        """
        state = await self.graph.aget_state({"configurable": {"thread_id": thread_id}})
        for pending in state.interrupts:
            if isinstance(pending.value, dict):
                return pending.value
        return None

    async def resume(self, thread_id: str, answer: bool) -> str:
        """Answers a paused turn's question and finishes the turn; returns the reply."""
        check_thread_id(thread_id)
        config = _with_run_id({"configurable": {"thread_id": thread_id}}, str(uuid.uuid4()))
        async with self.saver.thread_lease(thread_id, with_first_read=True):
            events = self.graph.astream(Command(resume=answer), config, stream_mode="messages")
            return "".join([part async for part in _reply_parts(events)])

    async def send(self, thread_id: str, text: str) -> str:
        """Runs one turn and returns the agent's whole reply."""
        return "".join([part async for part in self.stream(thread_id, text)])


async def _reply_parts(events: AsyncIterator[Any]) -> AsyncIterator[str]:
    """The text the user should see from a ``stream_mode="messages"`` run.

    The model's tokens pass through as they come. ``apply_memory`` is different: its
    update lists a rewind's restored messages before its confirmation, and langgraph
    streams every message a node returns that the node's input did not hold, so the
    restored (old) replies would be shown again as if new. Only the node's last
    message, the confirmation, is the reply.
    """
    confirmation = ""
    async for chunk, meta in events:
        if not isinstance(chunk, AIMessageChunk | AIMessage) or not isinstance(meta, dict):
            continue
        node = meta.get("langgraph_node")
        if node == "apply_memory":
            confirmation = chunk.text
            continue
        if confirmation:
            yield confirmation
            confirmation = ""
        if node == "agent" and chunk.text:
            yield chunk.text
    if confirmation:
        yield confirmation
