"""Thread administration outside a chat turn: for code, cron jobs and the CLI.

Every operation is an async function; its sync twin (same name without the ``a``) is
made by ``sync_twin`` and bridges to the saver's event loop with
``asyncio.run_coroutine_threadsafe``, so it works from any other thread. Called on the
loop's own thread it would wait for itself forever, so it raises
``asyncio.InvalidStateError`` instead, naming the async call to use.

``aforget`` and ``arewind`` apply the very update the memory tools apply (through
langgraph's ``aupdate_state``), so the result is the same wherever it came from.
Memory operations wait for a running turn on their thread (the thread lease) and are
recorded in the audit log without any conversation content.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from langgraph.graph.state import CompiledStateGraph

from agent.errors import PurgeRefusedError, ThreadNotFoundError
from agent.operations import (
    chat_graph_builder,
    forget_details_update,
    forget_update,
    load_rewind_target,
    rewind_update,
    root_config,
)
from agent.store.saver import MemagentSaver
from agent.timeline import (
    DEFAULT_TIMELINE_LIMIT,
    TimelineEntry,
    entry_from,
    read_timeline,
)
from agent.validation import check_quotes, check_thread_id, clean_reason

Surface = Literal["tool", "cli", "code", "server", "web"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class MemoryChange:
    """What a forget or rewind wrote.

    Attributes:
        thread_id: The thread changed.
        checkpoint_id: The new head, carrying the ``memory_cleared`` or ``rewound_to``
            metadata.
        rewound_to: The target of a rewind; ``None`` for a forget.
    """

    thread_id: str
    checkpoint_id: str
    rewound_to: str | None = None


@dataclass(frozen=True, slots=True)
class Erasure:
    """What a delete, purge or redact removed (a redact: rows changed).

    Attributes:
        thread_id: The thread erased.
        rows: Rows removed per table.
        kept_from: For a purge, the forget checkpoint the thread now starts at.
    """

    thread_id: str
    rows: dict[str, int]
    kept_from: str | None = None


def sync_twin(
    async_fn: Callable[Concatenate[MemagentSaver, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[MemagentSaver, P], R]:
    """Makes the blocking twin of an admin coroutine whose first argument is the saver.

    The saver's pool belongs to the loop it was opened on, so the coroutine must run
    there; this submits it and waits from the calling thread. Where the wait could
    never end (on that loop's own thread, or when that loop is not running) it
    raises ``asyncio.InvalidStateError`` at once instead.
    """
    name = async_fn.__name__.removeprefix("a")

    @functools.wraps(async_fn)
    def twin(saver: MemagentSaver, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is saver.loop:
            raise asyncio.InvalidStateError(
                f"tools.admin.{name}() was called on the saver's own event loop thread, "
                f"where it would wait for itself forever. Use "
                f"`await tools.admin.{async_fn.__name__}(...)` there instead."
            )
        if saver.loop.is_closed() or not saver.loop.is_running():
            raise asyncio.InvalidStateError(
                f"tools.admin.{name}() needs the saver's event loop, which is not running "
                "(was the saver opened in an asyncio.run() that has ended?). Keep the loop "
                f"running, e.g. with agent.sync.SyncChat, or `await tools.admin."
                f"{async_fn.__name__}(...)` inside it."
            )
        future = asyncio.run_coroutine_threadsafe(async_fn(saver, *args, **kwargs), saver.loop)
        return future.result()

    twin.__name__ = twin.__qualname__ = name
    twin.__doc__ = f"Blocking twin of ``{async_fn.__name__}``; see there."
    return twin


_STATE_GRAPH: list[CompiledStateGraph[Any, Any, Any, Any]] = []


def _placeholder(state: Any) -> dict[str, Any]:  # pragma: no cover - never runs
    raise NotImplementedError("tools.admin applies updates only; it runs no model or tool")


async def _state_graph(saver: MemagentSaver) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The chat graph's shape on ``saver``, for ``aupdate_state``.

    ``aupdate_state`` needs the graph's channels, reducers and edges, never its model
    or tools, so stand-ins take their place. The graph is compiled once (off the loop:
    it takes a while) and copied per saver, which keeps no saver alive.
    """
    if not _STATE_GRAPH:
        builder = chat_graph_builder(_placeholder, _placeholder)
        _STATE_GRAPH.append(await asyncio.to_thread(builder.compile, name="memagent"))
    return _STATE_GRAPH[0].copy(update={"checkpointer": saver})


async def _require_thread(saver: MemagentSaver, thread_id: str) -> str:
    """The thread's head id.

    Raises:
        ThreadNotFoundError: The thread has no saved conversation.
    """
    head = await saver.ahead_id(thread_id)
    if head is None:
        raise ThreadNotFoundError(thread_id)
    return head


async def atimeline(
    saver: MemagentSaver, thread_id: str, *, limit: int = DEFAULT_TIMELINE_LIMIT
) -> list[TimelineEntry]:
    """The thread's timeline, newest first (see ``agent.timeline``)."""
    return await read_timeline(saver, check_thread_id(thread_id), limit)


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One point of a thread's tree.

    Attributes:
        entry: The timeline entry (turn, forget or rewind).
        parent: The point this one follows, or ``None`` for a root or when that point
            is not shown. A rewind to the point before a turn follows what came before
            that turn, so the turn and the rewind are two branches.
        on_head_branch: Whether the thread's current conversation goes through it.
        undo: For a forget or a soft detail forget, the checkpoint to rewind to to
            undo it: the point before the turn that asked for it, or (made out of
            band) the checkpoint just before it, which is not itself a point of the
            tree. A detail erased for good has none: no rewind brings it back.
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
    """Every branch of a thread: what ``memagent timeline`` draws.

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


def _is_turn_point(metadata: dict[str, Any] | None) -> bool:
    return bool(metadata) and metadata.get("source") == "input"  # type: ignore[union-attr]


async def atree(
    saver: MemagentSaver, thread_id: str, *, limit: int = DEFAULT_TIMELINE_LIMIT
) -> ThreadTree:
    """All branches of a thread, for people: set-aside branches are shown too.

    Unlike the timeline (the head's branch, for the model), this reads the links of
    every checkpoint of the thread, so its cost grows with the thread; it still reads
    no message blob, only the user messages of the turns shown.

    Raises:
        RequestError: Bad thread id, or a thread with no saved conversation.
    """
    check_thread_id(thread_id)
    links = await saver.atree_links(thread_id)
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
    texts = await saver.aturn_inputs(thread_id, turns)
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
        if entry.kind == "forget" or (entry.kind == "redacted" and not entry.erased):
            undo = parent if entry.in_turn else entry.parent_id
        shown_parent = parent if parent in shown_set else None
        entries.append(TreeEntry(entry, shown_parent, cid in on_branch, undo))
    return ThreadTree(thread_id, head, entries, hidden=len(points) - len(shown))


async def athreads(saver: MemagentSaver, *, limit: int = 100) -> list[dict[str, Any]]:
    """Threads with their checkpoint count and last activity, most recent first."""
    return await saver.athreads(limit)


async def aforget(
    saver: MemagentSaver,
    thread_id: str,
    *,
    reason: str | None = None,
    surface: Surface = "code",
    actor: str | None = None,
) -> MemoryChange:
    """Forgets a thread's conversation, exactly as ``forget_conversation`` does.

    Raises:
        RequestError: Bad thread id, or a thread with no saved conversation.
        ThreadBusyError: A turn kept the thread busy longer than the busy timeout.
    """
    check_thread_id(thread_id)
    async with saver.thread_lease(thread_id):
        await _require_thread(saver, thread_id)
        graph = await _state_graph(saver)
        with saver.sharing_cached_messages():
            config = await graph.aupdate_state(
                root_config(thread_id), forget_update(clean_reason(reason)), as_node="apply_memory"
            )
        await saver.arecord_audit("forget", thread_id, surface=surface, actor=actor)
    return MemoryChange(thread_id, str(config["configurable"]["checkpoint_id"]))


async def aforget_details(
    saver: MemagentSaver,
    thread_id: str,
    quotes: list[str],
    *,
    reason: str | None = None,
    surface: Surface = "code",
    actor: str | None = None,
) -> MemoryChange:
    """Forgets one detail of a thread's conversation, exactly as ``forget_details`` does.

    Soft: earlier checkpoints keep the detail, so rewinding to before this brings it
    back. The audit line holds the count of messages changed, never the quotes.

    Raises:
        RequestError: Bad thread id or quotes, a thread with no saved conversation,
            or quotes found nowhere in it (nothing is written).
        ThreadBusyError: A turn kept the thread busy longer than the busy timeout.
    """
    check_thread_id(thread_id)
    checked = check_quotes(quotes)
    async with saver.thread_lease(thread_id):
        await _require_thread(saver, thread_id)
        graph = await _state_graph(saver)
        state = await graph.aget_state(root_config(thread_id))
        update = forget_details_update(
            list(state.values.get("messages") or []), checked, clean_reason(reason)
        )
        config = await graph.aupdate_state(root_config(thread_id), update, as_node="apply_memory")
        await saver.arecord_audit(
            "forget_details",
            thread_id,
            surface=surface,
            actor=actor,
            detail={"count": update["memory_event"]["count"]},
        )
    return MemoryChange(thread_id, str(config["configurable"]["checkpoint_id"]))


async def aredact(
    saver: MemagentSaver,
    thread_id: str,
    quotes: list[str],
    *,
    surface: Surface = "code",
    actor: str | None = None,
) -> Erasure:
    """Erases the quotes from every stored copy of a thread, in one transaction (hard).

    Every checkpoint of every branch, pending writes, metadata and message rows get
    the marker in place of each quote; ids stay, every checkpoint still loads, and no
    rewind can bring the quotes back. An unknown thread changes nothing. The audit
    line holds counts only, never the quotes.

    Raises:
        RequestError: Bad thread id or quotes (nothing is changed).
        ThreadBusyError: A turn kept the thread busy longer than the busy timeout.
    """
    check_thread_id(thread_id)
    checked = check_quotes(quotes)
    async with saver.thread_lease(thread_id):
        rows = await saver.aredact(thread_id, checked)
        await saver.arecord_audit("redact", thread_id, surface=surface, actor=actor, detail=rows)
    return Erasure(thread_id, rows)


async def arewind(
    saver: MemagentSaver,
    thread_id: str,
    checkpoint_id: str,
    *,
    surface: Surface = "code",
    actor: str | None = None,
) -> MemoryChange:
    """Rewinds a thread to one of its root checkpoints, exactly as ``rewind_to`` does.

    Raises:
        RequestError: Bad thread id, or a checkpoint id that is malformed, unknown, of
            another thread or outside the root namespace (nothing is written).
        ThreadBusyError: A turn kept the thread busy longer than the busy timeout.
    """
    check_thread_id(thread_id)
    async with saver.thread_lease(thread_id):
        graph = await _state_graph(saver)
        with saver.sharing_cached_messages():
            target, messages = await load_rewind_target(saver, thread_id, checkpoint_id)
            config = await graph.aupdate_state(
                root_config(thread_id, target),
                rewind_update(target, messages),
                as_node="apply_memory",
            )
        await saver.arecord_audit(
            "rewind", thread_id, surface=surface, actor=actor, detail={"target": target}
        )
    return MemoryChange(thread_id, str(config["configurable"]["checkpoint_id"]), target)


async def adelete(
    saver: MemagentSaver,
    thread_id: str,
    *,
    surface: Surface = "code",
    actor: str | None = None,
) -> Erasure:
    """Erases every row of a thread in one transaction; an unknown thread erases nothing.

    Waits for a running turn, so that turn cannot write the thread back afterwards.
    """
    check_thread_id(thread_id)
    async with saver.thread_lease(thread_id):
        rows = await saver.adelete_thread_counted(thread_id)
        await saver.arecord_audit("delete", thread_id, surface=surface, actor=actor, detail=rows)
    return Erasure(thread_id, rows)


async def apurge(
    saver: MemagentSaver,
    thread_id: str,
    *,
    surface: Surface = "code",
    actor: str | None = None,
) -> Erasure:
    """Erases everything older than the thread's newest forget; the thread goes on.

    Raises:
        RequestError: The thread has never been forgotten, so there is nothing a purge
            may erase (nothing is changed).
    """
    check_thread_id(thread_id)
    async with saver.thread_lease(thread_id):
        kept_from, rows = await saver.apurge(thread_id)
    if kept_from is None:
        raise PurgeRefusedError(
            f"Thread {thread_id!r} has no forget to purge up to; forget it first."
        )
    await saver.arecord_audit(
        "purge", thread_id, surface=surface, actor=actor, detail={**rows, "kept_from": kept_from}
    )
    return Erasure(thread_id, rows, kept_from)


async def aaudit(
    saver: MemagentSaver, thread_id: str | None = None, *, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest audit log lines, for one thread or for all."""
    if thread_id is not None:
        check_thread_id(thread_id)
    return await saver.aaudit(thread_id, limit)


timeline = sync_twin(atimeline)
tree = sync_twin(atree)
threads = sync_twin(athreads)
forget = sync_twin(aforget)
forget_details = sync_twin(aforget_details)
redact = sync_twin(aredact)
rewind = sync_twin(arewind)
delete = sync_twin(adelete)
purge = sync_twin(apurge)
audit = sync_twin(aaudit)
