"""The model's memory tools: ``forget_conversation``, ``rewind_to``, ``conversation_timeline``.

The tools run inside a graph run, where writing to the saver directly would be undone
by the run's next checkpoint. So ``forget_conversation`` and ``rewind_to`` validate
their arguments and *request* the change; the graph's ``apply_memory`` node makes it
once every tool call of the step has answered (see ``apply_memory``). The thread is
always the run's own (from its config), never an argument the model could fill in.

Parallel calls in one AI message are defined as follows: a memory tool beside other
tools lets those run first, then the change applies (a forget removes their results
too); two memory *changes* in one message (two forgets, forget and rewind, ...) are
all refused with an instruction to make one call; ``conversation_timeline`` is
read-only and combines with anything.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    RemoveMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

from agent.prompts import FORGET_CONFIRMATION, REWIND_CONFIRMATION, UNDO_HINT
from agent.state import MemoryEvent, MemoryRequest, State
from agent.timeline import (
    DEFAULT_TIMELINE_LIMIT,
    MAX_TIMELINE_LIMIT,
    TimelineEntry,
    read_timeline,
    undo_target,
)

FORGET = "forget_conversation"
REWIND = "rewind_to"
TIMELINE = "conversation_timeline"
MEMORY_CHANGING_TOOLS = frozenset({FORGET, REWIND})
MAX_REASON_CHARS = 200
UNDO_LOOKBACK = 8  # entries enough to find the change "undo" means

FORGET_DESCRIPTION = (
    "Forget the whole conversation so far. Use when the user asks you to forget "
    "something, 'this', 'that' or everything: you cannot forget only part, so everything "
    "said before this call is cleared from your memory. The user sees a confirmation, and "
    "can undo it later with rewind_to. `reason`: optional, a few words on why, without "
    "repeating what was said."
)
REWIND_DESCRIPTION = (
    "Return the conversation to an earlier point and set aside everything after it. Use "
    "when the user says 'go back to before ...', 'undo that' or 'rewind'. `checkpoint_id` "
    "is an id from conversation_timeline, a UUID such as "
    "1f0c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f; a turn's id is the point just before that user "
    "message, so rewinding there removes that message and all after it. Rewinding to a "
    "point before a forget brings the forgotten conversation back. The user sees a "
    "confirmation."
)
TIMELINE_DESCRIPTION = (
    "List this conversation's turns, newest first: for each, the checkpoint id to pass to "
    "rewind_to (the point just before that user message), its time and the start of the "
    "user's message; forgets and rewinds are marked. `limit`: how many entries, default "
    f"{DEFAULT_TIMELINE_LIMIT}, at most {MAX_TIMELINE_LIMIT}. Use it before rewind_to."
)

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class MemoryToolError(ValueError):
    """An argument a memory operation cannot act on; the message says what to do."""


def clean_reason(reason: str | None) -> str | None:
    """Makes a model-supplied reason safe to store as checkpoint metadata.

    PostgreSQL refuses NUL characters in JSON, and the reason is free text from the
    model, so control characters go and the length is capped.
    """
    if reason is None:
        return None
    text = " ".join(_CONTROL_CHARS.sub(" ", reason).split())[:MAX_REASON_CHARS]
    return text or None


def parse_checkpoint_id(raw: str) -> str:
    """Checks that ``raw`` looks like a checkpoint id and returns it normalised.

    Raises:
        MemoryToolError: It is not a UUID.
    """
    text = raw.strip() if isinstance(raw, str) else ""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        shown = _CONTROL_CHARS.sub("?", text)[:60]
        raise MemoryToolError(
            f"{shown!r} is not a checkpoint id. Ids are UUIDs like "
            "1f0c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f: call conversation_timeline and copy one."
        ) from None


def run_saver(config: RunnableConfig) -> BaseCheckpointSaver[Any]:
    """The saver of the run that ``config`` belongs to.

    Raises:
        MemoryToolError: The graph runs without persistence, so there is no memory
            to manage.
    """
    saver = config.get("configurable", {}).get(CONFIG_KEY_CHECKPOINTER)
    if not isinstance(saver, BaseCheckpointSaver):
        raise MemoryToolError(
            "This conversation is not being saved, so there is no memory to manage. "
            "Tell the user memory tools need a persistent thread."
        )
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
        MemoryToolError: The id is malformed, unknown, of another thread or outside
            the root namespace (all look the same from here: not in this thread).
    """
    checkpoint_id = parse_checkpoint_id(raw_checkpoint_id)
    found = await saver.aget_tuple(root_config(thread_id, checkpoint_id))
    if found is None or found.config["configurable"].get("checkpoint_id") != checkpoint_id:
        raise MemoryToolError(
            f"There is no checkpoint {checkpoint_id} in this conversation. Call "
            "conversation_timeline to see the ids you can rewind to, then try again."
        )
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
    """The state update that forgets a thread, shared by the tool and ``tools.admin``."""
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
    """The state update that rewinds a thread, shared by the tool and ``tools.admin``."""
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


def _refuse_if_combined(runtime: ToolRuntime) -> str | None:
    """Refuses a memory change that shares its AI message with another one."""
    messages = runtime.state.get("messages", []) if isinstance(runtime.state, dict) else []
    calling = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    if calling is None:
        return None
    changes = [c for c in calling.tool_calls if c["name"] in MEMORY_CHANGING_TOOLS]
    if len(changes) > 1:
        return (
            "Nothing was changed: one message asked for several memory changes "
            f"({', '.join(c['name'] for c in changes)}). Call forget_conversation or "
            "rewind_to once, on its own."
        )
    return None


def _request(runtime: ToolRuntime, note: str, request: MemoryRequest) -> Command[Any]:
    return Command(
        update={
            "messages": [ToolMessage(content=note, tool_call_id=runtime.tool_call_id or "")],
            "memory_requests": [request],
        }
    )


def create_forget_tool(*, description: str = FORGET_DESCRIPTION) -> BaseTool:
    """Makes ``forget_conversation``."""

    async def forget_conversation(
        runtime: ToolRuntime, reason: str | None = None
    ) -> Command[Any] | str:
        if refusal := _refuse_if_combined(runtime):
            return refusal
        try:
            run_saver(runtime.config)
        except MemoryToolError as error:
            return str(error)
        request: MemoryRequest = {"kind": "forget", "tool_call_id": runtime.tool_call_id or ""}
        if cleaned := clean_reason(reason):
            request["reason"] = cleaned
        return _request(runtime, "Forgetting the conversation now.", request)

    return StructuredTool.from_function(
        coroutine=forget_conversation, name=FORGET, description=description
    )


def create_rewind_tool(*, description: str = REWIND_DESCRIPTION) -> BaseTool:
    """Makes ``rewind_to``."""

    async def rewind_to(checkpoint_id: str, runtime: ToolRuntime) -> Command[Any] | str:
        if refusal := _refuse_if_combined(runtime):
            return refusal
        try:
            saver = run_saver(runtime.config)
            target, _ = await load_rewind_target(
                saver, run_thread_id(runtime.config), checkpoint_id
            )
        except MemoryToolError as error:
            return str(error)
        request: MemoryRequest = {
            "kind": "rewind",
            "tool_call_id": runtime.tool_call_id or "",
            "target": target,
        }
        return _request(runtime, f"Rewinding to {target} now.", request)

    return StructuredTool.from_function(coroutine=rewind_to, name=REWIND, description=description)


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
        else:
            what = f"[rewound to {entry.rewound_to}]"
        lines.append(f"{entry.checkpoint_id}  {when}  {what}")
    if undo:
        lines.append(UNDO_HINT + undo)
    return "\n".join(lines)


def create_timeline_tool(*, description: str = TIMELINE_DESCRIPTION) -> BaseTool:
    """Makes ``conversation_timeline``."""

    async def conversation_timeline(
        runtime: ToolRuntime, limit: int = DEFAULT_TIMELINE_LIMIT
    ) -> str:
        if not 1 <= limit <= MAX_TIMELINE_LIMIT:
            return f"limit must be between 1 and {MAX_TIMELINE_LIMIT}; call again with e.g. 20."
        try:
            saver = run_saver(runtime.config)
        except MemoryToolError as error:
            return str(error)
        thread_id = run_thread_id(runtime.config)
        entries = await read_timeline(saver, thread_id, limit)
        # The newest turn is the one calling this tool; "undo" means what came before it.
        lookback = await read_timeline(saver, thread_id, UNDO_LOOKBACK)
        return render_timeline(entries, undo=undo_target(lookback[1:]))

    return StructuredTool.from_function(
        coroutine=conversation_timeline, name=TIMELINE, description=description
    )


def memory_tools() -> list[BaseTool]:
    """The three memory tools, as the graph binds them."""
    return [create_forget_tool(), create_rewind_tool(), create_timeline_tool()]


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
