"""The compaction workload (issue 18): a long chat under a context budget against stock's.

Three contenders run the very same graph (``agent.graph.make_graph``) on the same
conversation, each in a database of its own:

* ``stock``: langgraph's ``AsyncPostgresSaver`` on a pool of memagent's size, with a
  budget no thread reaches, so compaction never happens and every call sends the
  whole thread (what a graph without compaction does);
* ``memagent_full``: memagent's saver with that same unreachable budget: the baseline
  of the storage ratio (the same saver, minus compaction);
* ``memagent_compact``: memagent's saver with the budget ``COMPACTION_BUDGET``: before
  a call that would not fit, the graph's ``compact`` node replaces the oldest turns
  with a running summary.

The chat model is ``ChattyModel``: deterministic replies of 500 to 1,500 characters
(a real assistant's size, not the offline model's one-line acknowledgement), no
network, and a record of everything each call received, counted after the turn with
``count_tokens_approximately(messages, tools=bound_tools)``. The summariser is the
offline model, whose summary is its deterministic extract (``offline_summary``): the
user's statements about themselves, quoted, up to the summary's size limit.
"""

from __future__ import annotations

import gc
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import Field

from agent.checkpointer import open_saver
from agent.graph import make_graph
from agent.memory.summary import is_summary
from agent.model import OfflineChatModel
from bench.db import BenchServer
from bench.workloads import (
    WORDS,
    Contender,
    bench_settings,
    graph_turn,
    stock_pool_saver,
    storage_at,
    summarize,
    user_text,
    warm_up,
)

COMPACTION_BUDGET = 8_000
"""memagent's context budget here: an 8k-token window, as small local models have."""
UNREACHABLE_BUDGET = 10**9
"""A budget no thread of the bench reaches: the graph never compacts, it sends it all."""
REPLY_CHARS = (500, 1500)
"""The shortest and longest reply, in characters."""
FACT_EVERY = 5
"""Every fifth user message states something about the user ("my X is ..."): what
the offline summariser keeps, so the summary is as full as a real one would be."""

STOCK = "stock"
FULL = "memagent_full"
COMPACT = "memagent_compact"


def chat_text(index: int, chars: int) -> str:
    """User message ``index``: ``user_text``'s ordinary words, now and then a fact."""
    text = user_text(index, chars)
    if index % FACT_EVERY:
        return text
    rng = random.Random(-index)
    topic, value = rng.choice(WORDS), rng.choice(WORDS)
    fact = f"my {topic} is {value} {index}."
    return f"{fact} {text}"[: max(chars, len(fact))]


def reply_text(messages: Sequence[BaseMessage]) -> str:
    """A reply of ``REPLY_CHARS`` characters, seeded by the last user message's text.

    So every contender gets the same reply to the same message, whatever it was sent
    along with it.
    """
    last = next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), "")
    rng = random.Random(last)
    size = rng.randint(*REPLY_CHARS)
    words: list[str] = []
    length = 0
    while length < size:
        words.append(rng.choice(WORDS))
        length += len(words[-1]) + 1
    return " ".join(words)[:size]


class ChattyModel(BaseChatModel):
    """A deterministic chat model with long replies that keeps what each call received.

    The inputs are kept as they arrive, without counting, so the turn's time is the
    graph's and the saver's; ``drain`` counts them after the turn.
    """

    bound: list[BaseTool | dict[str, Any]] = Field(default_factory=list)
    received: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "memagent-bench-chatty"

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Any | BaseTool], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        self.bound = [t for t in tools if isinstance(t, BaseTool | dict)]
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.received.append(list(messages))
        reply = AIMessage(content=reply_text(messages))
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # langchain's default runs ``_generate`` in a thread pool: a hop no model has.
        return self._generate(messages, stop, **kwargs)

    def drain(self) -> list[tuple[int, str | None]]:
        """Each call received since the last drain: its tokens, and its summary's id."""
        calls = [
            (
                count_tokens_approximately(messages, tools=self.bound),
                next((m.id for m in messages if is_summary(m)), None),
            )
            for messages in self.received
        ]
        self.received.clear()
        return calls


@dataclass
class Chatter:
    """A contender of this workload: how its turn runs, and the model it talks to."""

    contender: Contender
    model: ChattyModel
    budget: int | None


@asynccontextmanager
async def open_chatters(
    server: BenchServer, home: Path, budget: int
) -> AsyncIterator[list[Chatter]]:
    """The three contenders, each on a fresh database; closed and dropped on exit."""
    summariser = OfflineChatModel()
    async with AsyncExitStack() as stack:

        async def database(key: str) -> str:
            return await stack.enter_async_context(server.database(key))

        chatters: list[Chatter] = []
        url = await database("cmp_stock")
        pool_size = bench_settings(url, home).pool_max_size
        stock = await stock_pool_saver(stack, url, pool_size)
        model = ChattyModel()
        graph = make_graph(
            model, checkpointer=stock, context_tokens=UNREACHABLE_BUDGET, summary_model=summariser
        )
        label = f"AsyncPostgresSaver (pool of {pool_size}), whole thread"
        chatters.append(
            Chatter(Contender(STOCK, label, graph, graph_turn(graph), url), model, None)
        )
        for key, label, limit in (
            (FULL, "memagent saver, whole thread", None),
            (COMPACT, f"memagent saver, compaction at {budget} tokens", budget),
        ):
            url = await database(key.replace("memagent_", "cmp_"))
            saver = await stack.enter_async_context(
                open_saver(bench_settings(url, home / key), database_url=url)
            )
            model = ChattyModel()
            graph = make_graph(
                model,
                checkpointer=saver,
                context_tokens=limit or UNREACHABLE_BUDGET,
                summary_model=summariser,
            )
            contender = Contender(key, label, graph, graph_turn(graph), url, saver)
            chatters.append(Chatter(contender, model, limit))
        yield chatters


@dataclass
class CompactionResult:
    """What the workload measured, keyed by contender and thread length.

    Attributes:
        tokens: The tokens the model received in the turn that made the thread N turns.
        latency: Turn latency around each length (``summarize``).
        storage: Bytes the thread occupies at exactly N turns (``storage_at``).
        calls: Per contender, over the whole run: model calls, the most tokens of any
            call, the calls over the budget and the compactions the model saw.
    """

    budget: int
    labels: dict[str, str]
    tokens: dict[str, dict[int, int]] = field(default_factory=dict)
    latency: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    storage: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


class Tally:
    """Every call each contender's model received, counted after each turn."""

    def __init__(self, chatters: Sequence[Chatter]) -> None:
        self.chatters = {c.contender.key: c for c in chatters}
        self.totals: dict[str, dict[str, Any]] = {
            key: {"calls": 0, "max_tokens": 0, "over_budget": 0, "summaries": set()}
            for key in self.chatters
        }

    def turn_done(self, key: str) -> int:
        """Counts the calls of the turn just run on ``key``; returns the turn's tokens."""
        chatter, total = self.chatters[key], self.totals[key]
        tokens = 0
        for count, summary_id in chatter.model.drain():
            tokens += count
            total["calls"] += 1
            total["max_tokens"] = max(total["max_tokens"], count)
            total["over_budget"] += chatter.budget is not None and count > chatter.budget
            if summary_id is not None:
                total["summaries"].add(summary_id)
        return tokens

    def report(self) -> dict[str, dict[str, Any]]:
        """The totals, with the compactions (distinct summaries seen) as a number."""
        return {
            key: {
                **{k: v for k, v in t.items() if k != "summaries"},
                "compactions": len(t["summaries"]),
            }
            for key, t in self.totals.items()
        }


async def chat_turns(
    chatters: Sequence[Chatter],
    threads: dict[str, str],
    first: int,
    last: int,
    chars: int,
    tally: Tally,
    timings: dict[str, list[float]] | None = None,
) -> dict[str, int]:
    """Turns ``first+1 .. last`` on each thread, round robin; the last turn's tokens.

    Only the turn itself is timed; its calls are counted after it. Before a timed
    turn, the garbage the other contenders' turns left is collected: a stock turn at
    1000 turns decodes the whole thread and leaves thousands of messages behind, and a
    collection of them that happened to start inside the next contender's turn would
    be charged to that turn. Each turn still pays for its own garbage.
    """
    tokens: dict[str, int] = {}
    for index in range(first, last):
        text = chat_text(index, chars)
        for chatter in chatters:
            key = chatter.contender.key
            if timings is not None:
                gc.collect()
            started = time.perf_counter()
            await chatter.contender.turn(threads[key], text)
            if timings is not None:
                timings[key].append(time.perf_counter() - started)
            tokens[key] = tally.turn_done(key)
    return tokens


async def compaction_sweep(
    chatters: Sequence[Chatter],
    lengths: Sequence[int],
    *,
    samples: int,
    chars: int,
    progress: Callable[[str], None],
) -> CompactionResult:
    """Tokens per call, turn latency and storage against thread length.

    As ``bench.workloads.length_sweep``: one main thread per contender grows through
    every length, the turns from N - w/2 to N + w/2 are timed (w = min(samples, N)),
    and at a short length the window is repeated on fresh threads until there are
    ``samples`` timings, after a few untimed turns on a thread of their own (as
    ``warm_up`` does for the other workloads). Every turn goes through the graph, so
    every compaction is the graph's own. At exactly N turns, the tokens the model
    received in turn N and the thread's storage are taken.
    """
    await warm_up([c.contender for c in chatters])
    for chatter in chatters:
        chatter.model.drain()  # the warm-up's calls are not the run's
    keys = [c.contender.key for c in chatters]
    budget = next(c.budget for c in chatters if c.budget is not None)
    result = CompactionResult(budget, {c.contender.key: c.contender.label for c in chatters})
    for key in keys:
        result.tokens[key], result.latency[key], result.storage[key] = {}, {}, {}
    tally = Tally(chatters)
    threads = {key: f"{key}-main-{uuid.uuid4()}" for key in keys}
    started, done = time.perf_counter(), 0
    for length in sorted(lengths):
        window = min(samples, length)
        start, end = length - window // 2, length + (window - window // 2)
        timings: dict[str, list[float]] = {key: [] for key in keys}
        await chat_turns(chatters, threads, done, start, chars, tally)
        tokens = await chat_turns(chatters, threads, start, length, chars, tally, timings)
        for chatter in chatters:
            key = chatter.contender.key
            result.tokens[key][length] = tokens[key]
            result.storage[key][length] = await storage_at(chatter.contender, threads[key])
        await chat_turns(chatters, threads, length, end, chars, tally, timings)
        while min(len(t) for t in timings.values()) < samples:
            extra = {key: f"{key}-extra-{uuid.uuid4()}" for key in keys}
            await chat_turns(chatters, extra, 0, start, chars, tally)
            await chat_turns(chatters, extra, start, start + window, chars, tally, timings)
        done = end
        for key, values in timings.items():
            result.latency[key][length] = summarize(values[:samples])
        progress(
            f"compaction, length {length}: done ({time.perf_counter() - started:.0f} s so far)"
        )
    result.calls = tally.report()
    result.seconds = time.perf_counter() - started
    return result
