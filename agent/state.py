"""The chat graph's state.

Besides the conversation, the state carries two small memory channels:

* ``memory_requests``: what the memory tools asked for during the current step. The
  tools only *request* a forget or a rewind; the ``apply_memory`` node carries it out
  once every tool call of the step has answered, so the conversation it leaves behind
  never holds a tool result whose calling message was removed.
* ``memory_event``: written exactly once by the step that changes memory. The saver
  copies it into that checkpoint's metadata (each kind's marker, from
  ``agent.memory.events``), because langgraph has no other way to put metadata on a
  single step's checkpoint.
"""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from langchain_core.messages import AnyMessage

from agent.memory.summary import add_messages_and_summaries

MEMORY_EVENT_CHANNEL = "memory_event"
"""The channel whose value the saver copies into the checkpoint's metadata."""


class MemoryRequest(TypedDict):
    """A memory change asked for by a tool call, applied after the tool step.

    ``kind`` names a memory event kind (``agent.memory.events.EVENT_KINDS``), whose
    applier in ``agent.memory.node`` carries the request out.
    """

    kind: str
    tool_call_id: str
    reason: NotRequired[str]
    target: NotRequired[str]
    quotes: NotRequired[list[str]]
    for_good: NotRequired[bool]


class MemoryEvent(TypedDict):
    """The change a memory operation made; its kind's ``stamp`` makes it metadata."""

    kind: str
    timestamp: int
    reason: NotRequired[str]
    target: NotRequired[str]
    count: NotRequired[int]
    erased: NotRequired[bool]
    tokens_before: NotRequired[int]
    tokens_after: NotRequired[int]


def collect_requests(
    current: list[MemoryRequest] | None, update: list[MemoryRequest] | None
) -> list[MemoryRequest]:
    """Gathers the requests of parallel tool calls; ``None`` empties the list.

    Parallel tool calls write in the same step, so a plain value would reject the
    second write; the apply node writes ``None`` once it has acted.
    """
    if update is None:
        return []
    return [*(current or []), *update]


class State(TypedDict):
    """The conversation of one thread plus the memory channels described above."""

    messages: Annotated[list[AnyMessage], add_messages_and_summaries]
    memory_requests: NotRequired[Annotated[list[MemoryRequest], collect_requests]]
    memory_event: NotRequired[MemoryEvent | None]
