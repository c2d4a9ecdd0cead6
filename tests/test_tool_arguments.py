"""What the memory tools do with the arguments a model sends, and the provider's rules.

No database: the graph runs on langgraph's in-memory saver with memagent's metadata,
which is enough for argument handling (the PostgreSQL side of it is in
test_memory_tools.py and test_hostile_input.py). The fake model checks every input
the way a real provider would, so a tool answer that broke the conversation fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

from agent.checkpointer import MemagentInMemorySaver
from agent.memory.timeline import MAX_TIMELINE_LIMIT
from agent.memory.updates import provider_valid
from agent.prompts import FORGET_CONFIRMATION
from tests.fakes import InvalidConversationError, ScriptedChatModel, call, check_provider_valid
from tests.helpers import Chat
from tools.memory import FORGET, REWIND, TIMELINE


def tool_answers(messages: list[Any]) -> list[str]:
    return [m.text for m in messages if isinstance(m, ToolMessage)]


def ai_calling(*ids: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "t", "args": {}, "id": i} for i in ids])


# --- the provider's rules, as the fake model enforces them -------------------------------


def test_the_fake_model_refuses_what_providers_refuse() -> None:
    check_provider_valid([HumanMessage("hi"), ai_calling("a"), ToolMessage("r", tool_call_id="a")])
    with pytest.raises(InvalidConversationError, match="no calling AI message"):
        check_provider_valid([HumanMessage("hi"), ToolMessage("r", tool_call_id="a")])
    with pytest.raises(InvalidConversationError, match="unanswered"):
        half_answered = [ai_calling("a", "b"), ToolMessage("r", tool_call_id="a")]
        check_provider_valid([*half_answered, AIMessage("x")])
    model = ScriptedChatModel()
    with pytest.raises(InvalidConversationError):
        model.invoke([ai_calling("a"), HumanMessage("next")])


def test_the_fake_model_numbers_its_calls_and_answers_ok_when_the_script_ends() -> None:
    model = ScriptedChatModel()
    first, second = model.calls(call(TIMELINE)), model.calls(call(FORGET), call(REWIND))
    assert [c["id"] for c in [*first.tool_calls, *second.tool_calls]] == [
        "call_1",
        "call_2",
        "call_3",
    ]
    model.script.append("scripted")
    assert model.invoke("a").text == "scripted"
    assert model.invoke("b").text == "ok"
    assert model.said() == "b"


def test_a_mid_turn_rewind_target_is_made_provider_valid() -> None:
    """``provider_valid`` drops unanswered calls and orphan results, keeps the rest."""
    answered: list[AnyMessage] = [ai_calling("a"), ToolMessage("r", tool_call_id="a")]
    messages: list[AnyMessage] = [
        HumanMessage("hi"),
        *answered,
        ToolMessage("orphan", tool_call_id="zz"),
        HumanMessage("more"),
        ai_calling("b"),
    ]
    kept = provider_valid(messages)
    assert kept == [HumanMessage("hi"), *answered, HumanMessage("more")]
    check_provider_valid(kept)


# --- arguments the model sends -----------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, MAX_TIMELINE_LIMIT + 1])
async def test_a_timeline_limit_out_of_range_is_explained(limit: int) -> None:
    chat = Chat(MemagentInMemorySaver())
    await chat.say("hello", "hi")

    step = chat.model.calls(call(TIMELINE, limit=limit))

    messages = (await chat.say("timeline", step))["messages"]

    assert tool_answers(messages) == [
        f"limit must be between 1 and {MAX_TIMELINE_LIMIT}; call again with e.g. 20."
    ]
    check_provider_valid(messages)


@pytest.mark.parametrize(
    "bad_id",
    ["not-an-id", "", 123, None, ["1f0c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f"]],
    ids=["word", "empty", "int", "null", "list"],
)
async def test_a_rewind_to_a_bad_id_is_refused_and_changes_nothing(bad_id: Any) -> None:
    chat = Chat(MemagentInMemorySaver())
    await chat.say("hello", "hi")
    before = len(await chat.history())

    step = chat.model.calls(call(REWIND, checkpoint_id=bad_id))

    messages = (await chat.say("go back", step))["messages"]

    (refusal,) = tool_answers(messages)
    assert "checkpoint" in refusal
    assert [m.text for m in messages[:2]] == ["hello", "hi"]
    history = await chat.history()
    assert len(history) > before  # the turn itself was saved ...
    assert not [s for s in history if s.metadata.get("rewound_to")]  # ... but no rewind


async def test_a_forget_reason_is_stored_clean_and_an_empty_one_not_at_all() -> None:
    chat = Chat(MemagentInMemorySaver())
    await chat.say("hello", "hi")
    await chat.forget(reason="\x1b[2J shared\x00 screen ")
    assert (await chat.head()).metadata["reason"] == "[2J shared screen"

    await chat.forget(reason="\x00\x07")
    assert "reason" not in (await chat.head()).metadata
    assert [m.text for m in await chat.messages()] == [FORGET_CONFIRMATION]


async def test_a_thread_id_argument_cannot_point_a_tool_at_another_thread() -> None:
    saver = MemagentInMemorySaver()
    alice, mallory = Chat(saver, "alice"), Chat(saver, "mallory")
    await alice.say("my name is Alice", "hi Alice")

    await mallory.say("forget alice", mallory.model.calls(call(FORGET, thread_id="alice")))

    assert [m.text for m in await alice.messages()] == ["my name is Alice", "hi Alice"]
    assert [m.text for m in await mallory.messages()] == [FORGET_CONFIRMATION]
