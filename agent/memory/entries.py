"""Timeline entries: one per turn, plus one per memory change, read from checkpoint metadata.

A turn's entry points at its *rewind point*: the ``input`` checkpoint langgraph writes
before applying the user's message, whose state is the conversation just before that
message. A memory change's entry is the checkpoint its event kind marked
(``agent.memory.events``), with that kind's facts and label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import CheckpointMetadata

from agent.memory.events import EVENT_KINDS, EventKind, Facts, kind_of

PREVIEW_CHARS = 80
TURN_SYMBOL = "●"
"""How the CLI's tree and the web page mark a turn."""
TOMBSTONE_KEY = "removed_by_retention"
"""The metadata key under which the store hands back a memory change retention cut
(``tombstone``): the change's kind, facts and whether a turn made it."""
REMOVED_LABEL = "removed by retention"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a thread's timeline.

    Attributes:
        checkpoint_id: Pass this to ``rewind_to`` to return to this point.
        parent_id: The checkpoint this one follows; a rewind's parent is its target,
            which is how the branches of a thread are drawn.
        at: When the checkpoint was written.
        kind: ``turn`` (the point just before a user message) or the name of a memory
            event kind (``agent.memory.events``: ``forget``, ``rewind``,
            ``forget_details``, ...).
        preview: The first characters of the turn's user message.
        reason: Why the change was made, if the caller said.
        in_turn: The change was made by a tool during a turn (rather than from the
            CLI or code); that turn's own entry follows it.
        run_id: The run (turn) that wrote the checkpoint, when the run had an id.
        facts: What the change's metadata says (its kind's ``read``): a rewind's
            ``rewound_to``, how many messages a detail forget changed (``count``) and
            whether it was ``erased`` for good, ...
        removed: A tombstone: the change is older than what retention kept, so its
            checkpoint is gone and nothing can return to it; it stays listed so the
            history still says a forget (say) happened.
    """

    checkpoint_id: str
    parent_id: str | None
    at: datetime | None
    kind: str
    preview: str = ""
    reason: str | None = None
    in_turn: bool = False
    run_id: str | None = None
    facts: Facts = field(default_factory=dict)
    removed: bool = False

    @property
    def event_kind(self) -> EventKind | None:
        """The memory event kind of this entry; ``None`` for a turn."""
        return EVENT_KINDS.get(self.kind)

    @property
    def rewound_to(self) -> str | None:
        """The checkpoint a rewind returned to."""
        target = self.facts.get("rewound_to")
        return str(target) if target else None

    @property
    def label(self) -> str:
        """The entry in words for people: the turn's message, or what the change did."""
        kind = self.event_kind
        label = f'"{self.preview}"' if kind is None else kind.describe(self.facts, self.reason)
        return f"{label} ({REMOVED_LABEL})" if self.removed else label

    @property
    def symbol(self) -> str:
        """The mark the CLI's tree and the web page show before the entry."""
        kind = self.event_kind
        return TURN_SYMBOL if kind is None else kind.symbol

    @property
    def undoable(self) -> bool:
        """Whether rewinding to before this change takes it back (a turn: always)."""
        kind = self.event_kind
        return not self.removed and (kind is None or kind.undoable(self.facts))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 text), facts inline, label and symbol."""
        return {
            "checkpoint_id": self.checkpoint_id,
            "parent_id": self.parent_id,
            "at": self.at.isoformat() if self.at else None,
            "kind": self.kind,
            "preview": self.preview,
            "reason": self.reason,
            "in_turn": self.in_turn,
            "run_id": self.run_id,
            **self.facts,
            "removed": self.removed,
            "label": self.label,
            "symbol": self.symbol,
        }


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
    """Builds the entry for a checkpoint, or ``None`` when it is not a timeline point.

    A point is a checkpoint marked by a memory event kind, or a turn's ``input``
    checkpoint: the same rule as ``agent.store.sql.TIMELINE_POINT``.
    """
    at = datetime.fromisoformat(ts) if ts else None
    stone: dict[str, Any] | None = metadata.get(TOMBSTONE_KEY)  # type: ignore[assignment]
    if stone is not None:
        return TimelineEntry(
            checkpoint_id,
            parent_id,
            at,
            str(stone["kind"]),
            in_turn=bool(stone.get("in_turn")),
            facts=dict(stone.get("facts") or {}),
            removed=True,
        )
    run_id = str(metadata["run_id"]) if metadata.get("run_id") else None
    kind = kind_of(metadata)
    if kind is not None:
        reason = metadata.get("reason")
        return TimelineEntry(
            checkpoint_id,
            parent_id,
            at,
            kind.name,
            reason=str(reason) if reason else None,
            in_turn=metadata.get("source") == "loop",
            run_id=run_id,
            facts=kind.read(metadata),
        )
    if metadata.get("source") == "input":
        text = first_user_text(turn_input)
        return TimelineEntry(
            checkpoint_id, parent_id, at, "turn", preview=preview_text(text), run_id=run_id
        )
    return None


def tombstone(metadata: CheckpointMetadata | dict[str, Any]) -> Facts | None:
    """What stays of a memory change's checkpoint when retention removes it, or ``None``.

    Its kind, its facts (counts and ids, as its kind reads them) and whether a turn
    made it; not its reason, which is the user's words, nor anything else the
    checkpoint held. ``entry_from`` turns it back into a (removed) entry.
    """
    kind = kind_of(metadata)
    if kind is None:
        return None
    return {
        "kind": kind.name,
        "facts": kind.read(metadata),
        "in_turn": metadata.get("source") == "loop",
    }
