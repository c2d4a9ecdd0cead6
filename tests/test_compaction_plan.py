"""Compaction without a database: what is replaced, the summary, and the summariser.

docs/SPEC.md, "Context budget and compaction": the oldest whole turns give way to one
running summary, never the message just sent nor a tool call without its result; the
call then fits with room to spare; every summariser call fits the budget too; and a
summariser that fails or answers nothing produces no summary at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, MessagesState, StateGraph

from agent.errors import SummaryFailedError
from agent.memory.budget import Tool, call_counter, count_call_tokens, older_turns
from agent.memory.compaction import (
    DEFAULT_HEADROOM,
    plan_compaction,
    summarise,
    summary_allowance,
)
from agent.memory.summary import (
    SUMMARY_KEY,
    SummaryChains,
    is_summary,
    make_summary,
    removed_summary,
    summary_body,
    summary_covers,
    summary_previous,
)
from agent.model import OfflineChatModel
from agent.prompts import (
    OFFLINE_SUMMARY_LABEL,
    SUMMARY_LABEL,
    SUMMARY_PROMPT,
    SYSTEM_PROMPT,
)
from tests.fakes import ScriptedChatModel, check_provider_valid
from tools.memory import memory_tools

TOOLS: list[Tool] = [*memory_tools()]
COUNT = call_counter(SYSTEM_PROMPT, TOOLS)
"""Counts the chat graph's call: system prompt, memory tools' schemas and messages."""
CHINESE = "我住在北京市海淀区中关村大街一号，电话号码是一三八零零一三八零零零。"


def turn(n: int, *, tool: bool = False, text: str = "") -> list[BaseMessage]:
    """One user turn (``h<n>``), with a tool call and its result when ``tool``."""
    said = text or f"my fact {n} is that I like the number {n} quite a lot"
    messages: list[BaseMessage] = [HumanMessage(said, id=f"h{n}")]
    if tool:
        messages += [
            AIMessage(
                "", id=f"c{n}", tool_calls=[{"name": "lookup", "args": {"q": n}, "id": f"t{n}"}]
            ),
            ToolMessage(f"found {n}", tool_call_id=f"t{n}", id=f"r{n}"),
        ]
    return [*messages, AIMessage(f"Noted, fact {n}.", id=f"a{n}")]


def thread(turns: int) -> list[BaseMessage]:
    """``turns`` turns, every third calling a tool, then the message just sent."""
    messages = [m for n in range(turns) for m in turn(n, tool=n % 3 == 0)]
    return [*messages, HumanMessage("what do you remember?", id="current")]


def largest_summary(plan_tokens: int) -> HumanMessage:
    """A summary message as large as a plan allows (what ``summarise`` may return)."""
    text = ""
    for n in range(10**6):
        longer = f"{text} word{n}"
        if COUNT([make_summary(longer, previous=None, evicted=[])]) - COUNT([]) > plan_tokens:
            break
        text = longer
    return make_summary(text, previous=None, evicted=[])


async def compact(
    messages: list[BaseMessage], budget: int, model: Any
) -> tuple[list[BaseMessage], bool]:
    """What the graph will do before a call: compact if needed; the head and whether it did."""
    plan = plan_compaction(messages, budget=budget, count=COUNT)
    if plan is None:
        return messages, False
    previous = summary_body(plan.previous) if plan.previous else None
    text = await summarise(model, previous, plan.evicted, budget=budget)
    return [make_summary(text, previous=plan.previous, evicted=plan.evicted), *plan.kept], True


# --- the plan ---------------------------------------------------------------------------


def test_a_call_that_fits_is_not_compacted() -> None:
    messages = thread(5)
    assert plan_compaction(messages, budget=COUNT(messages), count=COUNT) is None


def test_the_oldest_whole_turns_give_way_and_the_call_fits_with_room_to_spare() -> None:
    messages = thread(40)
    budget = COUNT(messages) - 1
    plan = plan_compaction(messages, budget=budget, count=COUNT)
    assert plan is not None and plan.previous is None and plan.fits
    assert [*plan.evicted, *plan.kept] == messages
    assert isinstance(plan.kept[0], HumanMessage), "a turn is replaced whole"
    assert plan.kept[-1].id == "current"
    fixed = COUNT([])
    assert plan.tokens_after <= fixed + (budget - fixed) * (1 - DEFAULT_HEADROOM)
    head = [largest_summary(plan.summary_tokens), *plan.kept]
    assert COUNT(head) <= plan.tokens_after
    check_provider_valid([SystemMessage(SYSTEM_PROMPT), *head])
    assert len(plan.replaced_ids) == len(plan.evicted)


def test_compaction_never_replaces_the_current_turn_nor_parts_a_tool_call() -> None:
    """With a tiny budget everything older goes, the current turn (mid tool call) stays."""
    current = [HumanMessage("look it up", id="now"), *turn(99, tool=True)[1:3]]
    messages = [*thread(6)[:-1], *current]
    plan = plan_compaction(messages, budget=10, count=COUNT)
    assert plan is not None and not plan.fits
    assert list(plan.kept) == current and [*plan.evicted, *plan.kept] == messages
    for budget in range(COUNT(current), COUNT(messages), 97):
        plan = plan_compaction(messages, budget=budget, count=COUNT)
        assert plan is not None
        check_provider_valid(plan.kept)
        assert plan.kept[0].type == "human" and plan.kept[-len(current) :] == tuple(current)


def test_a_single_message_larger_than_the_budget_leaves_nothing_to_replace() -> None:
    huge = [HumanMessage("x" * 20_000, id="huge")]
    plan = plan_compaction(huge, budget=1_000, count=COUNT)
    assert plan is not None and not plan.fits
    assert plan.evicted == () and plan.previous is None and list(plan.kept) == huge


def test_compaction_on_request_replaces_every_turn_but_the_current_one() -> None:
    messages = thread(4)
    plan = plan_compaction(messages, budget=10**6, count=COUNT, force=True)
    assert plan is not None and plan.fits
    assert [m.id for m in plan.kept] == ["current"]
    assert plan.replaced_ids == [m.id for m in messages[:-1]]
    assert COUNT([largest_summary(plan.summary_tokens), *plan.kept]) <= plan.tokens_after


# --- the summary message ----------------------------------------------------------------


def test_the_summary_says_what_it_is_and_is_valid_after_the_system_prompt() -> None:
    summary = make_summary("The user is Ada.", previous=None, evicted=thread(2)[:-1])
    assert is_summary(summary) and not is_summary(HumanMessage("The user is Ada."))
    assert summary.text.startswith(SUMMARY_LABEL) and summary_body(summary) == "The user is Ada."
    assert summary_covers(summary) == ["h0", "c0", "r0", "a0", "h1", "a1"]
    assert summary_covers(HumanMessage("hi")) == [] and summary_covers(None) == []
    check_provider_valid([SystemMessage(SYSTEM_PROMPT), summary, HumanMessage("and now?")])
    now = HumanMessage("hi", id="now")
    assert older_turns([summary, now]) == ([[summary]], [now]), "a summary starts no turn"


def test_a_summary_at_the_head_is_summarised_again_and_its_covers_carry_over() -> None:
    first = make_summary("Earlier facts.", previous=None, evicted=thread(3)[:-1])
    messages = [first, *[m for n in range(3, 30) for m in turn(n)], HumanMessage("hi", id="now")]
    plan = plan_compaction(messages, budget=COUNT(messages) - 1, count=COUNT)
    assert plan is not None and plan.previous is first
    assert plan.replaced_ids[0] == first.id
    second = make_summary("More facts.", previous=plan.previous, evicted=plan.evicted)
    # It records only what it newly covers and its link: its chain gives the rest.
    assert summary_covers(second) == [m.id for m in plan.evicted]
    assert summary_previous(second) == first.id and summary_previous(first) is None
    assert SummaryChains([first]).stands_for(second) == {
        *summary_covers(first),
        *(m.id for m in plan.evicted),
    }
    assert SummaryChains().stands_for(second) == set(summary_covers(second))  # link not read


def test_a_summary_of_the_earlier_release_is_its_own_whole_chain() -> None:
    """Its flat covers listed every id it stood for, and no link: still read so."""
    flat = HumanMessage(
        f"{SUMMARY_LABEL}\nOld facts.",
        id="old",
        additional_kwargs={SUMMARY_KEY: {"covers": ["h0", "a0", "h1"]}},
    )
    newer = make_summary("New facts.", previous=flat, evicted=[HumanMessage("x", id="h2")])
    chains = SummaryChains([flat])
    assert summary_previous(flat) is None and chains.unresolved() == set()
    assert chains.stands_for(newer) == {"h0", "a0", "h1", "h2"}
    assert chains.made_from(newer, {"a0"}) and not chains.made_from(newer, {"h9"})


def test_a_marker_keeps_the_link_so_a_later_chain_goes_through_it() -> None:
    first = make_summary("A.", previous=None, evicted=[HumanMessage("x", id="h0")])
    second = make_summary("B.", previous=first, evicted=[HumanMessage("y", id="h1")])
    third = make_summary("C.", previous=second, evicted=[HumanMessage("z", id="h2")])
    marker = removed_summary(second)
    assert summary_previous(marker) == first.id and summary_covers(marker) == ["h1"]
    chains = SummaryChains([first, marker])
    assert chains.made_from(third, {"h0"}) and not chains.made_from(marker, {"h0"})
    assert SummaryChains([marker]).stands_for(third) == {"h1", "h2"}  # first's row gone


async def test_sixty_turns_stay_within_budget_compact_rarely_and_cover_every_message() -> None:
    """Every call, the summariser's included, fits langchain's count and ours."""
    budget = 2_500
    summariser = ScriptedChatModel()
    messages: list[BaseMessage] = []
    compactions, replaced, made = 0, [], []
    for n in range(60):
        messages.append(HumanMessage(f"turn {n}: my fact {n} is " + "blue " * 40, id=f"h{n}"))
        before = [m.id for m in messages]
        messages, compacted = await compact(messages, budget, summariser)
        if compacted:
            compactions += 1
            made.append(messages[0])
            replaced += [i for i in before if i not in {m.id for m in messages}]
        call = [SystemMessage(SYSTEM_PROMPT), *messages]
        assert count_call_tokens(call, TOOLS) <= budget
        assert count_tokens_approximately(call, tools=TOOLS) <= budget
        assert [m for m in messages if m.type == "human"][-1].id == f"h{n}"
        check_provider_valid(call)
        messages.append(AIMessage(f"Noted {n}: " + "ok " * 30, id=f"a{n}"))
    assert 2 <= compactions <= 6, "compaction leaves headroom, so it does not recur each turn"
    for request in summariser.inputs:
        assert count_tokens_approximately(request) <= budget
    head = messages[0]
    assert is_summary(head)
    summaries = {m.id for m in made}
    # Each summary links to the one before it and records each id once, oldest first.
    assert [summary_previous(m) for m in made] == [None, *(m.id for m in made[:-1])]
    assert [i for m in made for i in summary_covers(m)] == [
        i for i in replaced if i not in summaries
    ]
    assert SummaryChains(made).stands_for(head) == {f"{k}{n}" for k in "ha" for n in range(60)} - {
        m.id for m in messages
    }


async def test_a_chinese_thread_stays_within_a_budget_that_counts_each_character() -> None:
    budget = 3_000
    messages: list[BaseMessage] = []
    for n in range(40):
        messages.append(HumanMessage(f"{n}{CHINESE}", id=f"h{n}"))
        messages, _ = await compact(messages, budget, OfflineChatModel())
        call = [SystemMessage(SYSTEM_PROMPT), *messages]
        cjk = sum(1 for m in call for ch in m.text if "\u4e00" <= ch <= "\u9fff")
        assert count_call_tokens(call, TOOLS) <= budget
        assert cjk + count_tokens_approximately([], tools=TOOLS) <= budget
        messages.append(AIMessage("好的，记住了。", id=f"a{n}"))
    assert is_summary(messages[0])


# --- the summariser ---------------------------------------------------------------------


async def test_the_summariser_reads_the_previous_summary_and_the_turns() -> None:
    model = ScriptedChatModel(script=["Ada lives at 12 Main St."])
    evicted = [*turn(1, tool=True)]
    text = await summarise(model, "The user is Ada.", evicted, budget=3_000)
    assert text == "Ada lives at 12 Main St."
    (request,) = model.inputs
    assert request[0].text.startswith(SUMMARY_PROMPT.split("{")[0])
    assert "The user is Ada." in request[1].text
    assert "User: my fact 1 is" in request[1].text and '[called lookup with {"q": 1}]' in (
        request[1].text
    )
    assert "Tool result: found 1" in request[1].text


async def test_too_much_to_summarise_at_once_is_summarised_in_chunks_each_within_budget() -> None:
    budget = 1_500
    model = ScriptedChatModel(script=[f"summary {n}" for n in range(100)])
    evicted = [m for n in range(80) for m in turn(n, text=f"my fact {n} is " + "long " * 60)]
    evicted.insert(40, HumanMessage("an enormous paste " * 2_000, id="paste"))
    text = await summarise(model, None, evicted, budget=budget)
    calls = len(model.inputs)
    assert calls >= 10 and text == f"summary {calls - 1}"
    for n, request in enumerate(model.inputs):
        assert count_call_tokens(request) <= budget
        assert count_tokens_approximately(request) <= budget
        if n:
            assert f"summary {n - 1}" in request[1].text, "each chunk builds on the last"
    said = "\n".join(r[1].text for r in model.inputs)
    assert all(f"my fact {n} is" in said for n in range(80)), "no turn is skipped"


async def test_a_summary_longer_than_allowed_is_cut_to_fit() -> None:
    model = ScriptedChatModel(script=["detail " * 5_000])
    text = await summarise(model, None, thread(3), budget=3_000)
    size = count_call_tokens([make_summary(text, previous=None, evicted=[])])
    assert size <= summary_allowance(3_000) and text.endswith(" …")


def explode(messages: list[BaseMessage]) -> AIMessage:
    raise ConnectionError("provider said: secret-diagnostic-1234")


@pytest.mark.parametrize("reply", [explode, "", "   \n "], ids=["raises", "empty", "blank"])
async def test_a_failed_or_empty_summary_is_an_error_never_a_summary(reply: Any) -> None:
    model = ScriptedChatModel(script=[reply])
    with pytest.raises(SummaryFailedError) as caught:
        await summarise(model, "The user is Ada.", thread(3), budget=3_000)
    error = caught.value
    assert "Nothing was changed" in str(error) and "Nothing was compacted" in error.for_model()
    for told in (str(error), error.for_model()):
        assert "secret-diagnostic" not in told, "the provider's error text is not repeated"


async def test_a_budget_too_small_for_any_summariser_call_is_refused() -> None:
    model = ScriptedChatModel()
    with pytest.raises(SummaryFailedError, match="leaves no room"):
        await summarise(model, None, thread(3), budget=200)
    assert model.inputs == [], "no call larger than the budget is made"
    with pytest.raises(ValueError, match="nothing to summarise"):
        await summarise(model, None, [], budget=3_000)


async def test_the_summarisers_words_never_stream_to_the_user_as_a_reply() -> None:
    """Inside a graph node, the summariser's output is not part of the ``messages`` stream."""
    model = ScriptedChatModel(script=["the summary"])

    async def node(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        await summarise(model, None, state["messages"], budget=3_000, config=config)
        return {}

    graph = StateGraph(MessagesState).add_node("node", node).add_edge(START, "node").compile()
    chunks = [
        chunk
        async for chunk, _ in graph.astream(
            {"messages": [HumanMessage("my name is Ada", id="h")]}, stream_mode="messages"
        )
    ]
    assert model.inputs, "the summariser ran"
    assert not [c for c in chunks if isinstance(c, AIMessage | AIMessageChunk)]


# --- the offline demo model's summary ---------------------------------------------------


def statements(*texts: str) -> list[BaseMessage]:
    return [m for n, t in enumerate(texts) for m in (HumanMessage(t), AIMessage(f"Noted {n}."))]


async def test_the_offline_summary_quotes_the_facts_the_user_stated() -> None:
    said = statements(
        "my name is Ada",
        "what's my name?",
        "my address is 12 Main St",
        "My name is Ada Lovelace.",
        "show the timeline",
    )
    first = await summarise(OfflineChatModel(), None, said, budget=3_000)
    assert first == await summarise(OfflineChatModel(), None, said, budget=3_000)
    assert first.splitlines() == [
        OFFLINE_SUMMARY_LABEL,
        "- my address is 12 Main St",
        "- My name is Ada Lovelace.",
    ]
    later = await summarise(OfflineChatModel(), first, statements("my cat is Tom"), budget=3_000)
    assert later.splitlines()[1:] == [
        "- my address is 12 Main St",
        "- My name is Ada Lovelace.",
        "- my cat is Tom",
    ], "a running summary keeps what the last one said"


async def test_the_offline_summary_keeps_the_newest_facts_within_its_limit() -> None:
    said = statements(*(f"my fact {n} is {n * 7}" for n in range(200)))
    text = await summarise(OfflineChatModel(), None, said, budget=1_000)
    size = count_call_tokens([make_summary(text, previous=None, evicted=[])])
    assert size <= summary_allowance(1_000)
    assert "- my fact 199 is 1393" in text and "- my fact 0 is 0" not in text
    assert "older statements left out to fit" in text
    nothing = await summarise(OfflineChatModel(), None, statements("hello"), budget=1_000)
    assert nothing == f"{OFFLINE_SUMMARY_LABEL}\nYou stated no facts about yourself earlier."
