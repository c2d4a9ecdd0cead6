"""A bench-only prototype of memagent's state with ``messages`` as a ``DeltaChannel``.

Stock langgraph keeps ``messages`` in a ``BinaryOperatorAggregate``: every step that
adds a message stores the *whole* list again, so a thread's storage grows with the
square of its length. langgraph's ``DeltaChannel`` (beta) stores only each step's
writes and, every ``snapshot_frequency`` updates, one full snapshot; readers rebuild
the value from the nearest snapshot plus the writes after it
(``aget_delta_channel_history`` in langgraph-checkpoint-postgres).

Nothing in ``agent/`` changes here. This module builds the same graph as
``agent.graph.make_graph`` on a copy of the state, in three variants:

* ``as_is``: only the channel changes; the memory tools, ``apply_memory`` and
  ``load_rewind_target`` are memagent's current code. This shows what breaks.
* ``loader_only``: only the rewind loader is fixed (below); shows why the
  ``Overwrite`` is needed too.
* ``proposed``: forget and rewind write ``Overwrite(...)`` (which makes langgraph
  store a snapshot in that very checkpoint) with explicit message ids, and the
  rewind target's messages are read with ``aget_state`` (which replays deltas)
  instead of from ``checkpoint["channel_values"]``.

``verify_memory_ops`` runs the same forget/rewind scenario on any variant and reports
which of the behaviour contract's promises hold.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Overwrite

from agent.checkpointer import MemagentSaver
from agent.model import OfflineChatModel
from agent.operations import (
    apply_memory,
    forget_update,
    load_rewind_target,
    provider_valid,
    rewind_update,
    root_config,
    route_after_tools,
    run_saver,
    run_thread_id,
)
from agent.prompts import FORGET_CONFIRMATION, REWIND_CONFIRMATION, SYSTEM_PROMPT
from agent.state import MemoryEvent, MemoryRequest, collect_requests
from agent.validation import parse_checkpoint_id
from tools import admin
from tools.memory import memory_tools

Variant = Literal["as_is", "loader_only", "proposed"]
Graph = CompiledStateGraph[Any, Any, Any, Any]


def add_messages_batch(current: list[AnyMessage], writes: Sequence[Any]) -> list[AnyMessage]:
    """``add_messages`` folded over one batch of writes.

    ``DeltaChannel`` hands its reducer a batch and replays stored writes in batches of
    any size, so the reducer must give the same result however the writes are
    grouped; folding the pairwise reducer over them guarantees that.
    """
    return functools.reduce(add_messages, writes, current)  # type: ignore[arg-type]


def delta_state(snapshot_frequency: int) -> type:
    """memagent's ``State`` with ``messages`` as a ``DeltaChannel``.

    Built at run time because the snapshot frequency lives in the annotation.
    """
    channel: DeltaChannel[Any] = DeltaChannel(
        add_messages_batch, snapshot_frequency=snapshot_frequency
    )
    return TypedDict(  # type: ignore[operator]
        "DeltaState",
        {
            "messages": Annotated[list[AnyMessage], channel],
            "memory_requests": NotRequired[Annotated[list[MemoryRequest], collect_requests]],
            "memory_event": NotRequired[MemoryEvent | None],
        },
    )


def _new_id() -> str:
    return str(uuid.uuid4())


def forget_update_overwrite(reason: str | None) -> dict[str, Any]:
    """The proposed forget: the same change as ``forget_update``, as an ``Overwrite``.

    An ``Overwrite`` of a delta channel makes langgraph store a snapshot in the
    forget's checkpoint, so reading anything after it never replays the forgotten
    writes (and a purge may delete them). The confirmation gets an id because an
    ``Overwrite`` bypasses ``add_messages``, which would otherwise assign one.
    """
    event: MemoryEvent = {"kind": "forget", "timestamp": int(time.time())}
    if reason:
        event["reason"] = reason
    return {
        "messages": Overwrite([AIMessage(content=FORGET_CONFIRMATION, id=_new_id())]),
        "memory_event": event,
        "memory_requests": None,
    }


def rewind_update_overwrite(target: str, messages: list[AnyMessage]) -> dict[str, Any]:
    """The proposed rewind: the target's messages plus a confirmation, as an ``Overwrite``.

    memagent's saver makes the rewind's checkpoint a child of the target, but the
    step's writes are stored under the checkpoint the run came from. Replaying deltas
    along the rewritten parent link would therefore rebuild the wrong conversation;
    the snapshot that an ``Overwrite`` forces makes the checkpoint self-contained.
    """
    event: MemoryEvent = {"kind": "rewind", "timestamp": int(time.time()), "target": target}
    return {
        "messages": Overwrite([*messages, AIMessage(content=REWIND_CONFIRMATION, id=_new_id())]),
        "memory_event": event,
        "memory_requests": None,
    }


async def load_rewind_target_replayed(
    graph: Graph, thread_id: str, raw_checkpoint_id: str
) -> tuple[str, list[AnyMessage]]:
    """Like ``tools.memory.load_rewind_target``, reading messages with ``aget_state``.

    With a delta channel a checkpoint's ``channel_values`` holds the messages only at
    snapshots (and then wrapped); ``aget_state`` rebuilds them from the nearest
    snapshot and the writes after it, through langgraph's public API.

    Raises:
        MemoryToolError: Same refusals as the current loader (it does the lookup).
    """
    saver = graph.checkpointer
    assert isinstance(saver, BaseCheckpointSaver)
    checkpoint_id = parse_checkpoint_id(raw_checkpoint_id)
    # The current loader refuses unknown and foreign ids; its messages are not used.
    await load_rewind_target(saver, thread_id, checkpoint_id)
    snapshot = await graph.aget_state(root_config(thread_id, checkpoint_id))
    messages = list(snapshot.values.get("messages") or [])
    return checkpoint_id, provider_valid(messages)


def make_delta_graph(
    model: BaseChatModel,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None,
    snapshot_frequency: int,
    variant: Variant,
) -> Graph:
    """``agent.graph.make_graph`` on the delta state, with ``variant``'s memory updates.

    The node functions take ``state: Any`` so that langgraph reads the schema from the
    builder rather than from memagent's ``State`` annotations (which would clash).
    """
    tools = memory_tools()
    bound = model.bind_tools(tools)
    compiled: dict[str, Graph] = {}

    async def agent(state: Any, config: RunnableConfig) -> dict[str, Any]:
        response = await bound.ainvoke([SystemMessage(SYSTEM_PROMPT), *state["messages"]], config)
        return {"messages": [response]}

    def route(state: Any) -> str:
        return route_after_tools(state)

    async def apply_as_is(state: Any, config: RunnableConfig) -> dict[str, Any]:
        return await apply_memory(state, config)

    async def apply_replayed(state: Any, config: RunnableConfig) -> dict[str, Any]:
        request = (state.get("memory_requests") or [])[0]
        overwrite = variant == "proposed"
        if request["kind"] == "forget":
            reason = request.get("reason")
            return forget_update_overwrite(reason) if overwrite else forget_update(reason)
        run_saver(config)
        target, messages = await load_rewind_target_replayed(
            compiled["graph"], run_thread_id(config), request.get("target", "")
        )
        if overwrite:
            return rewind_update_overwrite(target, messages)
        return rewind_update(target, messages)

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(delta_state(snapshot_frequency))
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_node("apply_memory", apply_as_is if variant == "as_is" else apply_replayed)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, ["tools", END])
    builder.add_conditional_edges("tools", route, ["apply_memory", "agent"])
    builder.add_edge("apply_memory", END)
    compiled["graph"] = builder.compile(checkpointer=checkpointer, name="memagent-delta")
    return compiled["graph"]


@dataclass
class MemoryOps:
    """Out-of-band forget/rewind/timeline for one graph, as ``tools.admin`` offers them.

    Attributes:
        graph: The chat graph whose checkpointer holds the threads.
        forget: ``(thread_id) -> new head id``.
        rewind: ``(thread_id, checkpoint_id) -> new head id``.
        timeline: ``(thread_id, limit) -> entries``.
    """

    graph: Graph
    forget: Callable[[str], Awaitable[str]]
    rewind: Callable[[str, str], Awaitable[str]]
    timeline: Callable[[str, int], Awaitable[list[Any]]]


def stock_ops(graph: Graph) -> MemoryOps:
    """memagent's own ``tools.admin`` on its own graph: the reference behaviour."""
    saver = graph.checkpointer
    assert isinstance(saver, MemagentSaver)

    async def forget(thread_id: str) -> str:
        return (await admin.aforget(saver, thread_id)).checkpoint_id

    async def rewind(thread_id: str, checkpoint_id: str) -> str:
        return (await admin.arewind(saver, thread_id, checkpoint_id)).checkpoint_id

    async def timeline(thread_id: str, limit: int) -> list[Any]:
        return await admin.atimeline(saver, thread_id, limit=limit)

    return MemoryOps(graph, forget, rewind, timeline)


def delta_ops(graph: Graph, variant: Variant) -> MemoryOps:
    """``tools.admin``'s forget/rewind re-done on a delta graph (same lease and audit).

    ``tools.admin`` builds memagent's own graph for ``aupdate_state``; a delta thread
    needs the delta graph's channels, so the two calls are mirrored here.
    """
    saver = graph.checkpointer
    assert isinstance(saver, MemagentSaver)

    overwrite = variant == "proposed"

    async def forget(thread_id: str) -> str:
        update = forget_update_overwrite(None) if overwrite else forget_update(None)
        async with saver.thread_lease(thread_id):
            config = await graph.aupdate_state(
                root_config(thread_id), update, as_node="apply_memory"
            )
            await saver.arecord_audit("forget", thread_id, surface="code")
        return str(config["configurable"]["checkpoint_id"])

    async def rewind(thread_id: str, checkpoint_id: str) -> str:
        async with saver.thread_lease(thread_id):
            if variant == "as_is":
                target, messages = await load_rewind_target(saver, thread_id, checkpoint_id)
            else:
                target, messages = await load_rewind_target_replayed(
                    graph, thread_id, checkpoint_id
                )
            if overwrite:
                update = rewind_update_overwrite(target, messages)
            else:
                update = rewind_update(target, messages)
            config = await graph.aupdate_state(
                root_config(thread_id, target), update, as_node="apply_memory"
            )
            await saver.arecord_audit("rewind", thread_id, surface="code")
        return str(config["configurable"]["checkpoint_id"])

    async def timeline(thread_id: str, limit: int) -> list[Any]:
        return await admin.atimeline(saver, thread_id, limit=limit)

    return MemoryOps(graph, forget, rewind, timeline)


# --- correctness scenario -------------------------------------------------------------

RECALL = "what do you remember?"
NOTHING_REMEMBERED = "I don't remember anything from this conversation yet."


def _said(messages: Sequence[BaseMessage]) -> list[tuple[str, str]]:
    """Messages as comparable (type, text) pairs; ids may legitimately differ."""
    return [(m.type, m.text) for m in messages]


def _mismatch(got: list[tuple[str, str]], expected: list[tuple[str, str]]) -> str:
    """Says how a rebuilt conversation differs from the expected one, briefly."""
    last = got[-1][1][:60] if got else "nothing"
    return f"head has {len(got)} messages (expected {len(expected)}), the last: {last!r}"


def _recall_reply(user_texts: Sequence[str]) -> str:
    """What the offline model answers to ``RECALL`` after exactly ``user_texts``."""
    if not user_texts:
        return NOTHING_REMEMBERED
    return "Here is what you've told me: " + " | ".join(f'"{t}"' for t in user_texts)


@dataclass
class CheckLog:
    """Pass/fail per promise, with a note for each failure (exception or mismatch)."""

    results: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    async def check(self, name: str, probe: Callable[[], Awaitable[tuple[bool, str]]]) -> None:
        """Runs one probe; an exception is a failure, recorded with its message."""
        try:
            ok, note = await probe()
        except Exception as error:  # a broken variant may fail anywhere; record it
            ok, note = False, f"{type(error).__name__}: {error}"[:300]
        self.results[name] = ok
        if not ok:
            self.notes[name] = note


async def verify_memory_ops(ops: MemoryOps, *, turns: int = 7) -> CheckLog:
    """Runs forget and rewind through the tools and out of band; checks the contract.

    The scenario: ``turns`` plain turns; the model forgets (tool); the next turn must
    see nothing; the model rewinds to before turn 3 (undoing the forget); the next
    turn must see turns 1-2 only; then the same forget and rewind out of band. Every
    answer comes from the offline model, so a wrong rebuild of the conversation shows
    up in what it says.
    """
    graph, log = ops.graph, CheckLog()
    thread_id = f"verify-{uuid.uuid4()}"
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    texts = [f"note {i}: the kettle is blue and the train leaves at {i}" for i in range(turns)]

    async def head() -> list[BaseMessage]:
        return list((await graph.aget_state(config)).values.get("messages") or [])

    async def say(text: str) -> str:
        result = await graph.ainvoke({"messages": [HumanMessage(text)]}, config)
        return str(result["messages"][-1].text)

    for text in texts:
        await say(text)
    entries = await ops.timeline(thread_id, 50)
    turn_points = [e.checkpoint_id for e in entries if e.kind == "turn"][::-1]
    target = turn_points[2]  # the point just before turn 3: turns 1-2 remain
    reference = _said((await graph.aget_state(root_config(thread_id, target))).values["messages"])

    async def ids_stable() -> tuple[bool, str]:
        first, second = await head(), await head()
        same = [m.id for m in first] == [m.id for m in second]
        return same, "message ids differ between two reads of the same checkpoint"

    await log.check("ids stable across reads", ids_stable)

    async def tool_forget() -> tuple[bool, str]:
        await say("please forget everything")
        now = _said(await head())
        leaked = [t for t in texts if any(t in said for _, said in now)]
        ok = not leaked and now[-1:] == [("ai", FORGET_CONFIRMATION)]
        return ok, f"head after forget: {now[:3]}"

    await log.check("tool forget clears the head", tool_forget)

    async def forget_marked() -> tuple[bool, str]:
        found = [
            c
            async for c in graph.checkpointer.alist(  # type: ignore[union-attr]
                root_config(thread_id), filter={"memory_cleared": True}
            )
        ]
        return len(found) == 1, f"{len(found)} checkpoints carry memory_cleared"

    await log.check("forget checkpoint marked", forget_marked)

    async def after_forget() -> tuple[bool, str]:
        reply = await say(RECALL)
        return reply == NOTHING_REMEMBERED, f"model said: {reply[:160]}"

    await log.check("next turn sees nothing after forget", after_forget)

    async def tool_rewind() -> tuple[bool, str]:
        await say(f"rewind to {target}")
        now = _said(await head())
        expected = [*reference, ("ai", REWIND_CONFIRMATION)]
        return now == expected, _mismatch(now, expected)

    await log.check("tool rewind restores the target", tool_rewind)

    async def rewind_parent() -> tuple[bool, str]:
        found = [
            c
            async for c in graph.checkpointer.alist(  # type: ignore[union-attr]
                root_config(thread_id), filter={"rewound_to": target}
            )
        ]
        parent = found[0].parent_config if found else None
        got = parent["configurable"]["checkpoint_id"] if parent else None
        return got == target, f"parent {got}, target {target}"

    await log.check("rewind checkpoint's parent is the target", rewind_parent)

    async def after_rewind() -> tuple[bool, str]:
        reply = await say(RECALL)
        expected = _recall_reply(texts[:2])
        return reply == expected, f"model said: {reply[:160]}"

    await log.check("next turn sees the target after rewind", after_rewind)

    async def admin_forget() -> tuple[bool, str]:
        await ops.forget(thread_id)
        reply = await say(RECALL)
        return reply == NOTHING_REMEMBERED, f"model said: {reply[:160]}"

    await log.check("out-of-band forget", admin_forget)

    async def admin_rewind() -> tuple[bool, str]:
        await ops.rewind(thread_id, target)
        now = _said(await head())
        expected = [*reference, ("ai", REWIND_CONFIRMATION)]
        if now != expected:
            return False, _mismatch(now, expected)
        reply = await say(RECALL)
        return reply == _recall_reply(texts[:2]), f"model said: {reply[:160]}"

    await log.check("out-of-band rewind", admin_rewind)

    async def target_unchanged() -> tuple[bool, str]:
        again = (await graph.aget_state(root_config(thread_id, target))).values["messages"]
        return _said(again) == reference, "the target checkpoint now reads differently"

    await log.check("earlier checkpoints unchanged", target_unchanged)
    return log


def offline_delta_graph(saver: MemagentSaver, snapshot_frequency: int, variant: Variant) -> Graph:
    """The delta graph with the offline model, as the benchmark runs it."""
    return make_delta_graph(
        OfflineChatModel(),
        checkpointer=saver,
        snapshot_frequency=snapshot_frequency,
        variant=variant,
    )


async def contract_checks(
    saver: MemagentSaver, frequencies: Sequence[int] = (3, 1_000_000)
) -> dict[str, dict[str, Any]]:
    """The forget/rewind scenario on memagent's graph and on each delta variant.

    Two snapshot frequencies, because whether a memory operation's checkpoint happens
    to hold a snapshot decides whether a broken variant shows: 3 snapshots almost
    every step, 1,000,000 never (within langgraph's 5000-superstep bound).
    """
    from agent.graph import make_graph

    runs: list[tuple[str, MemoryOps]] = [
        ("memagent today", stock_ops(make_graph(OfflineChatModel(), checkpointer=saver)))
    ]
    variants: tuple[Variant, ...] = ("as_is", "loader_only", "proposed")
    for variant in variants:
        for frequency in frequencies:
            graph = offline_delta_graph(saver, frequency, variant)
            runs.append((f"delta {variant} K={frequency:,}", delta_ops(graph, variant)))
    out: dict[str, dict[str, Any]] = {}
    for name, ops in runs:
        log = await verify_memory_ops(ops)
        out[name] = {"results": log.results, "notes": log.notes}
    return out
