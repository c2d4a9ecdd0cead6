"""The memory operations themselves, shared by the model's tools and ``tools.admin``.

A forget or a rewind is a state update (``forget_update`` / ``rewind_update``) applied
as the ``apply_memory`` node: inside a run by the graph after the tool step, outside
one by ``tools.admin`` through langgraph's ``aupdate_state``. Both routes write the
same checkpoint, because both go through the same node of the same graph shape
(``chat_graph_builder``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, RemoveMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.prebuilt import tools_condition

from agent.errors import CheckpointNotFoundError, NotPersistentError
from agent.prompts import FORGET_CONFIRMATION, REWIND_CONFIRMATION
from agent.state import MemoryEvent, State
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
            root namespace (all look the same from here: not in this thread).
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
    event: MemoryEvent = {"kind": "forget", "timestamp": int(time.time())}
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
    event: MemoryEvent = {"kind": "rewind", "timestamp": int(time.time()), "target": target}
    return {
        "messages": [
            RemoveMessage(id=REMOVE_ALL_MESSAGES),
            *messages,
            AIMessage(content=REWIND_CONFIRMATION),
        ],
        "memory_event": event,
        "memory_requests": None,
    }


def route_after_tools(state: State) -> str:
    """After the tool step: apply a requested memory change, else back to the model."""
    return "apply_memory" if state.get("memory_requests") else "agent"


async def apply_memory(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Carries out the memory change a tool requested, as the step's only write.

    Runs after every tool call of the step has answered, so removing messages cannot
    leave a tool result behind without its call. Its checkpoint carries the
    ``memory_event`` that the saver turns into metadata.
    """
    request = (state.get("memory_requests") or [])[0]
    saver = run_saver(config)
    thread_id = run_thread_id(config)
    if request["kind"] == "forget":
        update = forget_update(request.get("reason"))
        detail: dict[str, Any] = {}
    else:
        target, messages = await load_rewind_target(saver, thread_id, request.get("target", ""))
        update = rewind_update(target, messages)
        detail = {"target": target}
    await _audit(saver, config, request["kind"], thread_id, detail)
    return update


async def _audit(
    saver: BaseCheckpointSaver[Any],
    config: RunnableConfig,
    operation: str,
    thread_id: str,
    detail: dict[str, Any],
) -> None:
    """Records a tool-made change in the audit log, when the saver keeps one."""
    record = getattr(saver, "arecord_audit", None)
    if record is None:
        return
    configurable = config.get("configurable", {})
    # langgraph's server puts the assistant (and, with auth, the user) into every run.
    surface = "server" if "assistant_id" in configurable else "tool"
    actor = configurable.get("langgraph_auth_user_id")
    await record(operation, thread_id, surface=surface, actor=actor, detail=detail)


def chat_graph_builder(agent: Callable[..., Any], tools: Any) -> StateGraph[Any]:
    """The chat graph's nodes and edges, with the model step and tool step supplied.

    ``agent.graph`` fills in the model and the tools; ``tools.admin`` compiles the same
    shape with stand-ins to apply memory changes through ``aupdate_state``, which
    needs the graph's channels and edges but never runs its model or tools.
    """
    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tools", tools)
    builder.add_node("apply_memory", apply_memory)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, ["tools", END])
    builder.add_conditional_edges("tools", route_after_tools, ["apply_memory", "agent"])
    builder.add_edge("apply_memory", END)
    return builder
