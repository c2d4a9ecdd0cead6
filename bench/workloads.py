"""The workloads: who is measured (contenders) and each measurement as one function.

Every contender runs the very same graph shape with the same offline model, so the
only difference between them is where and how the checkpoints go:

* ``inmemory``: langgraph's ``InMemorySaver`` (the baseline of the ratios);
* ``stock_pg``: langgraph's ``AsyncPostgresSaver`` on one connection;
* ``memagent``: memagent's saver from ``open_saver`` (pool, strict serializer,
  memory metadata), driven exactly like the two above;
* ``memagent_chat``: the same saver through ``ChatSession.send`` (validation, thread
  lease, streaming), which is what ``memagent chat`` does per turn;
* ``delta_<K>``: memagent's saver with the ``DeltaChannel`` prototype
  (``bench.delta``, proposed variant) snapshotting every K message updates.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from agent.checkpointer import open_saver
from agent.graph import make_graph
from agent.model import OfflineChatModel
from agent.operations import root_config
from agent.session import ChatSession
from agent.settings import Settings
from bench.db import thread_storage
from bench.delta import Graph, MemoryOps, delta_ops, offline_delta_graph, stock_ops

# Words the offline model treats as plain chat: none of them triggers a memory tool
# ("forget", "rewind", "timeline", ...) or a recall answer ("remember", "what is my").
VOCABULARY = (
    "the kettle garden train river morning coffee tomorrow meeting project budget "
    "friend window yellow quiet quickly because maybe letter music station weekend "
    "bicycle mountain report draft tea dinner cousin paint blue shelf notebook plan "
    "holiday ticket spreadsheet lamp email invoice recipe bread oven soup walk park"
)
WORDS = tuple(VOCABULARY.split())


def user_text(index: int, chars: int) -> str:
    """A deterministic, ordinary user message of about ``chars`` characters.

    Seeded by ``index`` so every contender gets the same conversation.
    """
    rng = random.Random(index)
    words = [f"({index})"]
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


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
        storage_url: The database to measure storage in; ``None`` for in-memory.
        ops: Forget/rewind/timeline for this contender, if measured.
    """

    key: str
    label: str
    graph: Graph
    turn: Callable[[str, str], Awaitable[None]]
    storage_url: str | None = None
    ops: MemoryOps | None = None


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


@asynccontextmanager
async def open_contenders(
    url: str, home: Path, *, delta_frequencies: Sequence[int] = ()
) -> AsyncIterator[list[Contender]]:
    """Opens every contender on the run's database; closes their connections on exit."""
    async with (
        open_saver(bench_settings(url, home), database_url=url) as saver,
        AsyncPostgresSaver.from_conn_string(url) as stock,
    ):
        await stock.setup()  # memagent's setup already made the tables: a no-op check
        model = OfflineChatModel()
        inmemory = make_graph(model, checkpointer=InMemorySaver())
        stock_graph = make_graph(model, checkpointer=stock)
        memagent_graph = make_graph(model, checkpointer=saver)
        session = ChatSession(graph=memagent_graph, saver=saver)
        contenders = [
            Contender("inmemory", "InMemorySaver", inmemory, graph_turn(inmemory)),
            Contender(
                "stock_pg",
                "AsyncPostgresSaver (1 conn)",
                stock_graph,
                graph_turn(stock_graph),
                storage_url=url,
            ),
            Contender(
                "memagent",
                "memagent saver",
                memagent_graph,
                graph_turn(memagent_graph),
                storage_url=url,
                ops=stock_ops(memagent_graph),
            ),
            Contender(
                "memagent_chat", "memagent ChatSession", memagent_graph, session_turn(session)
            ),
        ]
        for frequency in delta_frequencies:
            delta = offline_delta_graph(saver, frequency, "proposed")
            contenders.append(
                Contender(
                    f"delta_{frequency}",
                    f"memagent + DeltaChannel({frequency})",
                    delta,
                    graph_turn(delta),
                    storage_url=url,
                    ops=delta_ops(delta, "proposed"),
                )
            )
        yield contenders


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
    """Bytes the thread occupies in PostgreSQL, next to the conversation's own size.

    Args:
        contender: Whose database and graph to read.
        thread_id: The thread.
        residue: Bytes and rows that earlier memory-operation measurements added to
            this thread; left out of ``stored``/``logical``/``rows`` (see
            ``at_length``) and reported apart.
    """
    assert contender.storage_url is not None
    tables = await thread_storage(contender.storage_url, thread_id)
    residue = residue or {"stored": 0, "logical": 0, "rows": 0}
    return {
        "tables": tables,
        "stored": sum(t["stored"] for t in tables.values()) - residue["stored"],
        "logical": sum(t["logical"] for t in tables.values()) - residue["logical"],
        "rows": sum(t["rows"] for t in tables.values()) - residue["rows"],
        "memory_ops_residue": dict(residue),
        "raw": await message_bytes(contender.graph, thread_id),
    }


async def memory_op_latency(ops: MemoryOps, thread_id: str, rounds: int) -> dict[str, Any]:
    """Times timeline(20), forget and rewind on a thread, ``rounds`` times each.

    Each round forgets the whole thread and rewinds to the head it had before, so
    every forget and every rewind sees the same thread length.
    """
    saver = ops.graph.checkpointer
    assert isinstance(saver, BaseCheckpointSaver)
    head = await saver.aget_tuple(root_config(thread_id))
    assert head is not None
    head_id = str(head.config["configurable"]["checkpoint_id"])
    timings: dict[str, list[float]] = {"timeline": [], "forget": [], "rewind": []}
    entries = 0
    for _ in range(rounds):
        started = time.perf_counter()
        entries = len(await ops.timeline(thread_id, 20))
        timings["timeline"].append(time.perf_counter() - started)
        started = time.perf_counter()
        await ops.forget(thread_id)
        timings["forget"].append(time.perf_counter() - started)
        started = time.perf_counter()
        await ops.rewind(thread_id, head_id)
        timings["rewind"].append(time.perf_counter() - started)
    return {
        **{name: summarize(values) for name, values in timings.items()},
        "timeline_entries": entries,
    }


@dataclass
class SweepResult:
    """What the length sweep measured, keyed by contender and thread length."""

    latency: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    storage: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    ops: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0


async def at_length(
    contenders: Sequence[Contender],
    threads: dict[str, str],
    length: int,
    rounds: int,
    residue: dict[str, dict[str, int]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Storage and memory-operation latency of each main thread at exactly ``length``.

    The memory operations write checkpoints of their own (a rewind even stores the
    whole conversation again), which would be counted as the thread's storage at the
    next length. So storage is measured before and after them, and what they added
    (``residue``, accumulated per contender) is subtracted from later measurements.
    """
    storage: dict[str, Any] = {}
    ops: dict[str, Any] = {}
    for contender in contenders:
        if contender.storage_url is not None:
            storage[contender.key] = await storage_at(
                contender, threads[contender.key], residue.get(contender.key)
            )
    for contender in contenders:
        if contender.ops is None or rounds <= 0:
            continue
        thread_id = threads[contender.key]
        ops[contender.key] = await memory_op_latency(contender.ops, thread_id, rounds)
        if contender.storage_url is not None:
            after = await storage_at(contender, thread_id, residue.get(contender.key))
            added = residue.setdefault(contender.key, {"stored": 0, "logical": 0, "rows": 0})
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
    lengths: Sequence[int],
    *,
    samples: int,
    chars: int,
    op_rounds: int,
    progress: Callable[[str], None],
) -> SweepResult:
    """Turn latency, storage and memory-operation latency against thread length.

    One main thread per contender grows through every length. At length N the turns
    from N - w/2 to N + w/2 are timed (w = min(samples, N)); storage and memory
    operations are measured when the thread holds exactly N turns.
    """
    result = SweepResult()
    for c in contenders:
        result.latency[c.key], result.storage[c.key], result.ops[c.key] = {}, {}, {}
    threads = {c.key: f"{c.key}-main-{uuid.uuid4()}" for c in contenders}
    residue: dict[str, dict[str, int]] = {}
    started, done = time.perf_counter(), 0
    for length in sorted(lengths):
        window = min(samples, length)
        start, end = length - window // 2, length + (window - window // 2)
        timings: dict[str, list[float]] = {c.key: [] for c in contenders}
        await run_turns(contenders, threads, done, start, chars)
        await run_turns(contenders, threads, start, length, chars, timings)
        storage, ops = await at_length(contenders, threads, length, op_rounds, residue)
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
    return result


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
