"""Compaction on every route, against a real PostgreSQL: docs/SPEC.md, "Context budget and
compaction".

Long threads with a small budget are run on the bare graph, ``ChatSession`` and the
terminal chat, with recording models, so every call the chat model and the summariser
received is checked against ``count_tokens_approximately``. Then: a rewind gives back
exactly what was compacted; a summariser that fails stores nothing; a message larger
than the budget is answered; storage grows by the summary only; the timeline, the CLI
and the web page show the compaction; and the README's session replays as shown.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from click.testing import CliRunner
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agent.checkpointer import MemagentSaver
from agent.cli import main
from agent.graph import ChatGraph, make_graph
from agent.memory.summary import is_summary, summary_covers, summary_previous
from agent.memory.timeline import render_timeline
from agent.memory.updates import read_summary_chains
from agent.prompts import COMPACT_CONFIRMATION, LEFT_OUT_NOTE, SUMMARY_LABEL
from agent.session import ChatSession
from agent.settings import Settings
from tests.fakes import ScriptedChatModel
from tests.helpers import (
    THREAD_TABLES,
    UUID_PATTERN,
    approximate_tokens,
    canary_rows,
    check_model_calls,
    cjk_aware_tokens,
    config,
    count,
    is_summariser_call,
    readme_session,
    rows,
    rows_naming,
    run_chat_command,
    web_client,
)
from tools import admin
from tools.memory import COMPACT, TIMELINE, memory_tools

BUDGET = 2400
"""A budget some 1,300 tokens above the system prompt and tool schemas: a turn of these
threads costs about a hundred, so a 60-turn thread compacts every few turns."""
TURNS = 60
TOOLS = memory_tools()
FILLER = "and please keep it in mind while we go on planning the trip for the week ahead"


def said(n: int) -> str:
    """What the user says in turn ``n``: a fact worth keeping, and some words around it."""
    return f"turn {n}: my fact {n} is the number {n * 7}, {FILLER}"


def replies(n: int) -> list[AIMessage | str]:
    """The chat model's replies in turn ``n``; every seventh turn first reads the timeline."""
    answer = f"Noted fact {n}: the number {n * 7}. I will keep it in mind for the trip."
    if n % 7 != 3:
        return [answer]
    look = {"name": TIMELINE, "args": {"limit": 2}, "id": f"timeline-{n}"}
    return [AIMessage("", tool_calls=[look]), answer]


def summary_of(messages: Sequence[BaseMessage]) -> AIMessage:
    """A summariser's answer: every fact in its request (previous summary included)."""
    facts = re.findall(r"fact \d+ is the number \d+", messages[-1].text)
    return AIMessage("The user stated: " + "; ".join(dict.fromkeys(facts)) + ".")


class Steps:
    """The steps of one recording model that may be both the chat model and the summariser.

    A ``ChatSession`` summarises with its chat model, so the summariser's calls come in
    between the chat's: each call is answered by its role, the chat's from ``chat``.
    """

    def __init__(self, chat: list[AIMessage | str] | None = None) -> None:
        self.chat = chat if chat is not None else []

    def __call__(self, messages: list[BaseMessage]) -> AIMessage:
        if is_summariser_call(messages):
            return summary_of(messages)
        reply = self.chat.pop(0) if self.chat else "ok"
        return reply if isinstance(reply, AIMessage) else AIMessage(reply)


def recording_model(chat: list[AIMessage | str] | None = None) -> ScriptedChatModel:
    """A model that records every input and answers as ``Steps`` does."""
    return ScriptedChatModel(script=[Steps(chat)] * 10_000)


def all_replies(turns: range) -> list[AIMessage | str]:
    return [reply for n in turns for reply in replies(n)]


def compactions(database_url: str, thread_id: str) -> list[dict[str, Any]]:
    """The metadata of the thread's compaction checkpoints, oldest first, as stored."""
    found = rows(
        database_url,
        "SELECT metadata FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''"
        " AND metadata ? 'memory_compacted' ORDER BY checkpoint_id",
        thread_id,
    )
    return [row["metadata"] for row in found]


def message_rows(database_url: str, thread_id: str) -> int:
    return count(
        database_url, "SELECT count(*) FROM memagent_messages WHERE thread_id = %s", thread_id
    )


def views(messages: Sequence[BaseMessage]) -> list[tuple[Any, ...]]:
    """What identifies a message exactly: id, type, content, tool calls, kwargs."""
    return [
        (m.id, m.type, m.content, getattr(m, "tool_calls", None), m.additional_kwargs)
        for m in messages
    ]


async def head_messages(graph: ChatGraph, thread_id: str) -> list[BaseMessage]:
    return list((await graph.aget_state(config(thread_id))).values.get("messages", []))


# --- every call within the budget, on every route ---------------------------------------


async def test_a_long_thread_on_the_graph_keeps_every_call_within_the_budget(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = recording_model(all_replies(range(TURNS)))
    summariser = recording_model()
    graph = make_graph(chat, checkpointer=saver, context_tokens=BUDGET, summary_model=summariser)
    thread = "graph-long"

    for n in range(TURNS):
        await graph.ainvoke({"messages": [HumanMessage(said(n))]}, config(thread))

    assert graph.context_tokens == BUDGET
    assert not any(is_summariser_call(m) for m in chat.inputs)  # summaries by its own model
    check_model_calls(chat.inputs, budget=BUDGET, tools=TOOLS, sent=[said(n) for n in range(TURNS)])
    check_model_calls(summariser.inputs, budget=BUDGET, tools=(), sent=[])
    assert len(chat.inputs) == TURNS + len(range(3, TURNS, 7))  # one call more per tool turn
    marked = compactions(database_url, thread)
    assert len(marked) >= 4, marked
    assert len(summariser.inputs) >= len(marked)
    for metadata in marked:
        assert metadata["memory_compacted"] > 0 and isinstance(metadata["timestamp"], int)
        assert metadata["tokens_after"] < metadata["tokens_before"]
        assert metadata["tokens_after"] <= BUDGET < metadata["tokens_before"]
    # One running summary: it keeps what the summaries before it said, and its chain
    # (itself and the summaries it replaced, read back from the rows) records every
    # message no longer in the head, each once.
    head = await head_messages(graph, thread)
    assert is_summary(head[0]) and head[0].text.startswith(SUMMARY_LABEL)
    assert "fact 0 is the number 0" in head[0].text
    history = [s async for s in graph.aget_state_history(config(thread))]
    said_ever = {m.id for s in history for m in s.values["messages"] if not is_summary(m)}
    chain = [head[0]]
    while (previous := summary_previous(chain[-1])) is not None:
        chain += await saver.amessages_by_id(thread, [previous])
    assert len(chain) == len(marked)
    covers = [i for link in chain for i in summary_covers(link)]
    assert len(covers) == len(set(covers))
    assert set(covers) == said_ever - {m.id for m in head}
    chains = await read_summary_chains(saver, thread, head[:1])
    assert chains.stands_for(head[0]) == set(covers)


async def test_a_long_thread_through_chat_session_keeps_every_call_within_the_budget(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_CONTEXT_TOKENS", str(BUDGET))
    model = recording_model(all_replies(range(TURNS)))

    async with ChatSession.open(settings, model=model) as session:
        assert session.context_tokens == BUDGET
        shown = [await session.send("session-long", said(n)) for n in range(TURNS)]

    assert shown[-1] == f"Noted fact {TURNS - 1}: the number {(TURNS - 1) * 7}. " + (
        "I will keep it in mind for the trip."
    )
    assert any(is_summariser_call(m) for m in model.inputs)  # it summarised with itself
    check_model_calls(
        model.inputs, budget=BUDGET, tools=TOOLS, sent=[said(n) for n in range(TURNS)]
    )
    assert len(compactions(database_url, "session-long")) >= 4


def test_a_long_thread_in_the_terminal_chat_keeps_every_call_within_the_budget(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``memagent chat`` in this process (click's runner), its model a recording one."""
    monkeypatch.setenv("MEMAGENT_CONTEXT_TOKENS", str(BUDGET))
    model = recording_model(all_replies(range(TURNS)))
    monkeypatch.setattr("agent.session.load_model", lambda settings=None: (model, "recorder"))
    lines = [said(n) for n in range(TURNS)]

    result = CliRunner().invoke(main, ["chat", "--thread", "chat-long"], input="\n".join(lines))

    assert result.exit_code == 0, result.output
    assert f"context: {BUDGET} tokens per model call" in result.output
    assert "Traceback" not in result.output and "error:" not in result.output
    assert result.output.count("agent> Noted fact ") == TURNS
    check_model_calls(model.inputs, budget=BUDGET, tools=TOOLS, sent=lines)
    assert len(compactions(database_url, "chat-long")) >= 4


CHINESE_FACTS = (
    "我叫李华",
    "我住在北京市海淀区",
    "我的电话是一三八零零一三八零零零",
    "我喜欢喝龙井茶",
)


def chinese_said(n: int) -> str:
    fact = CHINESE_FACTS[n % len(CHINESE_FACTS)]
    return f"第{n}轮：{fact}。请记住这件事，我们下周要一起去杭州旅行，还要安排每天的行程和住宿。"


async def test_a_chinese_conversation_stays_within_the_budget_counted_per_character(
    saver: MemagentSaver, database_url: str
) -> None:
    """Each Chinese character counted as a token, not a quarter of one, every call fits."""
    turns = 40
    chat = recording_model(
        [f"好的，第{n}轮我记住了：{CHINESE_FACTS[n % 4]}。" for n in range(turns)]
    )
    summariser = ScriptedChatModel(
        script=[lambda messages: AIMessage("摘要：" + messages[-1].text[-1500:])] * 1000
    )
    graph = make_graph(chat, checkpointer=saver, context_tokens=BUDGET, summary_model=summariser)

    for n in range(turns):
        await graph.ainvoke({"messages": [HumanMessage(chinese_said(n))]}, config("zh"))

    sent = [chinese_said(n) for n in range(turns)]
    check_model_calls(chat.inputs, budget=BUDGET, tools=TOOLS, sent=sent, count=cjk_aware_tokens)
    check_model_calls(summariser.inputs, budget=BUDGET, tools=(), sent=[], count=cjk_aware_tokens)
    assert len(compactions(database_url, "zh")) >= 3
    # Counted as langchain counts, the same calls look hundreds of tokens smaller.
    largest = max(chat.inputs, key=lambda messages: cjk_aware_tokens(messages, TOOLS))
    assert cjk_aware_tokens(largest, TOOLS) > approximate_tokens(largest, TOOLS) + 300


# --- soft: a rewind gives back every message ----------------------------------------------


async def compacted_thread(saver: MemagentSaver, thread_id: str, turns: int = 14) -> ChatGraph:
    """A thread of ``turns`` turns on a budget small enough that it compacted."""
    chat = recording_model(all_replies(range(turns)))
    graph = make_graph(
        chat, checkpointer=saver, context_tokens=1700, summary_model=recording_model()
    )
    for n in range(turns):
        await graph.ainvoke({"messages": [HumanMessage(said(n))]}, config(thread_id))
    return graph


async def test_rewinding_to_before_a_compaction_gives_back_the_exact_messages(
    saver: MemagentSaver,
) -> None:
    graph = await compacted_thread(saver, "rewind")
    history = [s async for s in graph.aget_state_history(config("rewind"))]
    index = next(i for i, s in enumerate(history) if "memory_compacted" in (s.metadata or {}))
    compacted, before = history[index], history[index + 1]
    before_id = before.config["configurable"]["checkpoint_id"]
    assert len(compacted.values["messages"]) < len(before.values["messages"])

    change = await admin.arewind(saver, "rewind", before_id)

    head = await head_messages(graph, "rewind")
    expected = before.values["messages"]
    assert views(head[: len(expected)]) == views(expected)
    assert [m.type for m in head[len(expected) :]] in ([], ["ai"])  # the short confirmation
    assert change.rewound_to == before_id
    # The compaction checkpoint itself is untouched, so it can be returned to as well.
    again = await graph.aget_state(compacted.config)
    assert views(again.values["messages"]) == views(compacted.values["messages"])


async def test_undo_takes_back_a_compaction_asked_for_out_of_band(
    saver: MemagentSaver, database_url: str
) -> None:
    graph = await compacted_thread(saver, "undo", turns=6)
    state = await graph.aget_state(config("undo"))
    before = list(state.values["messages"])
    rows_before = message_rows(database_url, "undo")

    compacted = await admin.acompact(saver, "undo", model=recording_model(), context_tokens=1700)

    after = await head_messages(graph, "undo")
    assert is_summary(after[0]) and compacted.replaced == len(before) - len(after) + 1
    assert message_rows(database_url, "undo") == rows_before + 1  # the summary, nothing else
    undone = await admin.aundo(saver, "undo")
    assert undone.rewound_to == state.config["configurable"]["checkpoint_id"]
    head = await head_messages(graph, "undo")
    assert views(head[: len(before)]) == views(before)


# --- failure: nothing stored, the turn answers ------------------------------------------


class FailingSummariser(Steps):
    """Chat replies as ``Steps``; every summariser call raises, with a telltale message."""

    def __call__(self, messages: list[BaseMessage]) -> AIMessage:
        if is_summariser_call(messages):
            raise RuntimeError("summariser-exploded-7f3a: quota exceeded")
        return super().__call__(messages)


async def test_a_failing_summariser_stores_nothing_and_the_turn_answers_with_one_note(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_CONTEXT_TOKENS", "1700")
    turns = 14
    model = ScriptedChatModel(script=[FailingSummariser(all_replies(range(turns)))] * 1000)

    async with ChatSession.open(settings, model=model) as session:
        shown = [await session.send("fails", said(n)) for n in range(turns)]
        head = (await session.graph.aget_state(config("fails"))).values["messages"]

    noted = [n for n, reply in enumerate(shown) if LEFT_OUT_NOTE in reply]
    assert noted, "the thread never needed compacting: the test proves nothing"
    assert any(n % 7 == 3 for n in noted)  # a turn that called a tool, so the model twice
    for n in noted:
        assert shown[n].count(LEFT_OUT_NOTE) == 1, shown[n]
        assert f"Noted fact {n}:" in shown[n]  # the turn still answered
    assert any(is_summariser_call(m) for m in model.inputs)  # it was asked, and failed
    check_model_calls(model.inputs, budget=1700, tools=TOOLS, sent=[said(n) for n in range(turns)])
    assert not any(is_summary(m) for m in head)
    # Nothing of the failure reached any row of any table: no marker, no error text.
    nowhere = dict.fromkeys(THREAD_TABLES, 0)
    needles = ("memory_compacted", "summariser-exploded-7f3a", "summary model", "RuntimeError")
    for needle in needles:
        assert canary_rows(database_url, needle) == nowhere, needle
    assert rows(database_url, "SELECT * FROM memagent_audit WHERE operation = 'compact'") == []


async def test_a_message_larger_than_the_budget_gets_a_clear_answer_and_the_thread_goes_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_CONTEXT_TOKENS", "1700")
    model = recording_model(["Noted.", "Your name is Ada."])
    huge = "lorem ipsum dolor sit amet " * 400  # some 2,700 tokens

    async with ChatSession.open(settings, model=model) as session:
        await session.send("huge", "hello there")
        calls = len(model.inputs)
        answer = await session.send("huge", huge)
        assert len(model.inputs) == calls  # the model was not asked
        assert "too long for me to read" in answer and "at most 1700" in answer
        assert "our conversation goes on" in answer

        assert await session.send("huge", "what is my name?") == "Your name is Ada."

    check_model_calls(
        model.inputs, budget=1700, tools=TOOLS, sent=["hello there", "what is my name?"]
    )
    assert huge not in "".join(m.text for m in model.inputs[-1])


# --- storage stays linear -------------------------------------------------------------


async def test_a_compaction_stores_the_summary_and_never_a_copy_of_old_messages(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = recording_model(
        [
            *all_replies(range(10)),
            "fine",
            AIMessage("", tool_calls=[{"name": COMPACT, "args": {}, "id": "compact-1"}]),
        ]
    )
    graph = make_graph(
        chat, checkpointer=saver, context_tokens=1700, summary_model=recording_model()
    )
    grew = []
    for n in range(10):
        before = message_rows(database_url, "linear")
        await graph.ainvoke({"messages": [HumanMessage(said(n))]}, config("linear"))
        grew.append(message_rows(database_url, "linear") - before)
    marked = len(compactions(database_url, "linear"))
    assert marked >= 1
    # A turn stores its user message and the reply; a turn that compacted, the summary too.
    # (Turn 3 also called a tool: the call and its result.)
    assert sum(grew) == 2 * 10 + 2 + marked
    assert set(grew) <= {2, 3, 4, 5}

    await graph.ainvoke({"messages": [HumanMessage("a short one")]}, config("linear"))
    before = message_rows(database_url, "linear")
    await graph.ainvoke({"messages": [HumanMessage("compact our conversation")]}, config("linear"))
    # On request: the message, the tool call, its result, the summary, the confirmation.
    assert message_rows(database_url, "linear") - before == 5
    head = await head_messages(graph, "linear")
    assert is_summary(head[0]) and head[-1].text == COMPACT_CONFIRMATION
    duplicates = rows(
        database_url,
        "SELECT message_id FROM memagent_messages WHERE thread_id = %s"
        " GROUP BY message_id HAVING count(*) > 1",
        "linear",
    )
    assert duplicates == []  # no message was stored again


async def test_a_compaction_writes_no_copy_of_the_messages_it_keeps(
    saver: MemagentSaver, database_url: str
) -> None:
    """Not in a message row, nor in the step's stored writes: only the summary is new."""
    graph = make_graph(
        recording_model(all_replies(range(14))),
        checkpointer=saver,
        context_tokens=1700,
        summary_model=recording_model(),
    )
    for n in range(14):
        before = [m.text for m in await head_messages(graph, "kept") if m.text]
        stored = {text: rows_naming(database_url, [text]) for text in before}
        await graph.ainvoke({"messages": [HumanMessage(said(n))]}, config("kept"))
        if len(compactions(database_url, "kept")) == 1:
            break
    else:
        pytest.fail("the thread never compacted")
    head = await head_messages(graph, "kept")
    kept = [m.text for m in head if m.text in stored]
    assert is_summary(head[0]) and kept
    assert {text: rows_naming(database_url, [text]) for text in kept} == {
        text: stored[text] for text in kept
    }


async def test_checkpoints_after_a_compaction_are_no_larger_than_without_one(
    saver: MemagentSaver, database_url: str
) -> None:
    """A compaction leaves nothing behind in the checkpoints after it: no node, no
    channel, so a thread that compacted pays for its summaries and nothing more."""
    await compacted_thread(saver, "compacted")
    assert compactions(database_url, "compacted")
    plain = make_graph(
        recording_model(all_replies(range(14))),
        checkpointer=saver,
        context_tokens=10**9,
        summary_model=recording_model(),
    )
    for n in range(14):
        await plain.ainvoke({"messages": [HumanMessage(said(n))]}, config("plain"))

    def head_keys(thread_id: str) -> dict[str, set[str]]:
        (head,) = rows(
            database_url,
            "SELECT checkpoint FROM checkpoints WHERE thread_id = %s"
            " ORDER BY checkpoint_id DESC LIMIT 1",
            thread_id,
        )
        return {
            part: set(head["checkpoint"][part]) for part in ("channel_versions", "versions_seen")
        }

    assert head_keys("compacted") == head_keys("plain")


async def test_each_compaction_of_a_long_thread_stores_about_as_much_as_the_first(
    saver: MemagentSaver, database_url: str
) -> None:
    # The summariser always answers the same words: only what a summary records besides
    # its text could make later summaries larger.
    graph = make_graph(
        recording_model(all_replies(range(TURNS))),
        checkpointer=saver,
        context_tokens=BUDGET,
        summary_model=ScriptedChatModel(),
    )
    summary_ids: list[str] = []
    for n in range(TURNS):
        await graph.ainvoke({"messages": [HumanMessage(said(n))]}, config("growing"))
        head = await head_messages(graph, "growing")
        if is_summary(head[0]) and head[0].id not in summary_ids:
            summary_ids.append(str(head[0].id))
    sizes = [
        row["size"]
        for row in rows(
            database_url,
            "SELECT octet_length(blob) AS size FROM memagent_messages"
            " WHERE thread_id = %s AND message_id = ANY(%s) ORDER BY seq",
            "growing",
            summary_ids,
        )
    ]
    assert len(sizes) >= 3
    assert max(sizes) <= 2 * min(sizes), sizes


# --- visible: timeline, CLI, web page -----------------------------------------------------

LABEL = re.compile(r"compacted (\d+) message\(s\) into a summary \((\d+) → (\d+) tokens\)")


async def test_the_timeline_shows_each_compaction_with_its_count_and_tokens(
    saver: MemagentSaver, database_url: str
) -> None:
    await compacted_thread(saver, "shown")
    stored = compactions(database_url, "shown")

    entries = await admin.atimeline(saver, "shown", limit=200)
    text = render_timeline(entries)

    compacts = [e for e in entries if e.kind == "compact"]
    assert len(compacts) == len(stored) >= 1
    for entry, metadata in zip(reversed(compacts), stored, strict=True):
        facts = (metadata["memory_compacted"], metadata["tokens_before"], metadata["tokens_after"])
        assert (
            entry.facts["count"],
            entry.facts["tokens_before"],
            entry.facts["tokens_after"],
        ) == facts
        assert entry.in_turn
        assert (
            f"[compacted {facts[0]} message(s) into a summary ({facts[1]} → {facts[2]} tokens)]"
            in text
        )
    assert [tuple(map(int, m)) for m in LABEL.findall(text)] == [
        (m["memory_compacted"], m["tokens_before"], m["tokens_after"]) for m in reversed(stored)
    ]


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


@pytest.mark.usefixtures("settings")
def test_memagent_compact_and_timeline_then_undo_in_the_chat() -> None:
    thread = f"cli-{uuid.uuid4()}"
    run_chat_command("I had pasta for lunch", "my name is Ada", "my city is Paris", thread=thread)

    out = cli("compact", thread)

    match = re.fullmatch(
        rf"Compacted thread {thread}: (\d+) message\(s\) into a summary \((\d+) → (\d+) tokens\);"
        rf" new head ({UUID_PATTERN})\.\n",
        out,
    )
    assert match is not None, out
    replaced, before, after, head = match.groups()
    assert int(replaced) == 4  # every turn but the newest: two of two messages each
    label = f"compacted {replaced} message(s) into a summary ({before} → {after} tokens)"
    line = next(ln for ln in cli("timeline", thread).splitlines() if "≡ " in ln)
    assert head in line and label in line
    entries = json.loads(cli("timeline", thread, "--json"))["entries"]
    entry = next(e for e in entries if e["kind"] == "compact")
    assert (entry["count"], entry["tokens_before"], entry["tokens_after"]) == (
        int(replaced),
        int(before),
        int(after),
    )

    out = run_chat_command(
        "what do you remember?", "/undo", "/undo", "what do you remember?", thread=thread
    )

    recalled = [line for line in out.splitlines() if "Here is what you've told me" in line]
    assert '"my name is Ada"' in recalled[0] and "pasta" not in recalled[0]  # the summary
    assert '"I had pasta for lunch"' in recalled[1]  # the question, then the compaction undone
    assert out.count("Undone: back to") == 2


@pytest.mark.usefixtures("settings")
def test_slash_compact_in_the_chat_and_undo() -> None:
    thread = f"cli-{uuid.uuid4()}"
    out = run_chat_command(
        "I had pasta for lunch",
        "my name is Ada",
        "/compact",
        "what do you remember?",
        "/undo",
        "/undo",
        "what do you remember?",
        thread=thread,
    )
    assert re.search(
        r"Compacted 2 message\(s\) into a summary \(\d+ → \d+ tokens\)\. Undo with /undo\.", out
    )
    recalled = [line for line in out.splitlines() if "Here is what you've told me" in line]
    assert recalled[0].endswith(': "my name is Ada"')  # the summary kept no fact of lunch
    assert '"I had pasta for lunch" | "my name is Ada"' in recalled[1]  # every message back
    assert out.count("Undone: back to") == 2


async def test_the_web_page_compacts_and_its_tree_shows_the_compaction(settings: Settings) -> None:
    async with web_client() as client:
        thread = (await client.post("/api/threads", json={})).json()["thread_id"]
        for text in ("my name is Ada", "I had pasta for lunch", "what is my name?"):
            response = await client.post("/api/chat", json={"thread": thread, "text": text})
            assert response.status_code == 200, response.text

        response = await client.post("/api/compact", json={"thread": thread})

        assert response.status_code == 200, response.text
        compacted = response.json()
        assert compacted["thread_id"] == thread and compacted["replaced"] == 4
        data = (await client.get("/api/conversation", params={"thread": thread})).json()
        roles = [m["role"] for m in data["messages"]]
        assert roles == ["summary", "user", "agent"]  # shown as what it is, not as the user
        entry = next(e for e in data["tree"]["entries"] if e["kind"] == "compact")
        assert entry["checkpoint_id"] == compacted["checkpoint_id"] == data["tree"]["head"]
        assert (entry["count"], entry["tokens_before"], entry["tokens_after"]) == (
            4,
            compacted["tokens_before"],
            compacted["tokens_after"],
        )
        assert entry["label"] == (
            f"compacted 4 message(s) into a summary "
            f"({compacted['tokens_before']} → {compacted['tokens_after']} tokens)"
        )
        assert entry["symbol"] == "≡" and entry["undo"]

        undone = await client.post("/api/undo", json={"thread": thread})
        assert undone.status_code == 200, undone.text
        data = (await client.get("/api/conversation", params={"thread": thread})).json()
        assert [m["role"] for m in data["messages"]][:2] == ["user", "agent"]
        assert data["messages"][0]["text"] == "my name is Ada"


# --- the README's session ---------------------------------------------------------------


def test_the_readme_compaction_session_replays_as_shown(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The long conversation that compacts itself, its timeline entry, and the undo."""
    lines = readme_session("A long conversation that compacts itself")
    command = lines[0].removeprefix("$ ")
    setting = re.fullmatch(r"MEMAGENT_CONTEXT_TOKENS=(\d+) python3 -m agent chat", command)
    assert setting is not None, command
    monkeypatch.setenv("MEMAGENT_CONTEXT_TOKENS", setting.group(1))
    typed = [line.removeprefix("you> ") for line in lines if line.startswith("you> ")]

    out = run_chat_command(*typed, thread=f"readme-{uuid.uuid4()}")

    shown = [line.removeprefix("you> ") for line in out.splitlines()]
    assert [line for line in shown if line.startswith("agent> ")] == [
        line for line in lines if line.startswith("agent> ")
    ]
    # The timeline's compaction entry, count and tokens as the README shows them.
    readme_entry = next(line for line in lines if "[compacted " in line).split("  ", 2)[2]
    assert re.search(rf"{UUID_PATTERN}  \S+ \S+  {re.escape(readme_entry)}\n", out)
    assert f"context: {setting.group(1)} tokens per model call" in out
    assert out.count("Undone: back to") == sum(line == "/undo" for line in typed)
