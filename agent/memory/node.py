"""The ``apply_memory`` node: carries out the memory change a tool requested.

The tools only *request* a change (``tools.memory``); this node applies it once every
tool call of the step has answered, so removing messages cannot leave a tool result
behind without its call. Each request kind has one applier in ``APPLIERS``, which
returns the state update (built by ``agent.memory.updates``) and what the audit log
records of it. Compaction, automatic or requested, is the agent node's own first step
(``compaction_step``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, interrupt
from psycopg_pool import AsyncConnectionPool

from agent.errors import (
    NotPersistentError,
    QuoteNotFoundError,
    ServerUnavailableError,
    SummaryFailedError,
)
from agent.memory.changes import ServerRunsErased
from agent.memory.compactor import Compactor
from agent.memory.events import COMPACT, FORGET, FORGOT_DETAIL, REWIND
from agent.memory.store import ThreadStore
from agent.memory.updates import (
    confirmed,
    erase_request,
    forget_details_update,
    forget_update,
    load_rewind_target,
    rewind_update,
    run_saver,
    run_thread_id,
    summaries_made_from,
)
from agent.prompts import (
    ERASE_CONFIRMATION,
    ERASE_DECLINED,
    ERASE_NOT_REACHED_SERVER,
    NOTHING_TO_COMPACT,
)
from agent.state import MemoryEvent, MemoryRequest, State
from agent.store.server_threads import Pool, ServerThreads, erase_runs_holding

logger = logging.getLogger(__name__)

ERASE_OPERATION = "redact"
"""The audit operation of an erase for good, whichever surface asked for it."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What an applier did: the node's state update and the audit line's content.

    Attributes:
        update: The state update the node returns.
        operation: The audit operation (the kind's name; an erase is ``redact``).
        detail: Counts and ids for the audit line, never conversation content.
    """

    update: dict[str, Any]
    operation: str
    detail: dict[str, Any] = field(default_factory=dict)


Applier = Callable[[State, RunnableConfig, MemoryRequest], Awaitable[Applied]]


def _reply(text: str) -> dict[str, Any]:
    """An update that only answers (nothing in memory changes)."""
    return {"messages": [AIMessage(content=text)], "memory_requests": None}


async def _apply_forget(state: State, config: RunnableConfig, request: MemoryRequest) -> Applied:
    return Applied(forget_update(request.get("reason")), FORGET.name)


async def _apply_rewind(state: State, config: RunnableConfig, request: MemoryRequest) -> Applied:
    saver = run_saver(config)
    target, messages = await load_rewind_target(
        saver, run_thread_id(config), request.get("target", "")
    )
    return Applied(rewind_update(target, messages), REWIND.name, {"target": target})


async def _apply_forget_details(
    state: State, config: RunnableConfig, request: MemoryRequest
) -> Applied:
    """A ``forget_details`` request, soft or for good.

    For good, the run pauses (``interrupt``) showing what would be erased; only an
    explicit yes erases every stored copy (``aredact``). The head is then updated
    too, because the running graph still holds the conversation as it was and would
    store it again. Either way the head's summaries made from the detail become
    markers; they are found before the erase, which scrubs what they were made from.
    """
    quotes = request.get("quotes") or []
    messages = list(state.get("messages") or [])
    reason = request.get("reason")
    saver = run_saver(config)
    thread_id = run_thread_id(config)
    summaries = await summaries_made_from(saver, thread_id, messages, quotes)
    if not request.get("for_good"):
        try:
            update = forget_details_update(messages, quotes, reason, summaries)
        except QuoteNotFoundError as error:
            return Applied(_reply(error.for_model()), FORGOT_DETAIL.name)
        return Applied(update, FORGOT_DETAIL.name, {"count": update["memory_event"]["count"]})
    if not confirmed(interrupt(erase_request(thread_id, quotes))):
        return Applied(_reply(ERASE_DECLINED), ERASE_OPERATION, {"confirmed": False})
    if not isinstance(saver, ThreadStore):
        raise NotPersistentError()
    rows = await saver.aredact(thread_id, quotes)
    try:
        update = forget_details_update(messages, quotes, reason, summaries)
    except QuoteNotFoundError as error:
        if not any(rows.values()):
            return Applied(_reply(error.for_model()), ERASE_OPERATION, {"confirmed": True, **rows})
        event: MemoryEvent = {"kind": FORGOT_DETAIL.name, "timestamp": int(time.time()), "count": 0}
        update = {"messages": [AIMessage(content="")], "memory_event": event}
    update["memory_event"]["erased"] = True
    reply = ERASE_CONFIRMATION
    detail = {"confirmed": True, "count": update["memory_event"]["count"], **rows}
    # The server hands the graph its checkpointer inside an adapter that forwards
    # every other attribute to it, so the saver's pool is reached by name.
    pool = getattr(saver, "conn", None)
    if in_server(config) and isinstance(pool, AsyncConnectionPool):
        on_server = await _erase_server_runs(pool, thread_id, quotes)
        reply = f"{reply} {on_server.sentences()}"
        detail["server_runs"] = on_server.runs_removed
    update["messages"][-1] = AIMessage(content=reply)
    update["memory_requests"] = None
    return Applied(update, ERASE_OPERATION, detail)


async def _erase_server_runs(pool: Pool, thread_id: str, quotes: list[str]) -> ServerRunsErased:
    """The thread's earlier runs that said a quote, deleted through the server's own API.

    Inside the server, the SDK's client without an address talks to the server
    in-process. The database is erased already, so a server that refuses is reported
    in the reply rather than failing the erase.
    """
    server = ServerThreads(None)
    try:
        return await erase_runs_holding(server, pool, thread_id, quotes, in_run=True)
    except ServerUnavailableError as error:
        logger.warning("erase for good: %s", error)
        return ServerRunsErased(0, (ERASE_NOT_REACHED_SERVER.format(reason=error),))
    finally:
        await server.aclose()


def in_server(config: RunnableConfig) -> bool:
    """Whether the run is one of ``langgraph dev``'s.

    The server puts the assistant (and, with auth, the user) into every run's config.
    """
    return "assistant_id" in config.get("configurable", {})


APPLIERS: dict[str, Applier] = {
    FORGET.name: _apply_forget,
    REWIND.name: _apply_rewind,
    FORGOT_DETAIL.name: _apply_forget_details,
}
"""The applier of each request kind (a memory event kind's name)."""


CompactionStep = Callable[[State, RunnableConfig], Awaitable[dict[str, Any] | Command[str] | None]]
"""What the agent node does first: a compaction update, or ``None`` to call the model."""


def compaction_step(compactor: Compactor) -> CompactionStep:
    """The agent node's first duty: a summary in place of the oldest turns, when due.

    Due before a model call that would not fit (``Compactor.needs_compaction``), and
    when ``compact_conversation`` asked for it. The compaction is a step of its own,
    so its checkpoint is one of its own (the one the timeline shows, and a rewind to
    before it undoes it): the step returns a ``Command`` back to the agent node, which
    then calls the model. It is a step *of the agent node* rather than a node of its
    own because every node that ever ran, and every channel it ever wrote, stays in
    each later checkpoint's ``versions_seen`` and ``channel_versions``: a ``compact``
    node cost about 300 bytes in every checkpoint after a thread's first compaction.

    Returns ``None`` when nothing is due, or when the summariser failed: nothing is
    stored and the model call goes out trimmed, with a note (``Compactor.prepare``).
    Asked for by the user, the result is the answer (and the turn's end), failure
    included.
    """

    async def compact(state: State, config: RunnableConfig) -> dict[str, Any] | Command[str] | None:
        messages = list(state.get("messages") or [])
        requests = state.get("memory_requests") or []
        requested = bool(requests) and requests[0]["kind"] == COMPACT.name
        if not requested and not compactor.needs_compaction(messages):
            return None
        try:
            if requested:
                update = await compactor.requested(messages, config=config)
            else:
                update = await compactor.update(messages, config=config)
        except SummaryFailedError as error:
            logger.warning("compaction failed: %s", error)
            return _reply(str(error)) if requested else None
        if update is None:
            return _reply(NOTHING_TO_COMPACT) if requested else None
        event = update["memory_event"]
        detail = {k: event[k] for k in ("count", "tokens_before", "tokens_after")}
        await _audit(run_saver(config), config, Applied(update, COMPACT.name, detail))
        if requested:  # an automatic compaction leaves the channel alone: no version
            return {**update, "memory_requests": None}
        return Command(update=update, goto="agent")

    return compact


def route_after_tools(state: State) -> str:
    """After the tool step: apply a requested memory change, else back to the model.

    A requested compaction goes back to the agent node too: compacting is its step.
    """
    requests = state.get("memory_requests") or []
    if not requests or requests[0]["kind"] == COMPACT.name:
        return "agent"
    return "apply_memory"


async def apply_memory(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Carries out the memory change a tool requested, as the step's only write.

    Its checkpoint carries the ``memory_event`` that the saver turns into metadata.
    """
    request = (state.get("memory_requests") or [])[0]
    applied = await APPLIERS[request["kind"]](state, config, request)
    await _audit(run_saver(config), config, applied)
    return applied.update


async def _audit(saver: BaseCheckpointSaver[Any], config: RunnableConfig, applied: Applied) -> None:
    """Records a tool-made change in the audit log, when the saver keeps one."""
    if not isinstance(saver, ThreadStore):
        return
    surface = "server" if in_server(config) else "tool"
    actor = config.get("configurable", {}).get("langgraph_auth_user_id")
    await saver.arecord_audit(
        applied.operation,
        run_thread_id(config),
        surface=surface,
        actor=actor,
        detail=applied.detail,
    )
