"""The chat graph: a tool-calling model loop with memory tools.

``make_graph`` builds it for any LangChain chat model that supports ``bind_tools``;
``graph`` is the same graph compiled without a checkpointer, for ``langgraph dev``
(the server supplies memagent's Postgres saver from ``langgraph.json``). ``graph`` is
built on first use, not at import: every ``memagent`` command imports this module, and
most need no model, so a model setting that cannot work (or ``--help``) must not fail
them all.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, merge_configs
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, StateUpdate

from agent.memory.budget import resolve_context_tokens
from agent.memory.compactor import Compactor
from agent.memory.node import apply_memory, compaction_step, route_after_tools
from agent.model import load_model
from agent.prompts import SYSTEM_PROMPT
from agent.settings import Settings
from agent.state import State
from agent.store.saver import MemagentSaver
from tools.memory import memory_tools


def chat_graph_builder(agent: Callable[..., Any], tools: Any) -> StateGraph[Any]:
    """The chat graph's nodes and edges, with the model and tool steps supplied.

    ``make_graph`` fills in the steps (the agent node compacts first when a call would
    not fit: ``agent.memory.node.compaction_step``); ``tools.admin`` compiles the same
    shape with stand-ins to apply memory changes through ``aupdate_state``, which needs
    the graph's channels and edges but never runs its model or tools.
    """
    builder = StateGraph(State)
    builder.add_node("agent", agent, destinations=("agent", "tools", END))
    builder.add_node("tools", tools)
    builder.add_node("apply_memory", apply_memory)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, ["tools", END])
    builder.add_conditional_edges("tools", route_after_tools, ["apply_memory", "agent"])
    builder.add_edge("apply_memory", END)
    return builder


class ChatGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """The compiled chat graph; every run and state update holds its thread's lease.

    docs/SPEC.md, "Concurrency": two turns on one thread never lose a message, and a
    memory operation (``tools.admin``, which takes the same lease) waits for a running
    turn. Without this, two ``ainvoke`` on one thread both continue from the same head
    and the later write sets the other turn aside, and a turn that was running when a
    forget was written continues from before the forget, undoing it. Holding the
    lease for the whole run serialises them, in this process and across processes
    (the lease is a database row). An explicit ``checkpoint_id`` (a Studio fork, time
    travel) waits the same way and then forks as upstream does.

    ``context_tokens`` is the graph's context budget (``make_graph``).

    Only memagent's saver has leases; on any other checkpointer, or as a subgraph
    (the parent's run holds the thread), runs are exactly langgraph's. The lease is
    re-entrant, so ``ChatSession`` (which takes it for its whole turn) and
    ``tools.admin`` called from inside a run do not wait for themselves.
    """

    def __init__(self, *, context_tokens: int | None = None, **attributes: Any) -> None:
        super().__init__(**attributes)
        self.context_tokens = context_tokens

    def _lease_saver(self, config: RunnableConfig) -> tuple[MemagentSaver, str] | None:
        """The saver and thread whose lease a root run with ``config`` must hold."""
        configurable = config.get("configurable", {})
        if configurable.get("checkpoint_ns") or "thread_id" not in configurable:
            return None
        checkpointer = configurable.get(CONFIG_KEY_CHECKPOINTER, self.checkpointer)
        # langgraph's server wraps the configured saver in an adapter that forwards
        # every other attribute to it (langgraph_api's _CustomCheckpointerAdapter).
        saver = getattr(checkpointer, "_inner", checkpointer)
        if not isinstance(saver, MemagentSaver):
            return None
        return saver, str(configurable["thread_id"])

    def _run_config(self, config: RunnableConfig | None) -> RunnableConfig:
        """The config a run will use: the graph's own, the caller's and the context's."""
        return merge_configs(self.config, ensure_config(config))

    def _lease(self, config: RunnableConfig | None) -> AbstractAsyncContextManager[None]:
        """The run's lease, taken by its first read (of its thread) in that read's round trip."""
        found = self._lease_saver(self._run_config(config))
        if found is None:
            return nullcontext()
        return found[0].thread_lease(found[1], with_first_read=True)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """langgraph's ``astream`` (also behind ``ainvoke`` and ``astream_events``),
        holding the thread's lease from the first read to the last write."""
        async with self._lease(config):
            async for part in super().astream(input, _with_run_id(config), **kwargs):
                yield part

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Refused on memagent's saver: the model step is async, so use ``ainvoke``.

        langgraph would fail in the model step, after the turn's input was saved; this
        refuses before anything is written. ``agent.sync.SyncChat`` is the blocking API.
        """
        if self._lease_saver(self._run_config(config)) is not None:
            raise TypeError(
                "The memagent chat graph runs its model asynchronously: use ainvoke or "
                "astream (or agent.sync.SyncChat from synchronous code), not invoke or stream."
            )
        yield from super().stream(input, config, **kwargs)

    async def abulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        """langgraph's state update (also behind ``aupdate_state``), holding the lease."""
        async with self._lease(config):
            return await super().abulk_update_state(config, supersteps)

    def bulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        """langgraph's sync state update (also behind ``update_state``), holding the lease."""
        found = self._lease_saver(self._run_config(config))
        with nullcontext() if found is None else found[0].blocking_thread_lease(found[1]):
            return super().bulk_update_state(config, supersteps)


def _with_run_id(config: RunnableConfig | None) -> RunnableConfig:
    """``config`` with a run id in its metadata, which langgraph copies into checkpoints.

    The server and ``ChatSession`` give every run one; a run started on the bare graph
    gets one here, so the timeline tool can tell its own turn's checkpoints apart.
    """
    config = ensure_config(config)
    metadata = config.get("metadata") or {}
    if metadata.get("run_id"):
        return config
    return {**config, "metadata": {**metadata, "run_id": str(uuid.uuid4())}}


def make_graph(
    model: BaseChatModel,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    context_tokens: int | None = None,
    summary_model: BaseChatModel | None = None,
    system_prompt: str = SYSTEM_PROMPT,
    extra_tools: Sequence[BaseTool] = (),
    **compile_options: Any,
) -> ChatGraph:
    """Builds and compiles the chat graph.

    Args:
        model: Any chat model with ``bind_tools``.
        checkpointer: Where turns persist; ``None`` for a server that brings its own.
        context_tokens: The most tokens one model call may receive, system prompt and
            tool schemas included (docs/SPEC.md, "Context budget and compaction");
            ``None``: ``MEMAGENT_CONTEXT_TOKENS``, else the model's profile
            (``agent.memory.budget.resolve_context_tokens``).
        summary_model: Writes the summaries that keep calls within the budget;
            ``None``: the chat model itself.
        system_prompt: Put before the conversation on every model call.
        extra_tools: Tools to offer beside the memory tools.
        **compile_options: Passed to ``StateGraph.compile`` (``store``,
            ``interrupt_before``, ``name``, ...).

    Raises:
        ValueError: ``context_tokens`` is not a positive whole number.
    """
    tools = [*memory_tools(), *extra_tools]
    bound = model.bind_tools(tools)
    budget = resolve_context_tokens(model, context_tokens, Settings.from_env().context_tokens)
    compactor = Compactor.for_graph(
        budget=budget,
        system_prompt=system_prompt,
        tools=tools,
        summary_model=summary_model or model,
    )

    compact = compaction_step(compactor)

    async def agent(state: State, config: RunnableConfig) -> dict[str, Any] | Command[str]:
        if (compaction := await compact(state, config)) is not None:
            return compaction
        sent, note = compactor.prepare(state["messages"])
        if note is not None and not sent:  # the current turn alone is over the budget
            return {"messages": [note]}
        response = await bound.ainvoke([SystemMessage(system_prompt), *sent], config)
        return {"messages": [response] if note is None else [note, response]}

    compile_options.setdefault("name", "memagent")
    builder = chat_graph_builder(agent, ToolNode(tools))
    compiled = builder.compile(checkpointer=checkpointer, **compile_options)
    # As Pregel.copy() rebuilds a graph; the server's copies then stay ChatGraphs too.
    attributes = {k: v for k, v in vars(compiled).items() if k != "__orig_class__"}
    return ChatGraph(context_tokens=budget, **attributes)


graph: CompiledStateGraph[Any, Any, Any, Any]
"""The chat graph on the configured model, without a checkpointer; built on first use.

Only annotated here, so that reading it goes through ``__getattr__``.
"""


@functools.cache
def _configured_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    return make_graph(load_model()[0])


def __getattr__(name: str) -> Any:
    """Builds ``graph`` when it is first read (PEP 562), once per process.

    Raises:
        SettingsError: The configured model cannot be loaded.
    """
    if name == "graph":
        return _configured_graph()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
