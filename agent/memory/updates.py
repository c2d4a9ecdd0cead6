"""The state updates that change memory, shared by the model's tools and ``tools.admin``.

A forget, a rewind or a detail forget is a state update (``forget_update``,
``rewind_update``, ``forget_details_update``) applied as the ``apply_memory`` node
(``agent.memory.node``): inside a run by the graph after the tool step, outside one by
``tools.admin`` through langgraph's ``aupdate_state``. Both routes write the same
checkpoint, because both go through the same node of the same graph shape
(``agent.graph.chat_graph_builder``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, RemoveMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from agent.errors import (
    CheckpointNotFoundError,
    NothingToEraseError,
    NotPersistentError,
    QuoteNotFoundError,
)
from agent.memory.events import FORGET, FORGOT_DETAIL, REWIND
from agent.memory.store import ThreadStore
from agent.memory.summary import (
    SummaryChains,
    is_removed_summary,
    is_summary,
    removed_summary,
)
from agent.memory.timeline import UNDO_LOOKBACK, read_timeline
from agent.prompts import (
    ERASE_QUESTION,
    FORGET_CONFIRMATION,
    FORGET_DETAILS_CONFIRMATION,
    REMOVED_MARKER,
    REWIND_CONFIRMATION,
)
from agent.redaction import quote_pattern, replaced_spans, scrub_message
from agent.state import MemoryEvent
from agent.validation import parse_checkpoint_id


def run_saver(config: RunnableConfig) -> BaseCheckpointSaver[Any]:
    """The saver of the run that ``config`` belongs to.

    Raises:
        NotPersistentError: The graph runs without persistence, so there is no memory
            to manage.
    """
    saver = config.get("configurable", {}).get(CONFIG_KEY_CHECKPOINTER)
    if not isinstance(saver, BaseCheckpointSaver):
        raise NotPersistentError()
    return saver


def run_thread_id(config: RunnableConfig) -> str:
    """The thread of the run: the only thread a memory tool may act on."""
    return str(config["configurable"]["thread_id"])


def root_config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    """The config that addresses a thread's root namespace (optionally one checkpoint)."""
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def load_rewind_target(
    saver: BaseCheckpointSaver[Any], thread_id: str, raw_checkpoint_id: str
) -> tuple[str, list[AnyMessage]]:
    """Finds a root checkpoint of ``thread_id`` and returns its id and messages.

    Raises:
        InvalidCheckpointIdError: The id is not a UUID.
        CheckpointNotFoundError: The id is unknown, of another thread or outside the
            root namespace (all look the same from here: not in this thread); from
            memagent's saver, ``CheckpointRetainedError`` when retention removed it.
    """
    checkpoint_id = parse_checkpoint_id(raw_checkpoint_id)
    found = await saver.aget_tuple(root_config(thread_id, checkpoint_id))
    if found is None or found.config["configurable"].get("checkpoint_id") != checkpoint_id:
        raise CheckpointNotFoundError(thread_id, checkpoint_id)
    messages = list(found.checkpoint["channel_values"].get("messages") or [])
    return checkpoint_id, provider_valid(messages)


def provider_valid(messages: list[AnyMessage]) -> list[AnyMessage]:
    """Drops tool calls without results and results without calls.

    A rewind point (as the timeline lists them) is always a finished conversation,
    but ``rewind_to`` also accepts a checkpoint taken mid-turn, whose last AI message
    may still wait for tool results; no chat provider accepts that.
    """
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    called: set[str] = set()
    kept: list[AnyMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            if not all(call["id"] in answered for call in message.tool_calls):
                continue
            called.update(str(call["id"]) for call in message.tool_calls)
        if isinstance(message, ToolMessage) and message.tool_call_id not in called:
            continue
        kept.append(message)
    return kept


def forget_update(reason: str | None) -> dict[str, Any]:
    """The state update that forgets a thread."""
    event: MemoryEvent = {"kind": FORGET.name, "timestamp": int(time.time())}
    if reason:
        event["reason"] = reason
    return {
        "messages": [
            RemoveMessage(id=REMOVE_ALL_MESSAGES),
            AIMessage(content=FORGET_CONFIRMATION),
        ],
        "memory_event": event,
        "memory_requests": None,
    }


def rewind_update(target: str, messages: list[AnyMessage]) -> dict[str, Any]:
    """The state update that rewinds a thread to ``target``, whose messages are given."""
    event: MemoryEvent = {"kind": REWIND.name, "timestamp": int(time.time()), "target": target}
    return {
        "messages": [
            RemoveMessage(id=REMOVE_ALL_MESSAGES),
            *messages,
            AIMessage(content=REWIND_CONFIRMATION),
        ],
        "memory_event": event,
        "memory_requests": None,
    }


def forget_details_update(
    messages: list[AnyMessage],
    quotes: list[str],
    reason: str | None = None,
    summaries: Collection[str] = (),
) -> dict[str, Any]:
    """The state update that replaces each quote by the marker in the conversation.

    Every message holding a quote (in its text, a tool result or a tool call's
    arguments) is replaced by a copy with the same id, so ``add_messages`` puts it
    where the original was and the conversation keeps its shape; each summary made
    from the detail (``summaries``, from ``summaries_made_from``) is replaced so by
    its marker (``removed_summary``), as it may restate the detail in other words.
    Earlier checkpoints keep the originals (undo by rewinding).

    Raises:
        QuoteNotFoundError: No message holds any quote and no summary was made from
            one (nothing should be written).
    """
    pattern = quote_pattern(quotes)
    changed: list[BaseMessage] = []
    for message in messages:
        if message.id in summaries and is_summary(message):
            changed.append(removed_summary(message))
        elif new := scrub_message(message, pattern):
            changed.append(new)
    if not changed:
        raise QuoteNotFoundError()
    event: MemoryEvent = {
        "kind": FORGOT_DETAIL.name,
        "timestamp": int(time.time()),
        "count": len(changed),
    }
    if reason:
        event["reason"] = pattern.sub(REMOVED_MARKER, reason)
    return {
        "messages": [*changed, AIMessage(content=FORGET_DETAILS_CONFIRMATION)],
        "memory_event": event,
        "memory_requests": None,
    }


async def summaries_made_from(
    saver: BaseCheckpointSaver[Any],
    thread_id: str,
    messages: Sequence[AnyMessage],
    quotes: list[str],
) -> set[str]:
    """The ids of the head's summaries made from a message that held a quote.

    A summary is made from a detail when any message it stands for (through its chain,
    ``read_summary_chains``) held a quote (matched as ``agent.redaction`` matches), in
    any stored version: those messages left the head when it was made, so their rows
    are read (``amessages_by_id``). A saver that is not a ``ThreadStore`` cannot read
    them cheaply, so there every summary in the head counts as made from the detail: a
    summary too many becomes a marker (and comes back on undo), never one too few keeps
    the detail.
    """
    summaries = [m for m in messages if is_summary(m) and not is_removed_summary(m)]
    if not summaries:
        return set()
    if not isinstance(saver, ThreadStore):
        return {str(m.id) for m in summaries}
    chains = await read_summary_chains(saver, thread_id, summaries)
    covered = sorted({id_ for m in summaries for id_ in chains.stands_for(m)})
    pattern = quote_pattern(quotes)
    held = {
        str(m.id)
        for m in await saver.amessages_by_id(thread_id, covered)
        if scrub_message(m, pattern) is not None
    }
    return {str(m.id) for m in summaries if chains.made_from(m, held)}


async def read_summary_chains(
    store: ThreadStore, thread_id: str, summaries: Sequence[BaseMessage]
) -> SummaryChains:
    """The chains of ``summaries``: their predecessors' stored rows, link by link.

    One read per link (``amessages_by_id``, by the message-id index), since a link is
    inside the encoded message and the next id is known only once a row is decoded. A
    forget reads them once; a turn never does. A link whose row retention removed ends
    its chain (``SummaryChains``).
    """
    chains = SummaryChains(summaries)
    asked: set[str] = set()
    while missing := chains.unresolved() - asked:
        asked |= missing
        chains.add(await store.amessages_by_id(thread_id, sorted(missing)))
    return chains


async def last_forgotten_details(saver: BaseCheckpointSaver[Any], thread_id: str) -> list[str]:
    """What the newest soft ``forget_details`` on the head's branch replaced by the marker.

    After "forget my address" the conversation no longer holds the address, so neither
    the model nor the user's "erase it for good" can name it. The checkpoint before
    that forget still does: each marker in a changed message stands for the text at the
    same place in the message's version there.

    Raises:
        NothingToEraseError: No detail was forgotten on this branch (or it was erased
            already), so there is nothing to name.
    """
    entries = await read_timeline(saver, thread_id, UNDO_LOOKBACK)
    forgot = next((e for e in entries if e.kind == FORGOT_DETAIL.name), None)
    if forgot is None or not forgot.undoable or forgot.parent_id is None:
        raise NothingToEraseError()
    after = await saver.aget_tuple(root_config(thread_id, forgot.checkpoint_id))
    before = await saver.aget_tuple(root_config(thread_id, forgot.parent_id))
    if after is None or before is None:
        raise NothingToEraseError()
    earlier = {m.id: m.text for m in before.checkpoint["channel_values"].get("messages", [])}
    quotes: dict[str, None] = {}
    for message in after.checkpoint["channel_values"].get("messages", []):
        if REMOVED_MARKER in message.text and message.id in earlier:
            quotes.update(dict.fromkeys(replaced_spans(earlier[message.id], message.text)))
    if not quotes:
        raise NothingToEraseError()
    return list(quotes)


def erase_request(thread_id: str, quotes: list[str]) -> dict[str, Any]:
    """What the human is shown before anything is erased for good (an ``interrupt`` value)."""
    return {
        "action": "erase_for_good",
        "question": ERASE_QUESTION,
        "thread_id": thread_id,
        "quotes": quotes,
    }


def confirmed(answer: Any) -> bool:
    """Whether a resume value is an explicit yes (``True`` or "yes"/"y"); anything else is no."""
    if isinstance(answer, dict):
        answer = answer.get("confirm", answer.get("answer"))
    if isinstance(answer, bool):
        return answer
    return isinstance(answer, str) and answer.strip().lower() in {"yes", "y"}
