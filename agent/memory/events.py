"""The registry of memory event kinds: the one place that says what each kind is.

A memory change (forget, rewind, forget a detail, ...) leaves one checkpoint whose
metadata carries the kind's marker. Everything that reads or writes those markers
reads them from here: the saver's stamping (``agent.store.metadata``), the SQL that
finds timeline points (``agent.store.sql``, one shared predicate over
``MEMORY_METADATA_KEYS``), the timeline and tree entries and their labels for people
(``agent.memory.timeline``, the CLI, the web page through its API), and the undo rule.

A new kind is one ``EventKind`` in ``EVENT_KINDS`` plus the module that builds its
update (docs/architecture.md, "Adding a memory operation").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Facts = dict[str, Any]
"""What a checkpoint's metadata says about its change, as the timeline entry keeps it."""


def _no_facts(metadata: Mapping[str, Any]) -> Facts:
    return {}


def _count(metadata: Mapping[str, Any], key: str) -> int:
    try:
        return int(str(metadata.get(key) or 0))
    except ValueError:  # a hand-edited row: show the change, not a traceback
        return 0


@dataclass(frozen=True, slots=True)
class EventKind:
    """One kind of memory change.

    Attributes:
        name: The ``MemoryEvent``/``MemoryRequest`` kind, the timeline entry's kind and
            the audit operation.
        metadata_key: The checkpoint-metadata key that marks a checkpoint of this kind;
            its presence is what makes the checkpoint a timeline point.
        symbol: The one-character mark the CLI's tree and the web page show.
        stamp: The metadata the change's checkpoint gets, from the event (never any
            conversation content).
        read: The facts a timeline entry keeps, from that metadata.
        describe: The label for people, from the entry's facts and reason.
        undoable: Whether rewinding to before the change takes it back (shown as the
            tree's "undo" target); from the facts.
        moves_head: The change's checkpoint is written as a child of the event's
            ``target`` (a rewind), so its fork shows in the history.
    """

    name: str
    metadata_key: str
    symbol: str
    stamp: Callable[[Mapping[str, Any]], Facts]
    describe: Callable[[Facts, str | None], str]
    read: Callable[[Mapping[str, Any]], Facts] = _no_facts
    undoable: Callable[[Facts], bool] = field(default=lambda facts: True)
    moves_head: bool = False


def _with_reason(text: str, reason: str | None) -> str:
    return f"{text} ({reason})" if reason else text


def _forgot_detail_label(facts: Facts, reason: str | None) -> str:
    done = "erased a detail for good" if facts.get("erased") else "forgot a detail"
    count = facts.get("count", 0)
    return f"{done} in {count} message(s)" if count else done


FORGET = EventKind(
    name="forget",
    metadata_key="memory_cleared",
    symbol="✂",
    stamp=lambda event: {"memory_cleared": True},
    describe=lambda facts, reason: _with_reason("forgot", reason),
)
REWIND = EventKind(
    name="rewind",
    metadata_key="rewound_to",
    symbol="↩",
    stamp=lambda event: {"rewound_to": event["target"]},
    read=lambda metadata: {"rewound_to": str(metadata["rewound_to"])},
    describe=lambda facts, reason: f"rewound to {facts.get('rewound_to', '?')}",
    undoable=lambda facts: False,
    moves_head=True,
)
FORGOT_DETAIL = EventKind(
    # The stored key predates the names: a soft detail forget is "memory_redacted" in
    # existing databases, so it stays; everywhere else it is "forgot a detail", and
    # the hard erase is "erase".
    name="forget_details",
    metadata_key="memory_redacted",
    symbol="✎",
    stamp=lambda event: {
        "memory_redacted": int(event.get("count", 0)),
        **({"memory_erased": True} if event.get("erased") else {}),
    },
    read=lambda metadata: {
        "count": _count(metadata, "memory_redacted"),
        "erased": bool(metadata.get("memory_erased")),
    },
    describe=_forgot_detail_label,
    undoable=lambda facts: not facts.get("erased"),
)


def _compacted_label(facts: Facts, reason: str | None) -> str:
    text = f"compacted {facts.get('count', 0)} message(s) into a summary"
    before, after = facts.get("tokens_before"), facts.get("tokens_after")
    return f"{text} ({before} → {after} tokens)" if before and after else text


COMPACT = EventKind(
    name="compact",
    metadata_key="memory_compacted",
    symbol="≡",
    stamp=lambda event: {
        "memory_compacted": int(event.get("count", 0)),
        "tokens_before": int(event.get("tokens_before", 0)),
        "tokens_after": int(event.get("tokens_after", 0)),
    },
    read=lambda metadata: {
        "count": _count(metadata, "memory_compacted"),
        "tokens_before": _count(metadata, "tokens_before"),
        "tokens_after": _count(metadata, "tokens_after"),
    },
    describe=_compacted_label,
)

EVENT_KINDS: Mapping[str, EventKind] = {
    kind.name: kind for kind in (FORGET, REWIND, FORGOT_DETAIL, COMPACT)
}
"""Every memory event kind by name; the order is the order a checkpoint is classified in."""

MEMORY_METADATA_KEYS: tuple[str, ...] = tuple(kind.metadata_key for kind in EVENT_KINDS.values())
"""The metadata keys that make a checkpoint a memory-change point (the SQL's parameter)."""


def kind_of(metadata: Mapping[str, Any]) -> EventKind | None:
    """The memory event kind a checkpoint's metadata marks, if any."""
    return next((k for k in EVENT_KINDS.values() if k.metadata_key in metadata), None)


def stamp(event: Mapping[str, Any]) -> Facts:
    """The metadata for the checkpoint that carries ``event``: time, marker, reason.

    The reason is the caller's few words, already free of any forgotten quote
    (``agent.memory.updates``).
    """
    kind = EVENT_KINDS[event["kind"]]
    stamped: Facts = {"timestamp": event["timestamp"], **kind.stamp(event)}
    if event.get("reason"):
        stamped["reason"] = event["reason"]
    return stamped
