"""Thread administration outside a chat turn: for code, cron jobs and the CLI.

Every operation is an async function; its sync twin (same name without the ``a``) is
made by ``sync_twin`` and bridges to the saver's event loop (``agent.bridge``), so it
works from any other thread. Called on the loop's own thread it would wait for itself
forever, so it raises ``asyncio.InvalidStateError`` instead, naming the async call.

The memory model itself (updates, the tree, the timeline) lives in ``agent.memory``;
these functions take the lease, apply it and write the audit line.

``aforget`` and ``arewind`` apply the very update the memory tools apply (through
langgraph's ``aupdate_state``), so the result is the same wherever it came from.
Memory operations wait for a running turn on their thread (the thread lease) and are
recorded in the audit log without any conversation content.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import psycopg
from langchain_core.language_models import BaseChatModel
from langgraph.graph.state import CompiledStateGraph

from agent.bridge import run_blocking
from agent.errors import (
    MemagentError,
    NothingToCompactError,
    NothingToUndoError,
    PurgeRefusedError,
    RequestError,
    RetentionRefusedError,
    RetentionRequestError,
    SettingsError,
    ThreadBusyError,
    ThreadNotFoundError,
    one_line,
)
from agent.graph import chat_graph_builder
from agent.memory.budget import resolve_context_tokens
from agent.memory.changes import Compaction, Erasure, MemoryChange, RetainedThread, Retention
from agent.memory.compactor import Compactor
from agent.memory.events import COMPACT, FORGET, FORGOT_DETAIL, REWIND
from agent.memory.node import ERASE_OPERATION
from agent.memory.timeline import (
    DEFAULT_TIMELINE_LIMIT,
    UNDO_LOOKBACK,
    TimelineEntry,
    read_timeline,
    undo_target,
)
from agent.memory.tree import ThreadTree, read_tree
from agent.memory.updates import (
    forget_details_update,
    forget_update,
    load_rewind_target,
    rewind_update,
    root_config,
    summaries_made_from,
)
from agent.model import load_model
from agent.prompts import SYSTEM_PROMPT
from agent.settings import Settings
from agent.store import pseudonym
from agent.store.receipt import ERASED_TABLES, ErasureReceipt, ServerErasure
from agent.store.saver import MemagentSaver
from agent.store.server_threads import ServerThreads, erase_runs_holding
from agent.validation import (
    check_keep_turns,
    check_quotes,
    check_thread_id,
    check_user,
    clean_reason,
    parse_duration,
)
from tools.memory import memory_tools

Surface = Literal["tool", "cli", "code", "server", "web", "sweep"]
ERASE_USER_OPERATION = "erase-user"
"""The audit log's operation for ``aerase_user``; its line's thread and actor are the
user's pseudonym, its detail the receipt."""

P = ParamSpec("P")
R = TypeVar("R")


def sync_twin(
    async_fn: Callable[Concatenate[MemagentSaver, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[MemagentSaver, P], R]:
    """Makes the blocking twin of an admin coroutine whose first argument is the saver.

    The twin hands the coroutine to the saver's loop and waits (``agent.bridge``).
    """
    name = async_fn.__name__.removeprefix("a")

    @functools.wraps(async_fn)
    def twin(saver: MemagentSaver, /, *args: P.args, **kwargs: P.kwargs) -> R:
        instead = f"`await tools.admin.{async_fn.__name__}(...)`"
        return run_blocking(saver.loop, async_fn(saver, *args, **kwargs), instead=instead)

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
    """The thread's timeline, newest first (see ``agent.memory.timeline``)."""
    return await read_timeline(saver, check_thread_id(thread_id), limit)


async def atree(
    saver: MemagentSaver, thread_id: str, *, limit: int = DEFAULT_TIMELINE_LIMIT
) -> ThreadTree:
    """All branches of a thread, for people (see ``agent.memory.tree``).

    Raises:
        RequestError: Bad thread id, or a thread with no saved conversation.
    """
    return await read_tree(saver, thread_id, limit=limit)


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
    async with saver.thread_lease(thread_id, with_first_read=True):
        await _require_thread(saver, thread_id)
        graph = await _state_graph(saver)
        with saver.sharing_cached_messages():
            config = await graph.aupdate_state(
                root_config(thread_id), forget_update(clean_reason(reason)), as_node="apply_memory"
            )
        await saver.arecord_audit(FORGET.name, thread_id, surface=surface, actor=actor)
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
    async with saver.thread_lease(thread_id, with_first_read=True):
        await _require_thread(saver, thread_id)
        graph = await _state_graph(saver)
        state = await graph.aget_state(root_config(thread_id))
        messages = list(state.values.get("messages") or [])
        summaries = await summaries_made_from(saver, thread_id, messages, checked)
        update = forget_details_update(messages, checked, clean_reason(reason), summaries)
        config = await graph.aupdate_state(root_config(thread_id), update, as_node="apply_memory")
        await saver.arecord_audit(
            FORGOT_DETAIL.name,
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
    server: ServerThreads | None = None,
) -> Erasure:
    """Erases the quotes from every stored copy of a thread, in one transaction (hard).

    Every checkpoint of every branch, pending writes, metadata and message rows get
    the marker in place of each quote; ids stay, every checkpoint still loads, and no
    rewind can bring the quotes back. An unknown thread changes nothing. With
    ``server``, the server also deletes its records of the thread's finished runs
    whose input held a quote (``server_threads.erase_runs_holding``), and the result
    names what stays out of reach. The audit line holds counts only, never the quotes.

    Raises:
        RequestError: Bad thread id or quotes (nothing is changed).
        ThreadBusyError: A turn kept the thread busy longer than the busy timeout.
        ServerUnavailableError: The server could not be reached or refused; nothing
            is erased if it failed before its first run was deleted, and erasing
            again finishes the rest.
    """
    check_thread_id(thread_id)
    checked = check_quotes(quotes)
    on_server = None
    # With a server, its runs are detached through our own connection before any read
    # of the saver, so the lease is taken first rather than with that read.
    async with saver.thread_lease(thread_id, with_first_read=server is None):
        # The server first: one that cannot be reached then leaves everything as it was.
        if server is not None:
            on_server = await erase_runs_holding(server, saver.conn, thread_id, checked)
        rows = await saver.aredact(thread_id, checked)
        detail = dict(rows)
        if on_server is not None:
            detail["server_runs"] = on_server.runs_removed
        await saver.arecord_audit(
            ERASE_OPERATION, thread_id, surface=surface, actor=actor, detail=detail
        )
    return Erasure(thread_id, rows, server=on_server)


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
    async with saver.thread_lease(thread_id, with_first_read=True):
        graph = await _state_graph(saver)
        with saver.sharing_cached_messages():
            target, messages = await load_rewind_target(saver, thread_id, checkpoint_id)
            config = await graph.aupdate_state(
                root_config(thread_id, target),
                rewind_update(target, messages),
                as_node="apply_memory",
            )
        await saver.arecord_audit(
            REWIND.name, thread_id, surface=surface, actor=actor, detail={"target": target}
        )
    return MemoryChange(thread_id, str(config["configurable"]["checkpoint_id"]), target)


async def aundo(
    saver: MemagentSaver,
    thread_id: str,
    *,
    surface: Surface = "code",
    actor: str | None = None,
) -> MemoryChange:
    """Takes back the newest change on the head's branch: a turn, a forget, a detail forget.

    The same rule as "undo" to the model (``agent.memory.timeline.undo_target``); the
    chat's ``/undo`` and the web page's undo button call this.

    Raises:
        RequestError: Bad thread id, or nothing on the branch to undo.
        ThreadBusyError: A turn kept the thread busy longer than the busy timeout.
    """
    check_thread_id(thread_id)
    async with saver.thread_lease(thread_id, with_first_read=True):
        target = undo_target(await read_timeline(saver, thread_id, UNDO_LOOKBACK))
        if target is None:
            raise NothingToUndoError()
        return await arewind(saver, thread_id, target, surface=surface, actor=actor)


async def acompact(
    saver: MemagentSaver,
    thread_id: str,
    *,
    model: BaseChatModel | None = None,
    context_tokens: int | None = None,
    surface: Surface = "code",
    actor: str | None = None,
) -> Compaction:
    """Summarises every turn of a thread but the newest, as ``compact_conversation`` does.

    Soft: earlier checkpoints keep every message, so rewinding to before this undoes it.

    Args:
        saver: The saver.
        thread_id: The thread.
        model: Writes the summary; ``None``: the configured chat model.
        context_tokens: The budget the summariser's calls keep to; ``None``: as
            ``make_graph`` works it out.
        surface: Where the request came from, for the audit log.
        actor: Who asked, for the audit log.

    Raises:
        RequestError: Bad thread id, a thread with no saved conversation, or nothing
            earlier to summarise (nothing is written).
        SummaryFailedError: The summariser failed; nothing is written.
        ThreadBusyError: A turn kept the thread busy longer than the busy timeout.
    """
    check_thread_id(thread_id)
    settings = Settings.from_env()
    summariser = model or load_model(settings)[0]
    compactor = Compactor.for_graph(
        budget=resolve_context_tokens(summariser, context_tokens, settings.context_tokens),
        system_prompt=SYSTEM_PROMPT,
        tools=memory_tools(),
        summary_model=summariser,
    )
    async with saver.thread_lease(thread_id, with_first_read=True):
        await _require_thread(saver, thread_id)
        graph = await _state_graph(saver)
        state = await graph.aget_state(root_config(thread_id))
        update = await compactor.update(list(state.values.get("messages") or []), force=True)
        if update is None:
            raise NothingToCompactError(thread_id)
        config = await graph.aupdate_state(root_config(thread_id), update, as_node="apply_memory")
        event = update["memory_event"]
        detail = {k: event[k] for k in ("count", "tokens_before", "tokens_after")}
        await saver.arecord_audit(
            COMPACT.name, thread_id, surface=surface, actor=actor, detail=detail
        )
    return Compaction(
        thread_id,
        str(config["configurable"]["checkpoint_id"]),
        event["count"],
        event["tokens_before"],
        event["tokens_after"],
    )


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
    async with saver.thread_lease(thread_id, with_first_read=True):
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
    async with saver.thread_lease(thread_id, with_first_read=True):
        kept_from, rows = await saver.apurge(thread_id)
    if kept_from is None:
        raise PurgeRefusedError(
            f"Thread {thread_id!r} has no forget to purge up to; forget it first."
        )
    await saver.arecord_audit(
        "purge", thread_id, surface=surface, actor=actor, detail={**rows, "kept_from": kept_from}
    )
    return Erasure(thread_id, rows, kept_from)


async def aretain(
    saver: MemagentSaver,
    thread_id: str | None = None,
    *,
    keep_turns: int | None = None,
    older_than: timedelta | str | None = None,
    dry_run: bool = False,
    surface: Surface = "code",
    actor: str | None = None,
) -> Retention:
    """Keeps only the newest turns of a thread, or of every thread (``thread_id=None``).

    Exactly one policy: ``keep_turns`` (the newest N turns on the head's branch; 0
    keeps the head alone) or ``older_than`` (a ``timedelta`` or text such as ``"30d"``:
    turns older than that go). The thread is kept from the rewind point of its oldest
    kept turn on, on every branch; everything older goes, with the blobs and message
    rows nothing kept refers to. What is kept loads exactly as before and the head is
    never touched. Memory changes cut stay in the timeline as tombstones ("removed by
    retention"), and a removed id gets ``CheckpointRetainedError`` rather than "unknown".
    Each thread is done under its lease, so a running turn finishes first and is kept.
    A dry run changes nothing and reports what a real run would remove.

    Raises:
        RequestError: A bad thread id or an unknown thread, no policy or both, a
            negative ``keep_turns`` or a malformed ``older_than`` (nothing is changed).
        RetentionRefusedError: One thread asked for, and it uses a ``DeltaChannel``
            (its checkpoints are rebuilt from older ones). Over all threads, such
            threads are listed in ``refused`` instead.
        ThreadBusyError: One thread asked for, and a turn kept it busy longer than
            the busy timeout. Over all threads, busy ones are listed in ``busy`` instead.
    """
    if (keep_turns is None) == (older_than is None):
        raise RetentionRequestError(
            "Say what to keep: a number of turns (keep_turns) or an age (older_than), not both."
        )
    turns = None if keep_turns is None else check_keep_turns(keep_turns)
    age = None if older_than is None else parse_duration(older_than)
    policy: dict[str, Any] = (
        {"keep_turns": turns}
        if age is None
        else {
            "older_than": older_than if isinstance(older_than, str) else f"{age.total_seconds():g}s"
        }
    )

    async def retain_one(thread: str) -> RetainedThread:
        async with saver.thread_lease(thread):
            await _require_thread(saver, thread)
            done = await saver.aretain(thread, keep_turns=turns, older_than=age, dry_run=dry_run)
            if done.checkpoints and not dry_run:
                detail = {**done.rows, "bytes": done.bytes, "kept_from": done.kept_from, **policy}
                await saver.arecord_audit(
                    "retain", thread, surface=surface, actor=actor, detail=detail
                )
        return done

    if thread_id is not None:
        return Retention(policy, dry_run, [await retain_one(check_thread_id(thread_id))], [])
    done, busy, refused = [], [], []
    for thread in await saver.athread_ids():
        try:
            done.append(await retain_one(thread))
        except ThreadBusyError:
            busy.append(thread)
        except RetentionRefusedError:
            refused.append(thread)
        except ThreadNotFoundError:  # deleted since it was listed: nothing to keep
            continue
    return Retention(policy, dry_run, done, busy, refused)


def retention_policy(text: str) -> dict[str, Any]:
    """The ``aretain`` policy that ``MEMAGENT_RETENTION`` names.

    ``"200 turns"`` keeps the newest 200 turns of each thread; an age such as ``"90d"``
    (as ``memagent retain --older-than`` takes) keeps the turns newer than that.

    Raises:
        SettingsError: Neither.
    """
    turns = _RETENTION_TURNS.fullmatch(text.strip().lower())
    if turns is not None:
        return {"keep_turns": int(turns[1])}
    try:
        parse_duration(text)
    except RequestError:
        raise SettingsError(
            f"MEMAGENT_RETENTION={text!r} cannot be used: write a number of turns "
            "(200 turns) or an age (90d, 12h)."
        ) from None
    return {"older_than": text.strip()}


_RETENTION_TURNS = re.compile(r"(\d+)\s*turns?")
logger = logging.getLogger(__name__)


@asynccontextmanager
async def retention_sweep(saver: MemagentSaver, settings: Settings) -> AsyncIterator[None]:
    """While open, applies ``MEMAGENT_RETENTION`` to every thread, now and every interval.

    For long-running processes (the web page, ``langgraph dev``), as a cron job runs
    ``memagent retain --all``. A sweep that fails (the database away for a moment) is
    logged and tried again at the next interval. Nothing runs without the setting.

    Raises:
        SettingsError: ``MEMAGENT_RETENTION`` cannot be used (raised on entry).
    """
    if settings.retention is None:
        yield
        return
    policy = retention_policy(settings.retention)

    async def sweep() -> None:
        while True:
            try:
                done = await aretain(saver, None, surface="sweep", **policy)
                if done.busy:
                    logger.info("retention skipped busy threads %s", done.busy)
            except (MemagentError, psycopg.Error) as error:
                logger.warning("retention sweep failed: %s", one_line(error))
            await asyncio.sleep(settings.retention_interval)

    task = asyncio.create_task(sweep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def aaudit(
    saver: MemagentSaver, thread_id: str | None = None, *, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest audit log lines, for one thread or for all."""
    if thread_id is not None:
        check_thread_id(thread_id)
    return await saver.aaudit(thread_id, limit)


async def aerase_user(
    saver: MemagentSaver,
    user: str,
    *,
    server: ServerThreads | None = None,
    pseudonym_key: bytes | None = None,
    surface: Surface = "code",
) -> ErasureReceipt:
    """Erases every thread of a user, everywhere, and returns the receipt that proves it.

    The user's threads are those memagent recorded as theirs (the page and the server
    with auth on), the page's ``<user>:<uuid>`` threads, and, with ``server``, the
    server's threads whose metadata names them. Each is erased on every branch and in
    every table (conversation, message rows, ownership, retention records) in one
    transaction of its own, after any turn on it has finished; then the server deletes
    its record of the threads and their runs. The audit log keeps its lines with the
    user's name and thread ids replaced by keyed pseudonyms (``agent.store.pseudonym``)
    and gets one more: the receipt. A scan of every table then checks that no row
    names the user or holds one of their thread ids. Other users' rows are not touched.
    An unknown user, or one erased before, gets a receipt of zeros.

    Args:
        saver: The saver.
        user: The user's name, as auth knows it (a token's ``sub``).
        server: The ``langgraph dev`` server to erase from too, reached as the user.
        pseudonym_key: The pseudonyms' key; ``None``: the configured one.
        surface: Where the request came from, for the audit log.

    Raises:
        RequestError: ``user`` cannot be a user's name (nothing is changed).
        ServerUnavailableError: The server could not be reached or refused; nothing
            is erased if it failed before the first thread was.
        ThreadBusyError: A turn kept a thread busy longer than the busy timeout; the
            threads before it are erased, and erasing again finishes the rest.
    """
    check_user(user)
    key = pseudonym_key or pseudonym.pseudonym_key(Settings.from_env())
    on_server: list[str] = []
    if server is not None:
        on_server = await server.threads_of(user)
        for thread_id in on_server:
            await server.stop_runs(thread_id)
    # Threads the audit log ties to the user include ones deleted earlier, of which a
    # row may remain that only names them.
    thread_ids = sorted(
        {*await saver.athreads_of(user), *on_server, *await saver.aaudit_threads_of(user)}
    )
    rows = dict.fromkeys(ERASED_TABLES, 0)
    erased = 0
    for thread_id in thread_ids:
        async with saver.thread_lease(thread_id):
            removed = await saver.aerase_thread(thread_id)
        erased += any(removed.values())
        for table, count in removed.items():
            rows[table] += count
    server_erasure = None
    if server is not None:
        server_erasure = ServerErasure(*await server.delete())
    user_pseudonym = pseudonym.user_pseudonym(key, user)
    # After the server's deletes, which write audit lines of their own.
    in_audit = sorted({*thread_ids, *await saver.aaudit_threads_of(user)})
    audit_lines = await saver.apseudonymise_audit(
        user, user_pseudonym, {t: pseudonym.thread_pseudonym(key, t) for t in in_audit}
    )
    receipt = ErasureReceipt.make(
        user=user_pseudonym,
        threads=erased,
        rows=rows,
        audit_lines=audit_lines,
        server=server_erasure,
        scan=await saver.ascan_for(user, in_audit),
    )
    await saver.arecord_audit(
        ERASE_USER_OPERATION,
        user_pseudonym,
        surface=surface,
        actor=user_pseudonym,
        detail=receipt.to_json(),
    )
    return receipt


async def avacuum(saver: MemagentSaver, *, full: bool = False) -> dict[str, tuple[int, int]]:
    """VACUUM (``full``: VACUUM FULL) on memagent's and langgraph's tables, now.

    For operators who must reclaim the space of erased rows at once rather than when
    autovacuum comes by. VACUUM FULL rewrites each table and locks it while it does.

    Returns:
        Per table, its size in bytes before and after.
    """
    return await saver.avacuum(full=full)


timeline = sync_twin(atimeline)
tree = sync_twin(atree)
threads = sync_twin(athreads)
forget = sync_twin(aforget)
forget_details = sync_twin(aforget_details)
redact = sync_twin(aredact)
rewind = sync_twin(arewind)
compact = sync_twin(acompact)
undo = sync_twin(aundo)
delete = sync_twin(adelete)
purge = sync_twin(apurge)
retain = sync_twin(aretain)
audit = sync_twin(aaudit)
erase_user = sync_twin(aerase_user)
vacuum = sync_twin(avacuum)
