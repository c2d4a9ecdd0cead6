"""The workloads: who is measured (contenders) and each measurement as one function.

Every contender runs the very same graph (``agent.graph.make_graph``) with the same
offline model on the same conversation, each in a PostgreSQL database of its own, so
the only difference between them is where and how the checkpoints go:

* ``inmemory``: langgraph's ``InMemorySaver`` (the baseline of the latency ratios);
* ``stock_pool``: langgraph's ``AsyncPostgresSaver`` on a ``psycopg_pool`` pool of
  memagent's size, as langgraph's documentation deploys it (the baseline of the
  storage and throughput ratios);
* ``stock_conn``: the same saver on one connection (``from_conn_string``);
* ``memagent``: memagent's saver from ``open_saver``, driven with ``ainvoke`` like the
  three above; the memory operations are measured on it, through ``tools.admin``;
* ``memagent_chat``: memagent's saver through ``ChatSession.send`` (checks, thread
  lease, streamed reply), which is what ``memagent chat`` does per turn.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph.state import CompiledStateGraph
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from agent.checkpointer import MemagentSaver, open_saver
from agent.graph import make_graph
from agent.model import OfflineChatModel
from agent.session import ChatSession
from agent.settings import Settings
from bench.db import BenchServer, thread_storage
from bench.phases import PHASES, instrumented
from bench.roundtrips import RoundTripRelay
from tools import admin

Graph = CompiledStateGraph[Any, Any, Any, Any]

# Words the offline model treats as plain chat: none of them triggers a memory tool
# ("forget", "rewind", "timeline", ...) or a recall answer ("remember", "what is my").
VOCABULARY = (
    "the kettle garden train river morning coffee tomorrow meeting project budget "
    "friend window yellow quiet quickly because maybe letter music station weekend "
    "bicycle mountain report draft tea dinner cousin paint blue shelf notebook plan "
    "holiday ticket spreadsheet lamp email invoice recipe bread oven soup walk park"
)
WORDS = tuple(VOCABULARY.split())

REWIND_TURNS_BACK = 5
"""The rewind measured goes from the full head to the conversation this many turns ago."""


def user_text(index: int, chars: int) -> str:
    """A deterministic, ordinary user message of about ``chars`` characters.

    Seeded by ``index`` so every contender gets the same conversation. It starts with
    ``(index)``, so its first words are a quote found in this message only.
    """
    rng = random.Random(index)
    words = [f"({index})"]
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def quote_of(index: int, chars: int) -> str:
    """A detail of message ``index`` to redact: its first three words, unique to it."""
    return " ".join(user_text(index, chars).split()[:3])


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Median, p95 (nearest rank) and count of latency samples, in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {"n": 0, "median_ms": None, "p95_ms": None, "samples_ms": []}
    rank = max(0, min(len(ms) - 1, round(0.95 * len(ms) + 0.5) - 1))
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p95_ms": ms[rank],
        "samples_ms": [round(v, 3) for v in ms],
    }


@dataclass
class Contender:
    """One way of running a turn, plus what can be measured on it.

    Attributes:
        key: Short name used in the JSON.
        label: Human name used in the table.
        graph: The compiled graph (its checkpointer holds the threads).
        turn: ``(thread_id, text)``: runs one turn to completion.
        storage_url: The contender's own database; ``None`` for in-memory.
        saver: memagent's saver, for the memory operations and the time breakdown;
            ``None`` where they are not measured.
    """

    key: str
    label: str
    graph: Graph
    turn: Callable[[str, str], Awaitable[None]]
    storage_url: str | None = None
    saver: MemagentSaver | None = None


def graph_turn(graph: Graph) -> Callable[[str, str], Awaitable[None]]:
    """A turn as every contender but the chat runs it: one ``ainvoke``."""

    async def turn(thread_id: str, text: str) -> None:
        await graph.ainvoke(
            {"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": thread_id}}
        )

    return turn


def session_turn(session: ChatSession) -> Callable[[str, str], Awaitable[None]]:
    """A turn as ``memagent chat`` runs it (checks, thread lease, streamed reply)."""

    async def turn(thread_id: str, text: str) -> None:
        await session.send(thread_id, text)

    return turn


def bench_settings(url: str, home: Path) -> Settings:
    """memagent's settings for the run: its database, offline model, default pool."""
    return Settings(
        database_url=url, home=home, model="offline", openai_api_key=None, openai_base_url=None
    )


async def stock_pool_saver(stack: AsyncExitStack, url: str, pool_size: int) -> AsyncPostgresSaver:
    """langgraph's saver on a pool, the way langgraph's documentation sets it up."""
    pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
        url,
        max_size=pool_size,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    await pool.open(wait=True)
    stack.push_async_callback(pool.close)
    saver = AsyncPostgresSaver(pool)
    await saver.setup()
    return saver


@asynccontextmanager
async def open_contenders(server: BenchServer, home: Path) -> AsyncIterator[list[Contender]]:
    """Opens every contender, each on a fresh database; closes and drops them on exit."""
    model = OfflineChatModel()
    async with AsyncExitStack() as stack:

        async def database(key: str) -> str:
            return await stack.enter_async_context(server.database(key))

        url = await database("memagent")
        settings = bench_settings(url, home / "memagent")
        saver = await stack.enter_async_context(open_saver(settings, database_url=url))
        graph = make_graph(model, checkpointer=saver)
        memagent = Contender(
            "memagent", "memagent saver", graph, graph_turn(graph), storage_url=url, saver=saver
        )
        url = await database("chat")
        chat_saver = await stack.enter_async_context(
            open_saver(bench_settings(url, home / "chat"), database_url=url)
        )
        session = ChatSession(
            graph=make_graph(model, checkpointer=chat_saver), saver=chat_saver, model=model
        )
        chat = Contender(
            "memagent_chat",
            "memagent ChatSession",
            session.graph,
            session_turn(session),
            storage_url=url,
        )
        url = await database("stock_pool")
        pool_saver = await stock_pool_saver(stack, url, settings.pool_max_size)
        graph = make_graph(model, checkpointer=pool_saver)
        stock_pool = Contender(
            "stock_pool",
            f"AsyncPostgresSaver (pool of {settings.pool_max_size})",
            graph,
            graph_turn(graph),
            storage_url=url,
        )
        url = await database("stock_conn")
        conn_saver = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(url))
        await conn_saver.setup()
        graph = make_graph(model, checkpointer=conn_saver)
        stock_conn = Contender(
            "stock_conn",
            "AsyncPostgresSaver (1 connection)",
            graph,
            graph_turn(graph),
            storage_url=url,
        )
        graph = make_graph(model, checkpointer=InMemorySaver())
        inmemory = Contender("inmemory", "InMemorySaver", graph, graph_turn(graph))
        yield [inmemory, stock_pool, stock_conn, memagent, chat]


async def warm_up(contenders: Sequence[Contender], turns: int = 3) -> None:
    """A few untimed turns each: imports, pool connections and caches are ready."""
    for contender in contenders:
        thread_id = f"warmup-{contender.key}-{uuid.uuid4()}"
        for i in range(turns):
            await contender.turn(thread_id, user_text(10_000 + i, 60))


async def run_turns(
    contenders: Sequence[Contender],
    threads: dict[str, str],
    first: int,
    last: int,
    chars: int,
    timings: dict[str, list[float]] | None = None,
) -> None:
    """Runs turns ``first+1 .. last`` on each contender's thread, round robin.

    Round robin (turn i on every contender, then turn i+1) spreads any machine noise
    evenly over the contenders. With ``timings``, each turn's wall time is recorded.
    """
    for index in range(first, last):
        text = user_text(index, chars)
        for contender in contenders:
            started = time.perf_counter()
            await contender.turn(threads[contender.key], text)
            if timings is not None:
                timings[contender.key].append(time.perf_counter() - started)


async def message_bytes(graph: Graph, thread_id: str) -> dict[str, int]:
    """The size of the thread's conversation itself, for the storage ratio.

    ``text``: UTF-8 bytes of the messages' text, what a user would call the
    conversation. ``serialized``: each message serialized once by langgraph's
    serializer (ids, types and metadata included): the floor for any saver that
    stores every message once.
    """
    snapshot = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    messages: list[BaseMessage] = list(snapshot.values.get("messages") or [])
    serde = JsonPlusSerializer()
    return {
        "messages": len(messages),
        "text": sum(len(m.text.encode()) for m in messages),
        "serialized": sum(len(serde.dumps_typed(m)[1]) for m in messages),
    }


async def storage_at(
    contender: Contender, thread_id: str, residue: dict[str, int] | None = None
) -> dict[str, Any]:
    """Bytes the thread occupies in the contender's database, next to the conversation's.

    Args:
        contender: Whose database and graph to read.
        thread_id: The thread.
        residue: Bytes and rows that earlier memory-operation measurements added to
            this thread; left out of ``stored``/``rows`` (see ``at_length``) and
            reported apart.
    """
    assert contender.storage_url is not None
    tables = await thread_storage(contender.storage_url, thread_id)
    residue = residue or {"stored": 0, "rows": 0}
    return {
        "tables": tables,
        "stored": sum(t["stored"] for t in tables.values()) - residue["stored"],
        "rows": sum(t["rows"] for t in tables.values()) - residue["rows"],
        "memory_ops_residue": dict(residue),
        "raw": await message_bytes(contender.graph, thread_id),
    }


async def timed(call: Awaitable[Any], into: list[float]) -> Any:
    """Awaits ``call`` and appends its wall time to ``into``."""
    started = time.perf_counter()
    result = await call
    into.append(time.perf_counter() - started)
    return result


async def memory_op_latency(
    saver: MemagentSaver, thread_id: str, rounds: int, quotes: Sequence[str]
) -> dict[str, Any]:
    """Times timeline(20), forget, rewind and redact through ``tools.admin``.

    Every forget and every rewind starts from the same full head: after each, an
    untimed rewind restores that head. The rewind goes back ``REWIND_TURNS_BACK``
    turns (to the rewind point the timeline shows for that turn). Then each of
    ``quotes`` (a detail of one earlier message each) is redacted with
    ``tools.admin.aredact``, one call per quote.
    """
    head = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
    assert head is not None
    head_id = str(head.config["configurable"]["checkpoint_id"])
    entries = await admin.atimeline(saver, thread_id, limit=4 * REWIND_TURNS_BACK)
    turns = [entry for entry in entries if entry.kind == "turn"]
    target = turns[min(REWIND_TURNS_BACK, len(turns)) - 1].checkpoint_id
    timings: dict[str, list[float]] = {"timeline": [], "forget": [], "rewind": []}
    shown = 0
    for _ in range(rounds):
        shown = len(await timed(admin.atimeline(saver, thread_id, limit=20), timings["timeline"]))
        await timed(admin.aforget(saver, thread_id), timings["forget"])
        await admin.arewind(saver, thread_id, head_id)
        await timed(admin.arewind(saver, thread_id, target), timings["rewind"])
        await admin.arewind(saver, thread_id, head_id)
    result: dict[str, Any] = {name: summarize(values) for name, values in timings.items()}
    result["timeline_entries"] = shown
    redacts: list[float] = []
    for quote in quotes:
        await timed(admin.aredact(saver, thread_id, [quote]), redacts)
    result["redact"] = summarize(redacts)
    return result


@dataclass
class SweepResult:
    """What the length sweep measured, keyed by contender and thread length.

    Attributes:
        turns_done: How many turns the main threads hold at the end.
    """

    latency: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    storage: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    ops: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0
    turns_done: int = 0


async def at_length(
    contenders: Sequence[Contender],
    threads: dict[str, str],
    length: int,
    rounds: int,
    quotes: Sequence[str],
    residue: dict[str, dict[str, int]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Storage and memory-operation latency of each main thread at exactly ``length``.

    The memory operations write checkpoints of their own (with today's storage a
    rewind stores the whole conversation again), which would be counted as the
    thread's storage at the next length. So storage is measured before and after them,
    and what they added (``residue``, accumulated per contender) is subtracted from
    later measurements.
    """
    storage: dict[str, Any] = {}
    ops: dict[str, Any] = {}
    for contender in contenders:
        if contender.storage_url is not None:
            storage[contender.key] = await storage_at(
                contender, threads[contender.key], residue.get(contender.key)
            )
    for contender in contenders:
        if contender.saver is None or rounds <= 0:
            continue
        thread_id = threads[contender.key]
        ops[contender.key] = await memory_op_latency(contender.saver, thread_id, rounds, quotes)
        after = await storage_at(contender, thread_id, residue.get(contender.key))
        added = residue.setdefault(contender.key, {"stored": 0, "rows": 0})
        for measure in added:
            added[measure] += after[measure] - storage[contender.key][measure]
    return storage, ops


async def top_up(
    contenders: Sequence[Contender],
    timings: dict[str, list[float]],
    start: int,
    window: int,
    samples: int,
    chars: int,
) -> None:
    """More samples at a short length, from fresh threads grown to the same point.

    At length 10 a window of 30 turns would measure lengths 0-25, not 10; instead the
    window stays ``window`` wide and is repeated on new threads until there are
    ``samples`` timings.
    """
    while min(len(t) for t in timings.values()) < samples:
        threads = {c.key: f"{c.key}-extra-{uuid.uuid4()}" for c in contenders}
        await run_turns(contenders, threads, 0, start, chars)
        await run_turns(contenders, threads, start, start + window, chars, timings)


async def length_sweep(
    contenders: Sequence[Contender],
    threads: dict[str, str],
    lengths: Sequence[int],
    *,
    samples: int,
    chars: int,
    op_rounds: int,
    redact_rounds: int,
    progress: Callable[[str], None],
) -> SweepResult:
    """Turn latency, storage and memory-operation latency against thread length.

    One main thread per contender (``threads``) grows through every length. At
    length N the turns from N - w/2 to N + w/2 are timed (w = min(samples, N));
    storage and memory operations are measured when the thread holds exactly N turns.
    Each length redacts ``redact_rounds`` quotes of its own (of messages the thread
    holds, never redacted before), so every redact finds its quote.
    """
    result = SweepResult()
    for c in contenders:
        result.latency[c.key], result.storage[c.key], result.ops[c.key] = {}, {}, {}
    residue: dict[str, dict[str, int]] = {}
    started, done, quoted = time.perf_counter(), 0, 0
    for length in sorted(lengths):
        quotes = [quote_of(i, chars) for i in range(quoted, min(quoted + redact_rounds, length))]
        quoted += len(quotes)
        window = min(samples, length)
        start, end = length - window // 2, length + (window - window // 2)
        timings: dict[str, list[float]] = {c.key: [] for c in contenders}
        await run_turns(contenders, threads, done, start, chars)
        await run_turns(contenders, threads, start, length, chars, timings)
        storage, ops = await at_length(contenders, threads, length, op_rounds, quotes, residue)
        await run_turns(contenders, threads, length, end, chars, timings)
        await top_up(contenders, timings, start, window, samples, chars)
        done = end
        for key, values in timings.items():
            result.latency[key][length] = summarize(values[:samples])
        for key, value in storage.items():
            result.storage[key][length] = value
        for key, value in ops.items():
            result.ops[key][length] = value
        progress(f"length {length}: done ({time.perf_counter() - started:.0f} s so far)")
    result.seconds = time.perf_counter() - started
    result.turns_done = done
    return result


async def turn_phases(
    contender: Contender, thread_id: str, first: int, turns: int, chars: int
) -> dict[str, Any]:
    """Where the time of ``turns`` turns on a long thread goes (see ``bench.phases``).

    Runs turns ``first+1 .. first+turns`` on ``thread_id`` with the saver's reads,
    writes and (de)serialization timed; per phase, the median over the turns.
    """
    assert contender.saver is not None
    samples: dict[str, list[float]] = {name: [] for name in ("turn", *PHASES, "other")}
    calls: dict[str, list[int]] = {name: [] for name in PHASES}
    with instrumented(contender.saver) as clock:
        for index in range(first, first + turns):
            clock.reset()
            started = time.perf_counter()
            await contender.turn(thread_id, user_text(index, chars))
            total = time.perf_counter() - started
            samples["turn"].append(total)
            for name in PHASES:
                samples[name].append(clock.seconds[name])
                calls[name].append(clock.calls[name])
            samples["other"].append(total - clock.seconds["read"] - clock.seconds["write"])
    return {
        "length": first,
        **{name: summarize(values) for name, values in samples.items()},
        "calls": {name: statistics.median(values) for name, values in calls.items()},
    }


async def throughput(
    contender: Contender, *, threads: int, turns_each: int, chars: int
) -> dict[str, Any]:
    """Turns per second with ``threads`` conversations running at once.

    Each conversation is a fresh thread doing ``turns_each`` turns one after another;
    all conversations start together, as users of one server would.
    """

    async def conversation(number: int) -> None:
        thread_id = f"{contender.key}-tp-{number}-{uuid.uuid4()}"
        for index in range(turns_each):
            await contender.turn(thread_id, user_text(number * 1000 + index, chars))

    started = time.perf_counter()
    await asyncio.gather(*(conversation(n) for n in range(threads)))
    seconds = time.perf_counter() - started
    turns = threads * turns_each
    return {"threads": threads, "turns": turns, "seconds": seconds, "turns_per_s": turns / seconds}


IN_RUN_FORGET = "please forget everything we said"
"""A user message on which the offline model calls ``forget_conversation``."""


async def round_trips(
    contenders: Sequence[Contender], home: Path, *, grow: int, turns: int, chars: int
) -> dict[str, dict[str, float]]:
    """SQL round trips per operation, counted by a relay (``bench.roundtrips``).

    For stock on a pool and memagent (``ainvoke`` and ``ChatSession``), a saver of the
    same kind is opened on the contender's database through the relay; a fresh
    thread grows to ``grow`` turns uncounted, then ``turns`` plain turns are counted
    (the mean per turn: a message-number reservation every ~30 turns makes it
    fractional). On memagent's saver also a turn that forgets in the run, and
    ``tools.admin``'s forget and rewind (5 turns back) from the full head.
    """
    result: dict[str, dict[str, float]] = {}
    model = OfflineChatModel()
    for contender in contenders:
        if contender.storage_url is None or contender.key == "stock_conn":
            continue
        relay = RoundTripRelay(contender.storage_url)
        async with relay.running() as url, AsyncExitStack() as stack:
            saver: Any
            settings = bench_settings(url, home / f"trips-{contender.key}")
            if contender.key == "stock_pool":
                saver = await stock_pool_saver(stack, url, settings.pool_max_size)
            else:
                saver = await stack.enter_async_context(open_saver(settings, database_url=url))
            graph = make_graph(model, checkpointer=saver)
            turn = graph_turn(graph)
            if contender.key == "memagent_chat":
                turn = session_turn(ChatSession(graph=graph, saver=saver, model=model))
            thread_id = f"{contender.key}-trips-{uuid.uuid4()}"
            for index in range(grow):
                await turn(thread_id, user_text(index, chars))
            counts: dict[str, float] = {}
            total = 0
            for index in range(grow, grow + turns):
                total += await relay.count(turn(thread_id, user_text(index, chars)))
            counts["plain turn"] = total / turns
            if contender.key == "memagent":
                counts.update(await memory_op_trips(relay, saver, turn, thread_id))
            result[contender.key] = counts
    return result


async def memory_op_trips(
    relay: RoundTripRelay,
    saver: MemagentSaver,
    turn: Callable[[str, str], Awaitable[None]],
    thread_id: str,
) -> dict[str, float]:
    """Round trips of memagent's memory operations from the thread's full head."""
    head = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
    assert head is not None
    head_id = str(head.config["configurable"]["checkpoint_id"])
    entries = await admin.atimeline(saver, thread_id, limit=4 * REWIND_TURNS_BACK)
    target = [e for e in entries if e.kind == "turn"][REWIND_TURNS_BACK - 1].checkpoint_id
    counts: dict[str, float] = {
        "tools.admin forget": await relay.count(admin.aforget(saver, thread_id)),
    }
    await admin.arewind(saver, thread_id, head_id)
    rewind = admin.arewind(saver, thread_id, target)
    counts["tools.admin rewind, 5 back"] = await relay.count(rewind)
    await admin.arewind(saver, thread_id, head_id)
    counts["in-run forget turn"] = await relay.count(turn(thread_id, IN_RUN_FORGET))
    return counts
