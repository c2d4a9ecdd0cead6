"""The CLI's drawings of a thread: its tree of branches, in the terminal's own characters.

``memagent timeline`` prints ``render_tree``; each entry's symbol and label come from
the registry of memory event kinds (``agent.memory.events``) through the entry.
"""

from __future__ import annotations

from datetime import datetime

from agent.memory.tree import ThreadTree, TreeEntry


def local_time(at: datetime | str | None) -> str:
    """A time as the user's local wall-clock time."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if at else "?"


def _tree_label(node: TreeEntry, turns: dict[str, str]) -> str:
    entry = node.entry
    head = f"{entry.symbol} {entry.checkpoint_id}  {local_time(entry.at)}  {entry.label}"
    if node.undo:
        head += f"; undo: rewind to {node.undo}"
    target = entry.rewound_to
    if target is None:
        return head
    if target in turns:  # a turn's point: the state just before its message
        return f'{head} (before "{turns[target]}")'
    if node.parent in turns:  # a point later in that turn: after its message
        return f'{head} (after "{turns[node.parent]}")'
    return head


def render_tree(tree: ThreadTree) -> str:
    """The thread oldest first; each fork (a rewind) opens a branch.

    A straight run of turns stays in one column; where a point has several
    continuations, each gets a ``├─``/``└─`` branch, newer branches below. The point
    the next turn continues from is marked.
    """
    children: dict[str | None, list[TreeEntry]] = {}
    for node in reversed(tree.entries):  # oldest first
        children.setdefault(node.parent, []).append(node)
    turns = {n.entry.checkpoint_id: n.entry.preview for n in tree.entries if n.entry.kind == "turn"}
    current = next((n for n in tree.entries if n.on_head_branch), None)
    lines: list[str] = []
    if tree.hidden:
        lines.append(f"… {tree.hidden} older entries not shown (see --limit)")
    stack = [(root, "", "") for root in reversed(children.get(None, []))]
    while stack:
        node, first, rest = stack.pop()
        prefix = first
        while True:
            mark = "   ← current" if node is current else ""
            lines.append(prefix + _tree_label(node, turns) + mark)
            kids = children.get(node.entry.checkpoint_id, [])
            if len(kids) != 1:
                break
            node, prefix = kids[0], rest
        for index in reversed(range(len(kids))):
            last = index == len(kids) - 1
            stack.append(
                (kids[index], rest + ("└─ " if last else "├─ "), rest + ("   " if last else "│  "))
            )
    return "\n".join(lines) if lines else "No turns yet."
