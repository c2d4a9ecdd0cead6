"""Forgetting one detail (soft) and erasing it from every stored copy (hard), on PostgreSQL.

"Erased" is checked on the raw rows: every text, bytea and JSON column of every table
(found through ``information_schema``), matched case-insensitively.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool

from agent.checkpointer import MemagentSaver, open_saver, server_checkpointer
from agent.cli import main
from agent.errors import InvalidQuoteError, QuoteNotFoundError
from agent.memory.timeline import read_timeline
from agent.prompts import REMOVED_MARKER
from agent.session import ChatSession
from agent.settings import Settings
from tests.fakes import call, check_provider_valid
from tests.helpers import Chat, needle_columns, table_counts
from tools import admin
from tools.memory import REWIND

CANARY = "Canary-7f3e 12 Main St"


@tool
async def lookup_address(address: str) -> str:
    """Looks an address up (a stand-in for any tool that sees the detail)."""
    return f"{address} is a bakery"


async def canary_thread(saver: MemagentSaver) -> Chat:
    """The canary in a user message (turn 7), an AI reply, a tool call and its result,
    on a thread of 20 turns with a rewind branch made at turn 20."""
    chat = Chat(saver, extra_tools=[lookup_address])
    for turn in range(1, 21):
        if turn == 7:
            await chat.say(
                f"my address is {CANARY}",
                chat.model.calls(call("lookup_address", address=CANARY.upper())),
                f"Noted, you live at {CANARY.lower()}.",
            )
        else:
            await chat.say(f"turn {turn} says nothing personal")
    points = await chat.turn_points()  # newest first: points[-10] is turn 10's
    await chat.say("go back", chat.model.calls(call(REWIND, checkpoint_id=points[-10])))
    await chat.say("and on this branch", "fine")
    return chat


async def all_checkpoint_ids(database_url: str, thread_id: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''",
            (thread_id,),
        ).fetchall()
    return [row[0] for row in rows]


async def redaction_metadata(chat: Chat) -> list[dict[str, Any]]:
    """The metadata of every checkpoint of the thread that forgot details."""
    history = [s async for s in chat.graph.aget_state_history(chat.config)]
    found = [dict(s.metadata or {}) for s in history]
    return [metadata for metadata in found if "memory_redacted" in metadata]


def model_view(messages: list[BaseMessage]) -> str:
    """Everything a provider would be sent: texts, tool calls and their arguments."""
    return "\n".join(f"{m.content} {getattr(m, 'tool_calls', '')}" for m in messages)


async def test_soft_forget_hides_the_detail_from_the_model_and_keeps_everything_else(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = await canary_thread(saver)
    before = await chat.messages()
    assert CANARY.lower() in model_view(before).lower()
    await chat.forget_details(CANARY.lower())
    await chat.say("what do you know?", "everything else")
    seen = chat.model.inputs[-1]
    view = model_view(seen)
    assert CANARY.lower() not in view.lower()
    assert f"my address is {REMOVED_MARKER}" in view
    assert f"Noted, you live at {REMOVED_MARKER}." in view
    assert f"{REMOVED_MARKER} is a bakery" in view
    assert "turn 6 says nothing personal" in view and "turn 8 says nothing personal" in view
    check_provider_valid(seen)
    # Same messages, same ids, same order: only the detail changed.
    after = (await chat.messages())[: len(before)]
    assert [m.id for m in after] == [m.id for m in before]
    marked = await redaction_metadata(chat)
    assert len(marked) == 1
    # user message, AI call, tool result, AI reply, and the forget_details call itself
    assert marked[0]["memory_redacted"] == 5
    assert "timestamp" in marked[0]
    assert CANARY.lower() not in str(marked[0]).lower()
    entries = await read_timeline(saver, chat.thread_id, 10)
    assert [e.facts["count"] for e in entries if e.kind == "forget_details"] == [5]
    audit = await admin.aaudit(saver, chat.thread_id)
    assert audit[0]["operation"] == "forget_details"
    assert CANARY.lower() not in str(audit).lower()


async def test_rewinding_to_before_a_soft_forget_brings_the_detail_back(
    saver: MemagentSaver,
) -> None:
    chat = await canary_thread(saver)
    await chat.forget_details(CANARY)
    points = await chat.turn_points()
    await chat.say("undo", chat.model.calls(call(REWIND, checkpoint_id=points[0])))
    assert CANARY in model_view(await chat.messages())


async def test_a_quote_found_nowhere_changes_nothing_and_the_model_is_told(
    saver: MemagentSaver,
) -> None:
    chat = await canary_thread(saver)
    before = await chat.messages()
    await chat.forget_details("42 Elm Road")
    answer = chat.model.inputs[-1][-1]
    assert "none of the quotes occurs" in answer.text
    assert not await redaction_metadata(chat)
    assert model_view(before) in model_view(await chat.messages())
    with pytest.raises(QuoteNotFoundError):
        await admin.aforget_details(saver, chat.thread_id, ["99 Oak Lane"])


@pytest.mark.parametrize(
    "quotes",
    [[], [""], ["   "], ["a\x00b"], ["x" * 501], ["removed at the user"], "not a list" * 0],
)
async def test_bad_quotes_are_refused_with_an_instruction_and_nothing_is_written(
    saver: MemagentSaver, database_url: str, quotes: Any
) -> None:
    chat = await canary_thread(saver)
    rows = table_counts(database_url)
    with pytest.raises(InvalidQuoteError):
        await admin.aforget_details(saver, chat.thread_id, quotes)
    with pytest.raises(InvalidQuoteError):
        await admin.aredact(saver, chat.thread_id, quotes)
    assert table_counts(database_url) == rows
    await chat.forget_details(*quotes) if quotes else await chat.forget_details("")
    assert "Nothing was changed" in chat.model.inputs[-1][-1].text


async def test_erase_for_good_after_a_yes_leaves_the_detail_in_no_row_of_any_table(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = await canary_thread(saver)
    assert needle_columns(database_url, CANARY)
    await chat.forget_details(CANARY.lower())  # soft first, as a user would
    head_before = await chat.messages()
    result = await chat.forget_details(CANARY, for_good=True)
    pending = result["__interrupt__"][0].value
    assert pending["quotes"] == [CANARY] and pending["action"] == "erase_for_good"
    await chat.resume(True)
    assert needle_columns(database_url, CANARY) == {}
    ids = await all_checkpoint_ids(database_url, chat.thread_id)
    assert len(ids) > 60
    cold = await _cold_saver(saver)
    for checkpoint_id in ids:
        found = await cold.aget_tuple(
            {
                "configurable": {
                    "thread_id": chat.thread_id,
                    "checkpoint_ns": "",
                    "checkpoint_id": checkpoint_id,
                }
            }
        )
        assert found is not None
        assert found.config["configurable"]["checkpoint_id"] == checkpoint_id
        messages = found.checkpoint["channel_values"].get("messages") or []
        if messages and isinstance(messages[-1], AIMessage) and messages[-1].tool_calls:
            messages = messages[:-1]  # mid-turn: the tool step had not answered yet
        check_provider_valid(messages)
        assert CANARY.lower() not in model_view(messages).lower()
    head = await chat.messages()
    assert [m.id for m in head[: len(head_before)]] == [m.id for m in head_before]
    # Rewinding anywhere, even to before turn 7's forget, never brings it back.
    points = await chat.turn_points()
    await chat.say("undo", chat.model.calls(call(REWIND, checkpoint_id=points[-1])))
    await chat.say("and again", "ok")
    assert CANARY.lower() not in model_view(chat.model.inputs[-1]).lower()
    assert needle_columns(database_url, CANARY) == {}
    audit = await admin.aaudit(saver, chat.thread_id)
    assert CANARY.lower() not in str(audit).lower()


async def _cold_saver(saver: MemagentSaver) -> MemagentSaver:
    """A second saver on the same pool: nothing cached, every row read from the table."""
    return MemagentSaver(saver.conn, saver.conninfo)


@pytest.mark.parametrize("answer", [False, "no", "maybe", {"confirm": False}])
async def test_erase_for_good_without_a_yes_erases_nothing(
    saver: MemagentSaver, database_url: str, answer: Any
) -> None:
    chat = await canary_thread(saver)
    result = await chat.forget_details(CANARY, for_good=True)
    assert "__interrupt__" in result
    hits = needle_columns(database_url, CANARY)
    await chat.resume(answer)
    after = needle_columns(database_url, CANARY)
    assert after["memagent_messages.blob"] == hits["memagent_messages.blob"]
    assert CANARY in model_view(await chat.messages())
    assert "Nothing was erased" in (await chat.messages())[-1].text


async def test_redact_out_of_band_rewrites_every_copy_in_one_call(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = await canary_thread(saver)
    erased = await admin.aredact(saver, chat.thread_id, [CANARY.upper()])
    assert erased.rows["memagent_messages"] == 4
    assert erased.rows["checkpoint_writes"] >= 1
    assert needle_columns(database_url, CANARY) == {}
    ids_before = await all_checkpoint_ids(database_url, chat.thread_id)
    await chat.say("still working?", "yes")
    assert f"my address is {REMOVED_MARKER}" in model_view(chat.model.inputs[-1])
    assert set(ids_before) <= set(await all_checkpoint_ids(database_url, chat.thread_id))
    line = (await admin.aaudit(saver, chat.thread_id))[0]
    assert line["operation"] == "redact" and line["detail"] == erased.rows


async def test_a_canary_in_the_run_config_lands_in_no_checkpoint_metadata(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver, extra_tools=[lookup_address])
    config: RunnableConfig = {
        "configurable": {"thread_id": chat.thread_id, "user_email": CANARY},
        "metadata": {"customer": CANARY},
    }
    chat.model.script.append("ok")
    await chat.graph.ainvoke({"messages": [HumanMessage("hello")]}, config)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT metadata::text FROM checkpoints").fetchall()
    assert rows
    assert not [row for row in rows if CANARY in row[0]]
    assert all('"source"' in row[0] and '"step"' in row[0] for row in rows)


@pytest.mark.parametrize(
    ("named", "opener"),
    [(True, open_saver), (True, server_checkpointer), (False, open_saver)],
    ids=["named", "named-server", "default"],
)
async def test_memagent_metadata_keys_copies_only_the_keys_it_names(
    named: bool,
    opener: Callable[[], AbstractAsyncContextManager[MemagentSaver]],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deployment that filters checkpoints by a key of its own names it; nothing else
    of the run config is copied, and by default not even that key. The server's saver
    (``langgraph.json``'s checkpointer) reads the setting as the chat's and the CLI's do."""
    if named:
        monkeypatch.setenv("MEMAGENT_METADATA_KEYS", "user_id, tenant")
    async with opener() as saver:
        for user in ("u-1", "u-2"):
            chat = Chat(saver, thread_id=f"thread-of-{user}")
            chat.model.script.append("ok")
            run: RunnableConfig = {
                "configurable": {"thread_id": chat.thread_id, "user_id": user},
                "metadata": {"tenant": "acme", "customer": CANARY},
            }
            await chat.graph.ainvoke({"messages": [HumanMessage("hello")]}, run)
        head = await saver.aget_tuple({"configurable": {"thread_id": "thread-of-u-1"}})
        found = [c async for c in saver.alist(None, filter={"user_id": "u-1"})]
        by_tenant = [c async for c in saver.alist(None, filter={"tenant": "acme"})]
    assert head is not None
    metadata: dict[str, Any] = dict(head.metadata)
    assert "customer" not in metadata
    if named:
        assert metadata["user_id"] == "u-1" and metadata["tenant"] == "acme"
        assert found and {c.config["configurable"]["thread_id"] for c in found} == {"thread-of-u-1"}
        assert {c.config["configurable"]["thread_id"] for c in by_tenant} == {
            "thread-of-u-1",
            "thread-of-u-2",
        }
    else:
        assert "user_id" not in metadata and "tenant" not in metadata
        assert found == [] and by_tenant == []


def test_cli_redact_asks_first_and_erases_only_after_a_yes(
    settings: Settings, database_url: str
) -> None:
    async def converse() -> None:
        async with ChatSession.open(settings) as session:
            await session.send("t", f"my address is {CANARY}")
            await session.send("t", "what is my address?")

    asyncio.run(converse())
    before = needle_columns(database_url, CANARY)
    assert before

    declined = CliRunner().invoke(main, ["redact", "t", "--text", CANARY], input="n\n")
    assert declined.exit_code != 0 and "cannot be undone" in declined.output
    assert needle_columns(database_url, CANARY) == before

    bad = CliRunner().invoke(main, ["redact", "t", "--text", "", "--yes"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "empty" in bad.output

    done = CliRunner().invoke(
        main, ["redact", "t", "--text", CANARY.lower(), "--text", "bakery", "--yes", "--json"]
    )
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)["rows"]
    assert rows["memagent_messages"] >= 2
    assert needle_columns(database_url, CANARY) == {}


def test_the_terminal_chat_forgets_undoes_and_erases_for_good_after_a_yes(
    settings: Settings, database_url: str
) -> None:
    """The README's session, with the offline model, in a real ``memagent chat`` process."""
    lines = [
        "my address is 12 Main St",
        "forget my address",
        "undo",
        "what is my address?",
        "forget my address for good",
        "y",
        "what is my address?",
        "/exit",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "agent", "chat", "--thread", "readme"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Traceback" not in done.stderr
    answers = [line for line in out.splitlines() if "You told me" in line]
    assert "I've forgotten that detail" in out
    assert "12 Main St" in answers[0]  # the undo brought it back
    assert REMOVED_MARKER in answers[1]
    assert "Erase these details for good" in done.stderr  # questions go to stderr
    assert "erased for good" in out
    assert needle_columns(database_url, "12 Main St") == {}


async def test_redact_finds_quotes_with_sql_wildcards_backslashes_and_quotes_in_any_case(
    saver: MemagentSaver, database_url: str
) -> None:
    said = 'my folder is C:\\Temp\\100%_Done "Q3"'
    chat = Chat(saver, extra_tools=[lookup_address])
    await chat.say(said, "Noted.")
    await chat.say("something else", "ok")

    erased = await admin.aredact(saver, chat.thread_id, ['c:\\temp\\100%_done "q3"'])

    assert erased.rows["memagent_messages"] == 1
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM memagent_messages WHERE position(%s::bytea in blob) > 0",
            (b"100%_Done",),
        ).fetchone()
    assert rows == (0,)
    for checkpoint_id in await all_checkpoint_ids(database_url, chat.thread_id):
        item = await saver.aget_tuple(
            {
                **chat.config,
                "configurable": {**chat.config["configurable"], "checkpoint_id": checkpoint_id},
            }
        )
        assert item is not None
        texts = [m.text for m in item.checkpoint["channel_values"].get("messages", [])]
        assert not any("100%_Done" in text for text in texts)
    assert f"my folder is {REMOVED_MARKER}" in [m.text for m in await chat.messages()]


async def test_erase_it_for_good_right_after_a_soft_forget_names_what_was_forgotten(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver)
    await chat.say(f"my address is {CANARY}", "Noted.")
    await chat.forget_details(CANARY.lower())
    assert CANARY not in model_view(await chat.messages())

    # The model can no longer quote it: it asks with no quotes, and the question names it.
    result = await chat.forget_details(for_good=True)
    assert result["__interrupt__"][0].value["quotes"] == [CANARY]
    await chat.resume(True)

    assert needle_columns(database_url, CANARY) == {}


async def test_erase_it_for_good_with_nothing_forgotten_changes_nothing(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver)
    await chat.say(f"my address is {CANARY}", "Noted.")

    result = await chat.forget_details(for_good=True)

    assert "__interrupt__" not in result  # nobody is asked to erase an unnamed detail
    tool_reply = next(m for m in reversed(result["messages"]) if m.type == "tool")
    assert "no detail was forgotten" in tool_reply.text
    assert CANARY in model_view(await chat.messages())
    assert needle_columns(database_url, CANARY)
