"""The thread timeline: one entry per turn, plus the memory changes between them.

A turn's entry points at its *rewind point*: the ``input`` checkpoint langgraph writes
before applying the user's message, whose state is the conversation just before that
message. Rewinding there undoes the turn and everything after it.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from agent.memory.entries import TimelineEntry, entry_from
from agent.memory.store import ThreadStore
from agent.prompts import UNDO_HINT

DEFAULT_TIMELINE_LIMIT = 20
MAX_TIMELINE_LIMIT = 200
UNDO_LOOKBACK = 8
"""Timeline entries enough to find the change "undo" means."""


async def read_timeline(
    saver: BaseCheckpointSaver[Any], thread_id: str, limit: int = DEFAULT_TIMELINE_LIMIT
) -> list[TimelineEntry]:
    """The newest ``limit`` entries on the head's branch of a thread, newest first.

    The walk follows parent links from the head, so after a rewind the abandoned
    branch is not listed (its ids still work with ``rewind_to``). Savers that know a
    cheaper way (memagent's Postgres saver reads no message blobs) provide
    ``ThreadStore.atimeline``; any other langgraph saver is walked through ``aget_tuple``.
    """
    limit = max(1, min(limit, MAX_TIMELINE_LIMIT))
    if isinstance(saver, ThreadStore):
        return await saver.atimeline(thread_id, limit)
    found: list[TimelineEntry] = []
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    item = await saver.aget_tuple(config)
    while item is not None and len(found) < limit:
        turn_input = next(
            (value for _, channel, value in item.pending_writes or [] if channel == "messages"),
            None,
        )
        parent = item.parent_config["configurable"]["checkpoint_id"] if item.parent_config else None
        entry = entry_from(
            item.config["configurable"]["checkpoint_id"],
            parent,
            item.checkpoint.get("ts"),
            item.metadata,
            turn_input,
        )
        if entry is not None:
            found.append(entry)
        item = await saver.aget_tuple(item.parent_config) if item.parent_config else None
    return found


def before_run(entries: list[TimelineEntry], run_id: str | None) -> list[TimelineEntry]:
    """The entries written before the run ``run_id``, for a tool that runs inside it.

    langgraph saves a run's checkpoints in the background while the run goes on, so a
    tool reading the timeline may or may not find its own turn there yet. Leaving the
    run's own entries out gives the same answer either way. Without a run id (a graph
    not built by ``make_graph``), the newest entry is taken to be the current turn.
    """
    if run_id is None:
        return entries[1:]
    return [entry for entry in entries if entry.run_id != run_id]


def undo_target(entries: list[TimelineEntry]) -> str | None:
    """Where "undo" goes: the point just before the newest change on this branch.

    A turn is undone by returning to its rewind point. A forget made out of band is
    undone by returning to the checkpoint before it; one the model made is undone
    with the turn that asked for it, which comes next. A rewind's own target is
    skipped, because the thread is already there; what came before it is the change
    to undo.

    Args:
        entries: The branch's timeline, newest first, without the turn asking to undo.
    """
    already_at: set[str] = set()
    for entry in entries:
        if entry.removed:  # retention's cut: nothing older can be returned to
            return None
        kind = entry.event_kind
        if kind is not None and kind.moves_head:
            already_at.add(entry.rewound_to or "")
        elif entry.checkpoint_id in already_at:
            continue
        elif entry.kind == "turn":
            return entry.checkpoint_id
        elif not entry.in_turn:
            return entry.parent_id
    return None


MODEL_REWIND_HINT = "Pass an id to rewind_to to return to the point before that turn."
CHAT_REWIND_HINT = "/rewind ID returns to the point before that turn."


def render_timeline(
    entries: list[TimelineEntry], *, undo: str | None = None, rewind_hint: str = MODEL_REWIND_HINT
) -> str:
    """The timeline as the model (and the chat's ``/timeline``) reads it.

    Args:
        entries: Newest first.
        undo: Where "undo" would go, added as a last line for the model to use.
        rewind_hint: How the reader goes back to an id: the model has the ``rewind_to``
            tool, a person in the chat has ``/rewind``; each is told its own way.
    """
    if not entries:
        return "This conversation has no earlier turns yet."
    lines = [f"Newest first. {rewind_hint}"]
    for entry in entries:
        when = entry.at.strftime("%Y-%m-%d %H:%M:%S") if entry.at else "?"
        what = f"before {entry.label}" if entry.kind == "turn" else f"[{entry.label}]"
        lines.append(f"{entry.checkpoint_id}  {when}  {what}")
    if undo:
        lines.append(UNDO_HINT + undo)
    return "\n".join(lines)
