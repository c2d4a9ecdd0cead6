"""Every branch of a thread, for people: what ``memagent timeline`` and the web page draw.

Unlike the timeline (the head's branch, for the model), the tree reads the links of
every root checkpoint of the thread, so its cost grows with the thread; it still reads
no message blob, only the user messages of the turns shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import ThreadNotFoundError
from agent.memory.entries import TimelineEntry, entry_from
from agent.memory.store import ThreadStore
from agent.memory.timeline import DEFAULT_TIMELINE_LIMIT
from agent.validation import check_thread_id


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One point of a thread's tree.

    Attributes:
        entry: The timeline entry (a turn or a memory change).
        parent: The point this one follows, or ``None`` for a root or when that point
            is not shown. A rewind to the point before a turn follows what came before
            that turn, so the turn and the rewind are two branches.
        on_head_branch: Whether the thread's current conversation goes through it.
        undo: For an undoable memory change, the checkpoint to rewind to to undo it:
            the point before the turn that asked for it, or (made out of band) the
            checkpoint just before it, which is not itself a point of the tree. A
            detail erased for good has none: no rewind brings it back.
    """

    entry: TimelineEntry
    parent: str | None
    on_head_branch: bool
    undo: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry's JSON plus the tree fields."""
        return {
            **self.entry.to_json(),
            "tree_parent": self.parent,
            "on_head_branch": self.on_head_branch,
            "undo": self.undo,
        }


@dataclass(frozen=True, slots=True)
class ThreadTree:
    """Every branch of a thread.

    Attributes:
        thread_id: The thread.
        head: The checkpoint the next turn continues from.
        entries: The newest points of all branches, newest first.
        hidden: How many older points the limit left out.
    """

    thread_id: str
    head: str
    entries: list[TreeEntry]
    hidden: int = 0

    def to_json(self) -> dict[str, Any]:
        """What ``memagent timeline --json`` prints and the web page draws."""
        return {
            "thread_id": self.thread_id,
            "head": self.head,
            "hidden": self.hidden,
            "entries": [node.to_json() for node in self.entries],
        }


def _is_turn_point(metadata: dict[str, Any] | None) -> bool:
    return bool(metadata) and metadata.get("source") == "input"  # type: ignore[union-attr]


async def read_tree(
    store: ThreadStore, thread_id: str, *, limit: int = DEFAULT_TIMELINE_LIMIT
) -> ThreadTree:
    """All branches of a thread, newest ``limit`` points; set-aside branches too.

    Raises:
        RequestError: Bad thread id, or a thread with no saved conversation.
    """
    check_thread_id(thread_id)
    links = await store.atree_links(thread_id)
    if not links:
        raise ThreadNotFoundError(thread_id)
    parent_of = {row["checkpoint_id"]: row["parent_checkpoint_id"] for row in links}
    points = {row["checkpoint_id"]: row for row in links if row["metadata"] is not None}
    # The nearest point at or above each checkpoint; parents are older, so one pass.
    nearest: dict[str, str | None] = {}
    for row in links:
        cid = row["checkpoint_id"]
        nearest[cid] = cid if cid in points else nearest.get(row["parent_checkpoint_id"])

    def above(cid: str) -> str | None:
        parent = parent_of.get(cid)
        return nearest.get(parent) if parent else None

    tree_parent: dict[str, str | None] = {}
    for cid, row in points.items():
        target = row["metadata"].get("rewound_to")
        if target and target in points and _is_turn_point(points[target]["metadata"]):
            # Back to before that turn's message: a sibling of the turn, not its child.
            tree_parent[cid] = above(target)
        elif target:
            tree_parent[cid] = nearest.get(target, above(cid))
        else:
            tree_parent[cid] = above(cid)

    head = links[-1]["checkpoint_id"]
    on_branch: set[str] = set()
    walk = nearest.get(head)
    while walk is not None and walk not in on_branch:
        on_branch.add(walk)
        walk = tree_parent.get(walk)

    shown = sorted(points, reverse=True)[: max(1, limit)]
    shown_set = set(shown)
    turns = [cid for cid in shown if _is_turn_point(points[cid]["metadata"])]
    texts = await store.aturn_inputs(thread_id, turns)
    entries = []
    for cid in shown:
        row = points[cid]
        entry = entry_from(
            cid, row["parent_checkpoint_id"], row["ts"], row["metadata"], texts.get(cid)
        )
        if entry is None:  # pragma: no cover - every point makes an entry
            continue
        parent = tree_parent[cid]
        undo = None
        if entry.kind != "turn" and entry.undoable:
            undo = parent if entry.in_turn else entry.parent_id
        shown_parent = parent if parent in shown_set else None
        entries.append(TreeEntry(entry, shown_parent, cid in on_branch, undo))
    return ThreadTree(thread_id, head, entries, hidden=len(points) - len(shown))
