"""The memory tools, point by point as docs/SPEC.md states them, inside real graph runs.

Every test runs on memagent's PostgreSQL saver and on langgraph's in-memory saver
(with memagent's metadata mixin), so the semantics do not depend on the store.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint

from agent.checkpointer import MemagentInMemorySaver, open_saver
from agent.graph import make_graph
from agent.memory.timeline import read_timeline
from agent.prompts import FORGET_CONFIRMATION, REWIND_CONFIRMATION, UNDO_HINT
from tests.fakes import ScriptedChatModel, call, check_provider_valid
from tests.helpers import Chat
from tools.memory import FORGET, REWIND, TIMELINE

CANARY = "canary-7f3e-address-12-Main-St"


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.db), "in-memory"])
async def any_saver(request: pytest.FixtureRequest) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    if request.param == "postgres":
        async with open_saver(request.getfixturevalue("settings")) as saver:
            yield saver
    else:
        yield MemagentInMemorySaver()


def texts(messages: list[BaseMessage]) -> list[str]:
    return [m.text for m in messages]


def snapshot(history: list[Any]) -> dict[str, list[str]]:
    return {
        s.config["configurable"]["checkpoint_id"]: texts(s.values.get("messages", []))
        for s in history
    }


async def three_turns(saver: BaseCheckpointSaver[Any]) -> Chat:
    """A thread where the user said "first", "second", "third" and heard "one", "two", "three"."""
    chat = Chat(saver)
    for text, reply in (("first", "one"), ("second", "two"), ("third", "three")):
        await chat.say(text, reply)
    return chat


# --- forget_conversation -------------------------------------------------------------


async def test_forget_leaves_only_a_confirmation(any_saver: BaseCheckpointSaver[Any]) -> None:
    chat = Chat(any_saver)
    await chat.say(f"my address is {CANARY}")
    await chat.say("and my name is Ada")
    await chat.forget()

    head = await chat.messages()
    assert texts(head) == [FORGET_CONFIRMATION]
    check_provider_valid(head)


async def test_next_model_input_holds_nothing_said_before_forget(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = Chat(any_saver)
    await chat.say(f"my address is {CANARY}", f"Got it, {CANARY}.")
    await chat.forget(reason="user request")
    await chat.say("what is my address?")

    last_input = chat.model.said()
    assert CANARY not in last_input
    assert "what is my address?" in last_input
    assert "please forget this" not in last_input


async def test_forget_marks_exactly_one_checkpoint(any_saver: BaseCheckpointSaver[Any]) -> None:
    chat = Chat(any_saver)
    await chat.say("hello")
    before = {s.config["configurable"]["checkpoint_id"] for s in await chat.history()}
    await chat.forget(reason="privacy\x00 please")

    marked = [s for s in await chat.history() if s.metadata.get("memory_cleared")]
    assert len(marked) == 1
    marker = marked[0]
    assert marker.config["configurable"]["checkpoint_id"] not in before
    assert isinstance(marker.metadata["timestamp"], int)
    assert marker.metadata["reason"] == "privacy please"  # NUL removed, stored

    found = [
        t async for t in any_saver.alist(chat.config, filter={"memory_cleared": True}, limit=1)
    ]
    assert [t.config["configurable"]["checkpoint_id"] for t in found] == [
        marker.config["configurable"]["checkpoint_id"]
    ]


async def test_forget_keeps_every_earlier_checkpoint(any_saver: BaseCheckpointSaver[Any]) -> None:
    chat = Chat(any_saver)
    await chat.say(f"my address is {CANARY}")
    await chat.say("more")
    before = snapshot(await chat.history())
    await chat.forget()
    after = snapshot(await chat.history())

    assert {k: after[k] for k in before} == before
    assert any(CANARY in " ".join(v) for v in before.values())


async def test_forget_on_an_empty_thread_and_twice_is_harmless(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = Chat(any_saver)
    await chat.forget()
    await chat.forget()
    assert texts(await chat.messages()) == [FORGET_CONFIRMATION]
    marked = [s for s in await chat.history() if s.metadata.get("memory_cleared")]
    assert len(marked) == 2

    await chat.say("still works?", "yes")
    assert texts(await chat.messages())[-2:] == ["still works?", "yes"]


# --- rewind_to -----------------------------------------------------------------------


async def test_rewind_restores_the_target_and_forks_from_it(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = await three_turns(any_saver)
    target = (await chat.turn_points())[1]  # before "second"
    target_state = await chat.graph.aget_state(
        {"configurable": {"thread_id": chat.thread_id, "checkpoint_id": target}}
    )
    ids_before = set(snapshot(await chat.history()))

    await chat.rewind(target)

    head = await chat.messages()
    assert texts(head) == [*texts(target_state.values["messages"]), REWIND_CONFIRMATION]
    assert texts(head) == ["first", "one", REWIND_CONFIRMATION]
    marked = [s for s in await chat.history() if s.metadata.get("rewound_to")]
    assert len(marked) == 1
    assert marked[0].metadata["rewound_to"] == target
    assert isinstance(marked[0].metadata["timestamp"], int)
    assert marked[0].parent_config is not None
    assert marked[0].parent_config["configurable"]["checkpoint_id"] == target
    assert ids_before <= set(snapshot(await chat.history()))  # later checkpoints stay


async def test_a_rewind_can_be_undone_by_rewinding_forward(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = await three_turns(any_saver)
    points = await chat.turn_points()  # before third, before second, before first
    await chat.rewind(points[1])
    assert "two" not in texts(await chat.messages())

    await chat.rewind(points[0])  # a point on the other branch, after "second"
    assert texts(await chat.messages()) == ["first", "one", "second", "two", REWIND_CONFIRMATION]


async def test_rewinding_before_a_forget_brings_the_conversation_back(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = Chat(any_saver)
    await chat.say(f"my address is {CANARY}", "noted")
    await chat.forget()
    forget_turn = (await chat.turn_points())[0]  # the point just before "please forget this"

    await chat.rewind(forget_turn)
    await chat.say("what is my address?")

    assert CANARY in chat.model.said()
    check_provider_valid(await chat.messages())


@pytest.mark.parametrize(
    "bad_id",
    [
        "not-a-uuid",
        "'; DROP TABLE checkpoints; --",
        "",
        str(uuid.uuid4()),  # well-formed, unknown
    ],
    ids=["not-a-uuid", "sql", "empty", "unknown-uuid"],  # stable, so --lf finds them again
)
async def test_rewind_refuses_bad_ids_and_writes_no_change(
    any_saver: BaseCheckpointSaver[Any], bad_id: str
) -> None:
    chat = Chat(any_saver)
    await chat.say("first", "one")
    before = snapshot(await chat.history())

    await chat.rewind(bad_id, "sorry, that did not work")

    tool_results = [m for m in await chat.messages() if isinstance(m, ToolMessage)]
    assert len(tool_results) == 1
    assert "conversation_timeline" in tool_results[0].text  # the model is told what to do
    history = await chat.history()
    assert not [s for s in history if s.metadata.get("rewound_to")]
    after = snapshot(history)
    assert {k: after[k] for k in before} == before
    assert texts(await chat.messages())[:2] == ["first", "one"]


async def test_rewind_refuses_another_threads_checkpoint(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    victim = Chat(any_saver)
    await victim.say(f"secret {CANARY}", "kept")
    victim_point = (await victim.turn_points())[0]
    victim_before = snapshot(await victim.history())

    attacker = Chat(any_saver)
    await attacker.say("hi", "hello")
    await attacker.rewind(victim_point, "could not")

    assert CANARY not in " ".join(texts(await attacker.messages()))
    assert not [s for s in await attacker.history() if s.metadata.get("rewound_to")]
    assert snapshot(await victim.history()) == victim_before


async def test_rewind_refuses_a_checkpoint_outside_the_root_namespace(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = Chat(any_saver)
    await chat.say("first", "one")
    nested = empty_checkpoint()
    await any_saver.aput(
        {"configurable": {"thread_id": chat.thread_id, "checkpoint_ns": "sub:1"}},
        nested,
        {"source": "loop", "step": 0, "parents": {}},
        {},
    )

    await chat.rewind(nested["id"], "could not")

    assert not [s for s in await chat.history() if s.metadata.get("rewound_to")]
    assert texts(await chat.messages())[:2] == ["first", "one"]


# --- conversation_timeline -----------------------------------------------------------


async def test_timeline_lists_turns_newest_first_with_markers(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = Chat(any_saver)
    long_text = "x" * 200
    await chat.say("first", "one")
    await chat.say(long_text, "two")
    await chat.forget(reason="tidy")
    await chat.say("after", "three")

    entries = await read_timeline(any_saver, chat.thread_id, 20)
    kinds = [e.kind for e in entries]
    assert kinds == ["turn", "forget", "turn", "turn", "turn"]
    assert [e.preview for e in entries if e.kind == "turn"] == [
        "after",
        "please forget this",
        "x" * 79 + "…",
        "first",
    ]
    assert entries[1].reason == "tidy"
    assert [e.checkpoint_id for e in entries] == sorted(
        (e.checkpoint_id for e in entries), reverse=True
    )
    assert len(await read_timeline(any_saver, chat.thread_id, 2)) == 2


async def test_timeline_tool_gives_the_model_rewindable_ids(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = Chat(any_saver)
    await chat.say("first", "one")
    await chat.say("second", "two")

    def rewind_to_oldest(messages: list[BaseMessage]) -> AIMessage:
        turns = [line for line in messages[-1].text.splitlines() if ' before "' in line]
        oldest = turns[-1].split()[0]
        return chat.model.calls(call(REWIND, checkpoint_id=oldest))

    chat.model.script.extend([chat.model.calls(call(TIMELINE, limit=5)), rewind_to_oldest])
    await chat.graph.ainvoke({"messages": [HumanMessage("go back to the start")]}, chat.config)

    assert texts(await chat.messages()) == [REWIND_CONFIRMATION]


# --- parallel tool calls -------------------------------------------------------------


async def test_two_memory_changes_in_one_message_are_both_refused(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = Chat(any_saver)
    await chat.say("first", "one")
    point = (await chat.turn_points())[0]
    both = chat.model.calls(call(FORGET), call(REWIND, checkpoint_id=point))

    await chat.say("forget and go back", both, "I will do one at a time")

    head = await chat.messages()
    check_provider_valid(head)
    assert texts(head)[:2] == ["first", "one"]
    refusals = [m.text for m in head if isinstance(m, ToolMessage)]
    assert len(refusals) == 2
    assert all("once, on its own" in r for r in refusals)
    history = await chat.history()
    assert not [
        s for s in history if s.metadata.get("memory_cleared") or s.metadata.get("rewound_to")
    ]


async def test_forget_beside_another_tool_runs_both_and_stays_valid(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    seen: list[str] = []

    @tool
    def lookup_weather(city: str) -> str:
        """Weather for a city."""
        seen.append(city)
        return f"sunny in {city}"

    model = ScriptedChatModel()
    graph = make_graph(model, checkpointer=any_saver, extra_tools=[lookup_weather])
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    model.script.append("hi")
    await graph.ainvoke({"messages": [HumanMessage(f"I live at {CANARY}")]}, config)
    model.script.append(model.calls(call("lookup_weather", city="Oslo"), call(FORGET)))
    await graph.ainvoke({"messages": [HumanMessage("weather, then forget me")]}, config)

    assert seen == ["Oslo"]
    head = (await graph.aget_state(config)).values["messages"]
    assert texts(head) == [FORGET_CONFIRMATION]
    model.script.append("ok")
    await graph.ainvoke({"messages": [HumanMessage("next")]}, config)
    assert CANARY not in model.said()


async def test_memory_tools_without_persistence_say_so() -> None:
    model = ScriptedChatModel()
    graph = make_graph(model)
    model.script.extend([model.calls(call(FORGET)), "understood"])
    result = await graph.ainvoke({"messages": [HumanMessage("forget this")]})

    tool_result = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert "not being saved" in tool_result.text
    assert texts(result["messages"])[-1] == "understood"


async def test_timeline_tells_the_model_how_to_undo_the_last_change(
    any_saver: BaseCheckpointSaver[Any],
) -> None:
    chat = Chat(any_saver)
    await chat.say(f"my address is {CANARY}", "noted")
    await chat.forget()

    def undo(messages: list[BaseMessage]) -> AIMessage:
        hint = messages[-1].text.splitlines()[-1]
        assert hint.startswith(UNDO_HINT)
        return chat.model.calls(call(REWIND, checkpoint_id=hint.removeprefix(UNDO_HINT)))

    chat.model.script.extend([chat.model.calls(call(TIMELINE)), undo])
    await chat.graph.ainvoke({"messages": [HumanMessage("undo that")]}, chat.config)

    assert texts(await chat.messages()) == [f"my address is {CANARY}", "noted", REWIND_CONFIRMATION]
