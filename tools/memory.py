"""The model's memory tools: ``forget_conversation``, ``forget_details``, ``rewind_to``,
``compact_conversation``, ``conversation_timeline``.

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

from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

from agent.errors import QuoteNotFoundError, RequestError
from agent.memory.timeline import (
    DEFAULT_TIMELINE_LIMIT,
    MAX_TIMELINE_LIMIT,
    UNDO_LOOKBACK,
    before_run,
    read_timeline,
    render_timeline,
    undo_target,
)
from agent.memory.updates import (
    last_forgotten_details,
    load_rewind_target,
    run_saver,
    run_thread_id,
    summaries_made_from,
)
from agent.redaction import quote_pattern, scrub_message
from agent.state import MemoryRequest
from agent.validation import check_quotes, clean_reason

FORGET = "forget_conversation"
REWIND = "rewind_to"
TIMELINE = "conversation_timeline"
FORGET_DETAILS = "forget_details"
COMPACT = "compact_conversation"
MEMORY_CHANGING_TOOLS = frozenset({FORGET, REWIND, FORGET_DETAILS, COMPACT})
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
FORGET_DETAILS_DESCRIPTION = (
    "Forget one detail (an address, a name, a number) while the rest of the conversation "
    "stays. Use when the user asks to forget something specific ('forget my address'). "
    "`quotes`: the detail exactly as it was written in the conversation, e.g. "
    '["12 Main St"], short snippets, not whole messages; case does not matter. Each '
    "occurrence becomes [removed at the user's request]; everything else stays, and "
    "rewinding to before this brings it back. `for_good`: true only when the user asks to "
    "erase it for good / permanently; the user is then asked to confirm, and only a yes "
    "erases it from every stored copy (no undo). To erase for good what you just forgot "
    "(and so can no longer quote), pass `for_good` true with empty `quotes`. `reason`: "
    "optional, a few words, without the detail."
)
COMPACT_DESCRIPTION = (
    "Summarise what was said so far to free room, keeping the current message. Use when "
    "the user asks you to compact, condense or summarise the conversation to save space. "
    "Older turns are replaced by one summary in your memory; nothing is lost for good: "
    "rewinding to before this brings every message back. The user sees a confirmation."
)
TIMELINE_DESCRIPTION = (
    "List this conversation's earlier turns, newest first (the current one is not listed): "
    "for each, the checkpoint id to pass to "
    "rewind_to (the point just before that user message), its time and the start of the "
    "user's message; forgets and rewinds are marked. `limit`: how many entries, default "
    f"{DEFAULT_TIMELINE_LIMIT}, at most {MAX_TIMELINE_LIMIT}. Use it before rewind_to."
)


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
            f"({', '.join(c['name'] for c in changes)}). Call forget_conversation, "
            "forget_details, rewind_to or compact_conversation once, on its own (several "
            "quotes fit in one forget_details call)."
        )
    return None


def _refuse_change(runtime: ToolRuntime) -> str | None:
    """Why a memory change that needs no argument check cannot be requested, if it cannot."""
    if refusal := _refuse_if_combined(runtime):
        return refusal
    try:
        run_saver(runtime.config)
    except RequestError as error:
        return error.for_model()
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
        if refusal := _refuse_change(runtime):
            return refusal
        request: MemoryRequest = {"kind": "forget", "tool_call_id": runtime.tool_call_id or ""}
        if cleaned := clean_reason(reason):
            request["reason"] = cleaned
        return _request(runtime, "Forgetting the conversation now.", request)

    return StructuredTool.from_function(
        coroutine=forget_conversation, name=FORGET, description=description
    )


def create_forget_details_tool(*, description: str = FORGET_DETAILS_DESCRIPTION) -> BaseTool:
    """Makes ``forget_details``."""

    async def forget_details(
        quotes: list[str],
        runtime: ToolRuntime,
        reason: str | None = None,
        for_good: bool = False,
    ) -> Command[Any] | str:
        if refusal := _refuse_if_combined(runtime):
            return refusal
        try:
            saver = run_saver(runtime.config)
            thread_id = run_thread_id(runtime.config)
            if for_good and not quotes:  # "erase it for good", just after forgetting it
                quotes = await last_forgotten_details(saver, thread_id)
            checked = check_quotes(quotes)
            messages = runtime.state.get("messages", []) if isinstance(runtime.state, dict) else []
            pattern = quote_pattern(checked)
            # The calling message holds the quotes in its arguments; the rest must too,
            # or the messages a summary in the head was made from.
            earlier = messages[:-1]
            said = any(scrub_message(m, pattern) is not None for m in earlier)
            if (  # for good: older copies may still hold it
                not said
                and not for_good
                and not await summaries_made_from(saver, thread_id, earlier, checked)
            ):
                raise QuoteNotFoundError()
        except RequestError as error:
            return error.for_model()
        request: MemoryRequest = {
            "kind": "forget_details",
            "tool_call_id": runtime.tool_call_id or "",
            "quotes": checked,
        }
        if for_good:
            request["for_good"] = True
        if cleaned := clean_reason(reason):
            request["reason"] = cleaned
        note = "Asking the user to confirm." if for_good else "Forgetting that detail now."
        return _request(runtime, note, request)

    return StructuredTool.from_function(
        coroutine=forget_details, name=FORGET_DETAILS, description=description
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
        except RequestError as error:
            return error.for_model()
        request: MemoryRequest = {
            "kind": "rewind",
            "tool_call_id": runtime.tool_call_id or "",
            "target": target,
        }
        return _request(runtime, f"Rewinding to {target} now.", request)

    return StructuredTool.from_function(coroutine=rewind_to, name=REWIND, description=description)


def create_compact_tool(*, description: str = COMPACT_DESCRIPTION) -> BaseTool:
    """Makes ``compact_conversation``."""

    async def compact_conversation(runtime: ToolRuntime) -> Command[Any] | str:
        if refusal := _refuse_change(runtime):
            return refusal
        request: MemoryRequest = {"kind": "compact", "tool_call_id": runtime.tool_call_id or ""}
        return _request(runtime, "Summarising the earlier conversation now.", request)

    return StructuredTool.from_function(
        coroutine=compact_conversation, name=COMPACT, description=description
    )


def create_timeline_tool(*, description: str = TIMELINE_DESCRIPTION) -> BaseTool:
    """Makes ``conversation_timeline``."""

    async def conversation_timeline(
        runtime: ToolRuntime, limit: int = DEFAULT_TIMELINE_LIMIT
    ) -> str:
        if not 1 <= limit <= MAX_TIMELINE_LIMIT:
            return f"limit must be between 1 and {MAX_TIMELINE_LIMIT}; call again with e.g. 20."
        try:
            saver = run_saver(runtime.config)
        except RequestError as error:
            return error.for_model()
        thread_id = run_thread_id(runtime.config)
        run_id = (runtime.config.get("metadata") or {}).get("run_id")
        # The turn calling this tool is not listed: "undo" means what came before it.
        # One extra entry covers the turn's own, when it is saved already.
        entries = await read_timeline(saver, thread_id, max(limit, UNDO_LOOKBACK) + 1)
        earlier = before_run(entries, str(run_id) if run_id else None)
        return render_timeline(earlier[:limit], undo=undo_target(earlier[:UNDO_LOOKBACK]))

    return StructuredTool.from_function(
        coroutine=conversation_timeline, name=TIMELINE, description=description
    )


def memory_tools() -> list[BaseTool]:
    """The memory tools, as the graph binds them."""
    return [
        create_forget_tool(),
        create_forget_details_tool(),
        create_rewind_tool(),
        create_compact_tool(),
        create_timeline_tool(),
    ]
