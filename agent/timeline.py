"""The thread timeline: one entry per turn, plus the forgets and rewinds between them.

A turn's entry points at its *rewind point*: the ``input`` checkpoint langgraph writes
before applying the user's message, whose state is the conversation just before that
message. Rewinding there undoes the turn and everything after it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointMetadata

from agent.prompts import UNDO_HINT

PREVIEW_CHARS = 80
DEFAULT_TIMELINE_LIMIT = 20
MAX_TIMELINE_LIMIT = 200
UNDO_LOOKBACK = 8
"""Timeline entries enough to find the change "undo" means."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a thread's timeline.

    Attributes:
        checkpoint_id: Pass this to ``rewind_to`` to return to this point.
        parent_id: The checkpoint this one follows; a rewind's parent is its target,
            which is how the branches of a thread are drawn.
        at: When the checkpoint was written.
        kind: ``turn`` (the point just before a user message), ``forget``, ``rewind``
            or ``redacted`` (a ``forget_details``; ``redacted`` messages changed).
        preview: The first characters of the turn's user message.
        reason: Why the forget happened, if the caller said.
        rewound_to: The checkpoint a rewind returned to.
        in_turn: The forget or rewind was made by a tool during a turn (rather than
            from the CLI or code); that turn's own entry follows it.
        redacted: For ``redacted``, how many messages had a detail replaced.
        erased: For ``redacted``, the detail was also erased from every stored copy.
        run_id: The run (turn) that wrote the checkpoint, when the run had an id.
    """

    checkpoint_id: str
    parent_id: str | None
    at: datetime | None
    kind: Literal["turn", "forget", "rewind", "redacted"]
    preview: str = ""
    reason: str | None = None
    rewound_to: str | None = None
    in_turn: bool = False
    redacted: int = 0
    erased: bool = False
    run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 text)."""
        data = asdict(self)
        data["at"] = self.at.isoformat() if self.at else None
        return data


def preview_text(text: str) -> str:
    """Shortens a message to one line of at most ``PREVIEW_CHARS`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def first_user_text(turn_input: Any) -> str:
    """The text of the user message in a turn's ``messages`` input write."""
    messages = turn_input if isinstance(turn_input, list) else [turn_input]
    for message in messages:
        if isinstance(message, HumanMessage):
            return message.text
        if isinstance(message, dict) and message.get("role") in {"user", "human"}:
            return str(message.get("content", ""))
        if isinstance(message, str):
            return message
    return ""


def entry_from(
    checkpoint_id: str,
    parent_id: str | None,
    ts: str | None,
    metadata: CheckpointMetadata | dict[str, Any],
    turn_input: Any,
) -> TimelineEntry | None:
    """Builds the entry for a checkpoint, or ``None`` when it is not a timeline point."""
    at = datetime.fromisoformat(ts) if ts else None
    in_turn = metadata.get("source") == "loop"
    run_id = str(metadata["run_id"]) if metadata.get("run_id") else None
    if metadata.get("memory_cleared"):
        reason = metadata.get("reason")
        return TimelineEntry(
            checkpoint_id,
            parent_id,
            at,
            "forget",
            reason=str(reason) if reason else None,
            in_turn=in_turn,
            run_id=run_id,
        )
    if "memory_redacted" in metadata:
        reason = metadata.get("reason")
        return TimelineEntry(
            checkpoint_id,
            parent_id,
            at,
            "redacted",
            reason=str(reason) if reason else None,
            in_turn=in_turn,
            redacted=int(str(metadata.get("memory_redacted") or 0)),
            erased=bool(metadata.get("memory_erased")),
            run_id=run_id,
        )
    if rewound_to := metadata.get("rewound_to"):
        return TimelineEntry(
            checkpoint_id,
            parent_id,
            at,
            "rewind",
            rewound_to=str(rewound_to),
            in_turn=in_turn,
            run_id=run_id,
        )
    if metadata.get("source") == "input":
        text = first_user_text(turn_input)
        return TimelineEntry(
            checkpoint_id, parent_id, at, "turn", preview=preview_text(text), run_id=run_id
        )
    return None


async def read_timeline(
    saver: BaseCheckpointSaver[Any], thread_id: str, limit: int = DEFAULT_TIMELINE_LIMIT
) -> list[TimelineEntry]:
    """The newest ``limit`` entries on the head's branch of a thread, newest first.

    The walk follows parent links from the head, so after a rewind the abandoned
    branch is not listed (its ids still work with ``rewind_to``). Savers that know a
    cheaper way (memagent's Postgres saver reads no message blobs) provide
    ``atimeline``; any other langgraph saver is walked through ``aget_tuple``.
    """
    limit = max(1, min(limit, MAX_TIMELINE_LIMIT))
    own = getattr(saver, "atimeline", None)
    if own is not None:
        entries: list[TimelineEntry] = await own(thread_id, limit)
        return entries
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
        if entry.kind == "rewind":
            already_at.add(entry.rewound_to or "")
        elif entry.checkpoint_id in already_at:
            continue
        elif entry.kind == "turn":
            return entry.checkpoint_id
        elif not entry.in_turn:
            return entry.parent_id
    return None


def redaction_label(entry: TimelineEntry) -> str:
    """What a detail forget did, in words: soft or for good, and in how many messages."""
    done = "erased a detail for good" if entry.erased else "forgot a detail"
    return f"{done} in {entry.redacted} message(s)" if entry.redacted else done


def render_timeline(entries: list[TimelineEntry], *, undo: str | None = None) -> str:
    """The timeline as the model (and the chat's ``/timeline``) reads it.

    Args:
        entries: Newest first.
        undo: Where "undo" would go, added as a last line for the model to use.
    """
    if not entries:
        return "This conversation has no earlier turns yet."
    lines = ["Newest first. Pass an id to rewind_to to return to the point before that turn."]
    for entry in entries:
        when = entry.at.strftime("%Y-%m-%d %H:%M:%S") if entry.at else "?"
        if entry.kind == "turn":
            what = f'before "{entry.preview}"'
        elif entry.kind == "forget":
            what = "[forgot]" + (f" reason: {entry.reason}" if entry.reason else "")
        elif entry.kind == "redacted":
            what = f"[{redaction_label(entry)}]"
        else:
            what = f"[rewound to {entry.rewound_to}]"
        lines.append(f"{entry.checkpoint_id}  {when}  {what}")
    if undo:
        lines.append(UNDO_HINT + undo)
    return "\n".join(lines)
