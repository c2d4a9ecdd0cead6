"""The guarantees on every route: the compiled graph used directly, the server's copy of it.

docs/SPEC.md, "Concurrency" and "Bad input": two turns on one thread never lose a message,
a memory operation waits for a running turn and is never undone by it, and a bad thread
id is a clear error, whichever way the turn comes in. ``ChatSession`` has its own tests
(``test_reliability.py``); here the graph from ``make_graph(model, checkpointer=saver)``
is driven as a library user drives it, and as ``langgraph dev`` drives it (a copy of
``agent.graph.graph`` with the server's wrapper around memagent's saver).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import psycopg
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.checkpointer import MemagentSaver, open_saver
from agent.errors import InvalidThreadIdError, ThreadBusyError, UnstorableValueError
from agent.graph import make_graph
from agent.session import ChatSession
from agent.settings import Settings, SettingsError
from tests.fakes import ScriptedChatModel
from tests.helpers import (
    HANG_GUARD,
    Gate,
    config,
    table_counts,
    wait_for_lease,
    wait_until_waiting_for,
)
from tools import admin


def said(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(text)]}


async def head_messages(
    graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str
) -> list[tuple[str, str]]:
    state = await graph.aget_state(config(thread_id))
    return [(m.type, m.text) for m in state.values.get("messages", [])]


def server_copy(saver: MemagentSaver, model: ScriptedChatModel) -> Any:
    """The graph as ``langgraph dev`` runs it: compiled without a checkpointer, then
    copied with the server's adapter around the configured saver."""
    from langgraph_api._checkpointer._adapter import (
        CheckpointerCapabilities,
        _CustomCheckpointerAdapter,
    )

    adapter = _CustomCheckpointerAdapter(
        inner=saver, capabilities=CheckpointerCapabilities.from_type(type(saver))
    )
    return make_graph(model).copy(update={"checkpointer": adapter})


def direct_graph(saver: MemagentSaver, model: ScriptedChatModel) -> Any:
    return make_graph(model, checkpointer=saver)


LANGGRAPH_DEV_ENV = {"REDIS_URI": "fake", "DATABASE_URI": ":memory:", "MIGRATIONS_PATH": "__inmem"}
"""What ``langgraph dev`` sets before it imports ``langgraph_api``, whose config reads it then."""

Route = Callable[[MemagentSaver, ScriptedChatModel], Any]


@pytest.fixture
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Route:
    """The way a test's graph is built: ``direct_graph`` or ``server_copy``."""
    if request.param == "server":
        for name, value in LANGGRAPH_DEV_ENV.items():
            monkeypatch.setenv(name, value)
        return server_copy
    return direct_graph


ROUTES = pytest.mark.parametrize("route", ["direct", "server"], indirect=True)


# --- finding 1: two turns at once on one thread ----------------------------------------


@ROUTES
async def test_two_concurrent_ainvoke_on_one_thread_both_stay(
    saver: MemagentSaver, database_url: str, route: Route
) -> None:
    gate = Gate("reply to the first")
    graph = route(saver, ScriptedChatModel(script=[gate, "reply to the second"]))
    first = asyncio.create_task(graph.ainvoke(said("one"), config("t")))
    await gate.reached()
    lease = await asyncio.to_thread(wait_for_lease, database_url, "t")
    second = asyncio.create_task(graph.ainvoke(said("two"), config("t")))
    await asyncio.to_thread(wait_until_waiting_for, lease)
    waited = not second.done()  # it waits for the first turn instead of racing it
    gate.release.set()
    await asyncio.wait_for(asyncio.gather(first, second), HANG_GUARD)
    assert waited

    assert await head_messages(graph, "t") == [
        ("human", "one"),
        ("ai", "reply to the first"),
        ("human", "two"),
        ("ai", "reply to the second"),
    ]


async def a_turn_held_at_the_model(
    saver: MemagentSaver,
) -> tuple[Gate, CompiledStateGraph[Any, Any, Any, Any], asyncio.Task[Any]]:
    """A turn "one" on thread ``t`` that waits at the model until its gate is released."""
    gate = Gate("reply to the first")
    graph = make_graph(ScriptedChatModel(script=[gate]), checkpointer=saver)
    first = asyncio.create_task(graph.ainvoke(said("one"), config("t")))
    await gate.reached()
    return gate, graph, first


async def test_a_turn_kept_waiting_too_long_is_refused_and_loses_nothing(
    saver: MemagentSaver,
) -> None:
    gate, graph, first = await a_turn_held_at_the_model(saver)
    saver.leases.busy_timeout = 0.2
    try:
        with pytest.raises(ThreadBusyError, match="busy"):
            await graph.ainvoke(said("two"), config("t"))
    finally:
        gate.release.set()
    await asyncio.wait_for(first, HANG_GUARD)
    assert await head_messages(graph, "t") == [("human", "one"), ("ai", "reply to the first")]
    saver.leases.busy_timeout = 30.0
    await graph.ainvoke(said("two"), config("t"))  # the refused turn, sent again
    assert [text for kind, text in await head_messages(graph, "t") if kind == "human"] == [
        "one",
        "two",
    ]


async def test_sync_update_state_from_another_thread_waits_for_the_running_turn(
    saver: MemagentSaver, database_url: str
) -> None:
    gate, graph, first = await a_turn_held_at_the_model(saver)
    lease = await asyncio.to_thread(wait_for_lease, database_url, "t")
    note = {"messages": [AIMessage("a note added from a worker thread")]}
    update = asyncio.create_task(
        asyncio.to_thread(graph.update_state, config("t"), note, as_node="agent")
    )
    await asyncio.to_thread(wait_until_waiting_for, lease)
    waited = not update.done()
    gate.release.set()
    await asyncio.wait_for(asyncio.gather(first, update), HANG_GUARD)
    assert waited
    assert [text for _, text in await head_messages(graph, "t")] == [
        "one",
        "reply to the first",
        "a note added from a worker thread",
    ]


async def test_sync_invoke_is_refused_clearly_before_anything_is_written(
    saver: MemagentSaver, database_url: str
) -> None:
    graph = make_graph(ScriptedChatModel(), checkpointer=saver)
    before = table_counts(database_url)
    with pytest.raises(TypeError, match="ainvoke"):
        await asyncio.to_thread(graph.invoke, said("one"), config("t"))
    assert table_counts(database_url) == before


# --- finding 2: a memory operation during a turn ----------------------------------------


@ROUTES
async def test_a_forget_during_a_turn_waits_and_is_not_undone(
    saver: MemagentSaver, database_url: str, route: Route
) -> None:
    secret = "secret-5511-forget-me"
    gate = Gate("reply written during the forget")
    model = ScriptedChatModel(script=["noted", gate])
    graph = route(saver, model)
    await graph.ainvoke(said(f"my code is {secret}"), config("t"))

    turn = asyncio.create_task(graph.ainvoke(said("and another thing"), config("t")))
    await gate.reached()
    lease = await asyncio.to_thread(wait_for_lease, database_url, "t")
    forget = asyncio.create_task(admin.aforget(saver, "t"))
    await asyncio.to_thread(wait_until_waiting_for, lease)
    waited = not forget.done()  # it waits for the turn
    gate.release.set()
    await asyncio.wait_for(asyncio.gather(turn, forget), HANG_GUARD)
    assert waited

    await graph.ainvoke(said("what do you remember?"), config("t"))
    assert secret not in model.said()  # the next model call does not see it


async def test_chat_session_turns_on_the_leased_graph_do_not_deadlock(
    saver: MemagentSaver,
) -> None:
    model = ScriptedChatModel(script=["first", "second"])
    session = ChatSession(make_graph(model, checkpointer=saver), saver, model)
    assert await session.send("t", "one") == "first"
    assert await session.send("t", "two") == "second"


# --- forks and time travel are not conflicts ----------------------------------------------


async def test_a_run_and_a_state_update_at_an_older_checkpoint_fork_as_upstream(
    saver: MemagentSaver,
) -> None:
    graph = make_graph(ScriptedChatModel(script=["a1", "a2", "b2"]), checkpointer=saver)
    await graph.ainvoke(said("one"), config("t"))
    await graph.ainvoke(said("two"), config("t"))
    history = [s async for s in graph.aget_state_history(config("t"))]
    after_one = next(
        s
        for s in history
        if not s.next and [m.text for m in s.values.get("messages", [])] == ["one", "a1"]
    )
    fork_id = after_one.config["configurable"]["checkpoint_id"]

    await graph.ainvoke(said("other two"), config("t", fork_id))
    assert [text for _, text in await head_messages(graph, "t")] == [
        "one",
        "a1",
        "other two",
        "b2",
    ]
    edited = await graph.aupdate_state(
        config("t", fork_id), {"messages": [AIMessage("edited")]}, as_node="agent"
    )
    state = await graph.aget_state(edited)
    assert [m.text for m in state.values["messages"]] == ["one", "a1", "edited"]
    # Time travel: replaying from a past checkpoint re-runs from there.
    replayed = await graph.ainvoke(None, config("t", fork_id))
    assert [m.text for m in replayed["messages"]] == ["one", "a1"]


# --- finding 3: thread ids are checked by the saver itself -------------------------------

BAD_THREAD_IDS = pytest.mark.parametrize(
    "thread_id", ["nul\x00inside", "lone \ud800 surrogate", ""], ids=["nul", "surrogate", "empty"]
)


@ROUTES
@BAD_THREAD_IDS
async def test_a_bad_thread_id_through_the_compiled_graph_is_a_clear_error(
    saver: MemagentSaver, thread_id: str, route: Route
) -> None:
    graph = route(saver, ScriptedChatModel())
    with pytest.raises(InvalidThreadIdError, match=r"[Tt]hread id"):
        await graph.ainvoke(said("hello"), config(thread_id))
    with pytest.raises(InvalidThreadIdError):
        await graph.aget_state(config(thread_id))


@BAD_THREAD_IDS
async def test_every_saver_entry_point_refuses_a_bad_thread_id(
    saver: MemagentSaver, thread_id: str
) -> None:
    checkpoint = empty_checkpoint()
    thread: RunnableConfig = config(thread_id)
    root: RunnableConfig = {
        "configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": "1"}
    }
    calls = {
        "aget_tuple": lambda: saver.aget_tuple(thread),
        "alist": lambda: anext(aiter(saver.alist(thread)), None),
        "aput": lambda: saver.aput(root, checkpoint, {}, {}),
        "aput_writes": lambda: saver.aput_writes(root, [("messages", [])], "task"),
        "adelete_thread": lambda: saver.adelete_thread(thread_id),
        "acopy_thread": lambda: saver.acopy_thread("fine", thread_id),
        "aprune": lambda: saver.aprune([thread_id]),
        "ahead_id": lambda: saver.ahead_id(thread_id),
        "atimeline": lambda: saver.atimeline(thread_id, 10),
        "apurge": lambda: saver.apurge(thread_id),
        "thread_lease": lambda: saver.thread_lease(thread_id).__aenter__(),
    }
    for name, make_call in calls.items():
        try:
            await make_call()
        except InvalidThreadIdError:
            continue
        except (psycopg.Error, UnicodeError) as error:
            pytest.fail(f"{name}: {type(error).__name__} instead of a clear error")
        pytest.fail(f"{name} accepted a bad thread id")


# --- finding 6: a value the serializer would not revive is refused when written ----------


@dataclass
class Pin:
    """A user's own state type: not one langgraph knows to be safe."""

    label: str
    number: int


class PinState(TypedDict, total=False):
    note: str
    pin: Pin


def pin_graph(saver: MemagentSaver) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A user's own small graph on memagent's saver, storing a dataclass in its state."""
    builder = StateGraph(PinState)
    builder.add_node("remember", lambda state: {"pin": Pin("door", 4711)})
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    return builder.compile(checkpointer=saver)


def pin_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM checkpoint_writes WHERE channel = 'pin')"
            " + (SELECT count(*) FROM checkpoint_blobs WHERE channel = 'pin')"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_state_type_that_would_not_load_back_is_refused_when_written(
    saver: MemagentSaver, database_url: str
) -> None:
    graph = pin_graph(saver)
    with pytest.raises(UnstorableValueError, match=r"tests\.test_routes\.Pin") as refused:
        await graph.ainvoke({"note": "hello"}, config("t"))
    assert "MEMAGENT_SERDE_ALLOW=tests.test_routes.Pin" in str(refused.value)
    assert pin_rows(database_url) == 0  # never stored, so never read back as a dict

    before = table_counts(database_url)
    with pytest.raises(UnstorableValueError):
        await graph.aupdate_state(config("t"), {"pin": Pin("gate", 1)}, as_node="remember")
    assert table_counts(database_url) == before


async def test_an_allowed_state_type_round_trips_as_itself(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_SERDE_ALLOW", "tests.test_routes.Pin, collections.OrderedDict")
    async with open_saver(Settings.from_env()) as saver:
        graph = pin_graph(saver)
        await graph.ainvoke({"note": "hello"}, config("t"))
        state = await graph.aget_state(config("t"))
    assert type(state.values["pin"]) is Pin
    assert state.values["pin"] == Pin("door", 4711)


def test_the_allow_list_setting_names_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_SERDE_ALLOW", "Pin")
    with pytest.raises(SettingsError, match=r"MEMAGENT_SERDE_ALLOW lists module\.Class"):
        Settings.from_env()
