"""Forgetting reaches summaries (docs/SPEC.md, "Context budget and compaction", last point).

The summariser here paraphrases, as a real LLM may: it restates "12 Main St" as
"twelve Main Street", so no text match on the summary could find the detail. What the
summary covers does: after ``forget_details`` no head message holds the detail or its
paraphrase (undo brings the summary back), and after ``redact`` no row of any table
does, while every checkpoint still loads. A summary made from other messages stays.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver

from agent.checkpointer import MemagentSaver
from agent.graph import make_graph
from agent.memory.summary import (
    is_removed_summary,
    is_summary,
    summary_covers,
    summary_previous,
)
from agent.memory.updates import read_summary_chains
from agent.prompts import FORGET_DETAILS_CONFIRMATION, SUMMARY_REMOVED
from agent.redaction import quote_pattern, scrub_message
from tests.fakes import check_provider_valid
from tests.helpers import Chat, count, needle_columns
from tools import admin

ADDRESS = "12 Main St"
PARAPHRASE = "twelve Main Street"
BUDGET = 2_000
"""Small enough that a thread compacts after about fifteen short turns."""
FILLER = "the weather is mild, the sky is clear and the trains run on time today " * 3


class Paraphraser(BaseChatModel):
    """A summariser that restates what it read in its own words, as a real LLM may."""

    @property
    def _llm_type(self) -> str:
        return "paraphrasing-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        read = "\n".join(m.text for m in messages[1:]).lower()  # not the system prompt
        facts = []
        if ADDRESS.lower() in read or PARAPHRASE.lower() in read:
            facts.append(f"The user lives at {PARAPHRASE}.")
        if "green" in read:
            facts.append("The user's favourite colour is green.")
        text = " ".join(facts) or "The user and the assistant talked about the weather."
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def holding(messages: list[BaseMessage], *needles: str) -> list[BaseMessage]:
    """The messages holding any needle in any field (text, tool calls, kwargs), any case."""
    pattern = quote_pattern(needles)
    return [m for m in messages if scrub_message(m, pattern) is not None]


def compacting_chat(saver: Any) -> Chat:
    chat = Chat(saver)
    chat.graph = make_graph(
        chat.model, checkpointer=saver, context_tokens=BUDGET, summary_model=Paraphraser()
    )
    assert chat.graph.context_tokens == BUDGET
    return chat


async def talk_until_compacted(chat: Chat, *, past: BaseMessage | None = None) -> BaseMessage:
    """Filler turns until the head starts with a new summary (other than ``past``)."""
    for turn in range(40):
        await chat.say(f"turn {turn}: {FILLER}")
        head = (await chat.messages())[0]
        if is_summary(head) and (past is None or head.id != past.id):
            return head
    raise AssertionError("the thread never compacted")


async def address_thread(saver: Any) -> tuple[Chat, BaseMessage]:
    """The address said early, then enough turns that a summary covers it."""
    chat = compacting_chat(saver)
    await chat.say(f"my address is {ADDRESS}", "Noted.")
    summary = await talk_until_compacted(chat)
    assert PARAPHRASE in summary.text and ADDRESS not in summary.text
    assert not holding((await chat.messages())[1:], ADDRESS, PARAPHRASE)  # only covered
    return chat, summary


async def test_forget_details_in_a_turn_replaces_a_paraphrasing_summary_and_undo_restores_it(
    saver: MemagentSaver,
) -> None:
    chat, summary = await address_thread(saver)
    before = (await chat.head()).config["configurable"]["checkpoint_id"]
    await chat.forget_details(ADDRESS)
    head = await chat.messages()
    assert head[-1].text == FORGET_DETAILS_CONFIRMATION  # not "not found"
    assert holding(head, ADDRESS, PARAPHRASE) == []
    marker = head[0]
    assert is_removed_summary(marker) and SUMMARY_REMOVED in marker.text
    assert marker.id == summary.id and summary_covers(marker) == summary_covers(summary)
    metadata = (await chat.head()).metadata or {}
    assert metadata["memory_redacted"] >= 1
    await chat.say("what is my address?", "I don't know it.")
    assert PARAPHRASE not in chat.model.said() and ADDRESS not in chat.model.said()

    await chat.rewind(before, "Back.")
    restored = (await chat.messages())[0]
    assert (restored.id, restored.text) == (summary.id, summary.text)


async def test_admin_forget_then_redact_leave_no_paraphrase_in_any_row_and_every_checkpoint_loads(
    saver: MemagentSaver, database_url: str
) -> None:
    chat, first = await address_thread(saver)
    before = (await chat.head()).config["configurable"]["checkpoint_id"]
    await admin.aforget_details(saver, chat.thread_id, [ADDRESS])
    assert holding(await chat.messages(), ADDRESS, PARAPHRASE) == []
    assert is_removed_summary((await chat.messages())[0])
    # Undo, then compact again: a running summary of the first restates it too.
    await admin.arewind(saver, chat.thread_id, before)
    assert (await chat.messages())[0].text == first.text
    second = await talk_until_compacted(chat, past=first)
    assert PARAPHRASE in second.text
    assert needle_columns(database_url, PARAPHRASE)

    await admin.aredact(saver, chat.thread_id, [ADDRESS])
    assert needle_columns(database_url, ADDRESS) == {}
    assert needle_columns(database_url, PARAPHRASE) == {}
    head = await chat.messages()
    assert is_removed_summary(head[0]) and head[0].id == second.id
    cold = MemagentSaver(saver.conn, saver.conninfo)  # nothing cached: every row is read
    history = [s async for s in compacting_chat(cold).graph.aget_state_history(chat.config)]
    assert len(history) > 40
    for snapshot in history:
        messages = list(snapshot.values.get("messages") or [])
        assert holding(messages, ADDRESS, PARAPHRASE) == []
        if messages and isinstance(messages[-1], AIMessage) and messages[-1].tool_calls:
            messages = messages[:-1]  # mid-turn: the tool step had not answered yet
        check_provider_valid(messages)
    await chat.say("and now?", "fine")  # the thread goes on


async def test_erase_for_good_in_a_turn_does_not_store_the_summary_again(
    saver: MemagentSaver, database_url: str
) -> None:
    chat, summary = await address_thread(saver)
    result = await chat.forget_details(ADDRESS, for_good=True)
    assert "__interrupt__" in result
    await chat.resume(True)
    assert needle_columns(database_url, ADDRESS) == {}
    assert needle_columns(database_url, PARAPHRASE) == {}
    head = await chat.messages()
    assert is_removed_summary(head[0]) and head[0].id == summary.id


async def test_a_summary_not_made_from_the_detail_is_left_untouched(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = compacting_chat(saver)
    await chat.say("my favourite colour is green", "Nice.")
    summary = await talk_until_compacted(chat)
    await chat.say(f"my address is {ADDRESS}", "Noted.")
    await admin.aforget_details(saver, chat.thread_id, [ADDRESS])
    head = await chat.messages()
    assert (head[0].id, head[0].text) == (summary.id, summary.text)
    assert not is_removed_summary(head[0]) and holding(head, ADDRESS) == []
    await admin.aredact(saver, chat.thread_id, [ADDRESS])
    assert needle_columns(database_url, ADDRESS) == {}
    assert needle_columns(database_url, "favourite colour is green")  # the summary stays
    assert (await chat.messages())[0].text == summary.text


async def test_on_a_plain_saver_every_head_summary_counts_as_made_from_the_detail() -> None:
    chat, summary = await address_thread(InMemorySaver())
    await chat.forget_details(ADDRESS)
    head = await chat.messages()
    assert head[-1].text == FORGET_DETAILS_CONFIRMATION
    assert holding(head, ADDRESS, PARAPHRASE) == []
    assert is_removed_summary(head[0]) and head[0].id == summary.id


# --- a summary's chain: it records what it newly covers and the summary it replaced -----


async def chain_to(saver: MemagentSaver, thread_id: str, head: BaseMessage, message_id: str) -> int:
    """How many summaries lead from ``head`` back to the one that covered ``message_id``."""
    links = [head]
    while message_id not in summary_covers(links[-1]):
        previous = summary_previous(links[-1])
        assert previous is not None, "the chain ended before the message"
        links.append((await saver.amessages_by_id(thread_id, [previous]))[-1])
    return len(links)


async def deep_address_thread(saver: MemagentSaver) -> tuple[Chat, BaseMessage, list[str]]:
    """The address said first, then three compactions: the head's summary stands for it
    only through the two summaries before it. Also the ids of every summary made."""
    chat = compacting_chat(saver)
    await chat.say(f"my address is {ADDRESS}", "Noted.")
    address_id = str(holding(await chat.messages(), ADDRESS)[0].id)
    summaries: list[BaseMessage] = []
    for _ in range(3):
        summaries.append(
            await talk_until_compacted(chat, past=summaries[-1] if summaries else None)
        )
    head = summaries[-1]
    assert PARAPHRASE in head.text and address_id not in summary_covers(head)
    assert await chain_to(saver, chat.thread_id, head, address_id) >= 3
    return chat, head, [str(s.id) for s in summaries]


async def test_forget_details_and_erase_in_a_turn_reach_a_summary_three_compactions_on(
    saver: MemagentSaver, database_url: str
) -> None:
    chat, summary, made = await deep_address_thread(saver)
    before = (await chat.head()).config["configurable"]["checkpoint_id"]
    await chat.forget_details(ADDRESS)
    head = await chat.messages()
    assert head[-1].text == FORGET_DETAILS_CONFIRMATION
    assert holding(head, ADDRESS, PARAPHRASE) == []
    assert is_removed_summary(head[0]) and head[0].id == summary.id

    await chat.rewind(before)  # a memory change ends the turn: no reply after it
    assert (await chat.messages())[0].text == summary.text
    assert "__interrupt__" in await chat.forget_details(ADDRESS, for_good=True)
    await chat.resume(True)
    assert needle_columns(database_url, ADDRESS) == {}
    assert needle_columns(database_url, PARAPHRASE) == {}  # every summary of the chain
    stored = await saver.amessages_by_id(chat.thread_id, made)
    assert {str(m.id) for m in stored} == set(made) and all(map(is_removed_summary, stored))
    await chat.say("and now?", "fine")


async def test_admin_forget_details_and_redact_reach_a_summary_three_compactions_on(
    saver: MemagentSaver, database_url: str
) -> None:
    chat, summary, made = await deep_address_thread(saver)
    before = (await chat.head()).config["configurable"]["checkpoint_id"]
    await admin.aforget_details(saver, chat.thread_id, [ADDRESS])
    head = await chat.messages()
    assert holding(head, ADDRESS, PARAPHRASE) == []
    assert is_removed_summary(head[0]) and head[0].id == summary.id

    await admin.arewind(saver, chat.thread_id, before)
    assert (await chat.messages())[0].text == summary.text
    await admin.aredact(saver, chat.thread_id, [ADDRESS])
    assert needle_columns(database_url, ADDRESS) == {}
    assert needle_columns(database_url, PARAPHRASE) == {}
    stored = await saver.amessages_by_id(chat.thread_id, made)
    assert {str(m.id) for m in stored} == set(made) and all(map(is_removed_summary, stored))
    cold = MemagentSaver(saver.conn, saver.conninfo)
    for snapshot in [s async for s in compacting_chat(cold).graph.aget_state_history(chat.config)]:
        assert holding(list(snapshot.values.get("messages") or []), ADDRESS, PARAPHRASE) == []


async def test_a_chain_whose_oldest_link_retention_removed_still_reaches_the_links_it_kept(
    saver: MemagentSaver, database_url: str
) -> None:
    """Retention removes a summary's row with the checkpoints that held it, and the rows
    of the messages it covered with them; the chain then ends at the oldest link kept,
    and what the kept links cover is still found."""
    chat = compacting_chat(saver)
    first = await talk_until_compacted(chat)
    second = await talk_until_compacted(chat, past=first)
    await chat.say(f"my address is {ADDRESS}", "Noted.")
    address_id = str(holding(await chat.messages(), ADDRESS)[0].id)
    address_turn = (await chat.turn_points())[0]
    head = await talk_until_compacted(chat, past=second)
    while address_id not in summary_covers(head):
        head = await talk_until_compacted(chat, past=head)
    keep = (await chat.turn_points()).index(address_turn) + 1
    await admin.aretain(saver, chat.thread_id, keep_turns=keep)
    gone = "SELECT count(*) FROM memagent_messages WHERE thread_id = %s AND message_id = %s"
    assert count(database_url, gone, chat.thread_id, str(first.id)) == 0
    assert count(database_url, gone, chat.thread_id, str(second.id)) > 0
    chains = await read_summary_chains(saver, chat.thread_id, [head])
    assert str(first.id) in chains.unresolved()  # the broken link is known, not an error

    await admin.aforget_details(saver, chat.thread_id, [ADDRESS])
    forgotten = await chat.messages()
    assert is_removed_summary(forgotten[0]) and forgotten[0].id == head.id
    assert holding(forgotten, ADDRESS, PARAPHRASE) == []
    await admin.aredact(saver, chat.thread_id, [ADDRESS])
    assert needle_columns(database_url, ADDRESS) == {}
    assert needle_columns(database_url, PARAPHRASE) == {}
    await chat.say("and now?", "fine")
